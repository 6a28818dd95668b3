"""BatchTopK crosscoders for model diffing: one sparse dictionary read from two or more models.

A crosscoder (Lindsey et al. 2024) reads the activations of several models at one hook over the
same token positions (a :class:`~interp.cache.PairedCache`) through one latent code: each model
``m`` has its own encoder ``W_enc[m]`` (``d_model x n_latents``) and decoder ``W_dec[m]``
(``n_latents x d_model``, with ``b_dec[m]``), the latents share ``b_enc``. Sparsity is BatchTopK
(Bussmann et al. 2024): of the whole batch's pre-activations, weighted by each latent's summed
decoder norm, the ``k * batch`` largest are kept; a threshold, estimated during training as the
running mean of the smallest kept value, replaces the batch rule at inference (Minder et al.
2025, arXiv 2504.02922, who show that this avoids the L1 artefacts that label shared concepts
as model-specific). The loss is the sum over models of the squared reconstruction error, plus a
small auxiliary loss that lets dead latents reconstruct the remaining error (Gao et al. 2024).

Reading a trained crosscoder (:func:`classify_latents`): each latent's decoder-norm ratio
``r = ||d_tuned|| / (||d_base|| + ||d_tuned||)`` labels it base-only (``r < 0.1``), shared
(``0.3 <= r <= 0.7``), tuned-only (``r > 0.9``) or other; latents that never fired in the last
part of training (from ``threshold_start`` on) are dead. Latent scaling (:func:`latent_scaling`,
Minder et al.) then checks each model-specific latent ``j`` with direction ``d`` (its decoder in
the model it lives in): the least-squares ``beta`` such that ``beta * f_j * d`` best explains, in
each model, the crosscoder's error with ``j``'s own contribution put back (``beta_error``), and
the crosscoder's reconstruction (``beta_reconstruction``, decoder bias left out: a constant
offset explains nothing). The ratios ``nu = beta(other model) / beta(own model)`` are near 0 for
a latent that really is specific; a large ``nu_error`` says the other model still carries the
direction, unexplained (Complete Shrinkage), a large ``nu_reconstruction`` that other latents
reconstruct it there (Latent Decoupling): such a latent is flagged.

Why it is written here and not taken from a library: the maintained dictionary-learning package
on PyPI (``dictionary-learning`` 0.1.0, saprmarks, checked with ``pip download --no-deps``) has
no crosscoder at all (none in its 0.1.0 wheel; Minder et al.'s code imports one from their own
fork), and it requires
``nnsight>=0.3,<0.4``, ``umap-learn``, ``llvmlite``, ``wandb``, ``circuitsvis``, ``plotly`` and
``pandas`` on top of this stack; sae-lens 6 has none either. What is needed is a few hundred
lines of plain torch, tested against hand-computed cases.

On disk (:meth:`Crosscoder.save`), a directory of two files: ``model.safetensors`` (``W_enc``
``[n_models, d_model, n_latents]``, ``b_enc`` ``[n_latents]``, ``W_dec`` ``[n_models, n_latents,
d_model]``, ``b_dec`` ``[n_models, d_model]``, ``fire_count`` ``[n_latents]``: positions each
latent fired on from ``threshold_start`` on) and ``cfg.json`` (``format`` :data:`FORMAT`, the sizes, ``hook``,
``labels`` in model order, ``models``: per label its ``spec``, ``fingerprint``, ``cache_id`` and
``architecture``, ``threshold``, ``config``, ``training`` statistics and ``weights_sha256``).
Both are written into a temporary directory that is renamed into place, so a reader never sees
half a crosscoder.
"""

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.architecture import architecture_of_cache
from interp.cache import PairedCache
from interp.errors import SAEError
from interp.fingerprint import sha256_file
from interp.results import format_table
from steering.sae_io import SinkExclusion, kept_batches

log = logging.getLogger(__name__)

FORMAT = "interp.crosscoder/1"
WEIGHTS_FILE = "model.safetensors"
CFG_FILE = "cfg.json"
KINDS = ("base-only", "shared", "tuned-only", "other", "dead")
BOUNDS = {"base-only": 0.1, "shared": (0.3, 0.7), "tuned-only": 0.9}  # on r, as in Minder et al.


class CrosscoderError(SAEError):
    """A crosscoder setting, input or directory that cannot be used."""


@dataclass(frozen=True)
class CrosscoderConfig:
    """Settings of a crosscoder training run.

    Args:
        n_latents: size of the shared dictionary.
        k: latents kept per position, on average over a batch (BatchTopK).
        lr: Adam learning rate.
        steps: optimiser steps; the data is cycled, reshuffled on each pass.
        batch_size: positions per step.
        seed: initialisation and shuffling.
        aux_k: dead latents the auxiliary loss may use per position (``None``: ``2 * k``).
        aux_coefficient: weight of the auxiliary loss (0 turns it off).
        dead_steps: steps without firing after which a latent counts as dead.
        threshold_beta: momentum of the running inference threshold.
        threshold_start: fraction of the steps after which the threshold is estimated.
        decoder_init_norm: norm of each decoder row at initialisation.
        exclude_positions: positions within each row never trained on (attention sinks; see
            :class:`steering.sae_io.SinkExclusion`), for paired caches.
        exclude_bos: also leave out the cache's BOS token.

    Raises:
        CrosscoderError: (a ``ValueError``) a value out of range, naming it and what is accepted.

    Example:
        >>> CrosscoderConfig(n_latents=32, k=4).aux_k_for()
        8
        >>> CrosscoderConfig(n_latents=8, k=9)
        Traceback (most recent call last):
        ...
        steering.crosscoder.CrosscoderError: k=9 must be at most n_latents=8
    """

    n_latents: int = 1024
    k: int = 32
    lr: float = 1e-3
    steps: int = 2000
    batch_size: int = 1024
    seed: int = 0
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    dead_steps: int = 200
    threshold_beta: float = 0.99
    threshold_start: float = 0.5
    decoder_init_norm: float = 0.1
    exclude_positions: tuple[int, ...] | list[int] = (0,)
    exclude_bos: bool = True

    def __post_init__(self) -> None:
        for name in ("n_latents", "k", "steps", "batch_size", "dead_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise CrosscoderError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise CrosscoderError(f"seed must be an int, got {self.seed!r}")
        if self.k > self.n_latents:
            raise CrosscoderError(f"k={self.k} must be at most n_latents={self.n_latents}")
        if self.aux_k is not None and (
            not isinstance(self.aux_k, int)
            or isinstance(self.aux_k, bool)
            or not 1 <= self.aux_k <= self.n_latents
        ):
            raise CrosscoderError(
                f"aux_k must be None or an int in 1..n_latents={self.n_latents}, got {self.aux_k!r}"
            )
        checks = (
            ("lr", lambda v: v > 0, "a positive number"),
            ("aux_coefficient", lambda v: v >= 0, "a number >= 0"),
            ("threshold_beta", lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("threshold_start", lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
            ("decoder_init_norm", lambda v: v > 0, "a positive number"),
        )
        for name, ok, accepted in checks:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not ok(value)
            ):
                raise CrosscoderError(f"{name} must be {accepted}, got {value!r}")
        if not isinstance(self.exclude_bos, bool):
            raise CrosscoderError(f"exclude_bos must be True or False, got {self.exclude_bos!r}")
        try:
            object.__setattr__(self, "exclude_positions", self.exclusion().positions)
        except (TypeError, ValueError) as exc:
            raise CrosscoderError(str(exc)) from None

    def exclusion(self) -> SinkExclusion:
        return SinkExclusion(positions=tuple(self.exclude_positions), bos=self.exclude_bos)

    def aux_k_for(self) -> int:
        return self.aux_k if self.aux_k is not None else min(2 * self.k, self.n_latents)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CrosscoderConfig":
        """A config from saved fields; unknown keys are warned about and left out."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            log.warning("crosscoder config: ignoring unknown keys %s", unknown)
        return cls(**{k: v for k, v in d.items() if k in known})


def batch_topk(scores: Float[Tensor, "batch d_sae"], k: int) -> Bool[Tensor, "batch d_sae"]:
    """The ``k * batch`` largest entries of the whole batch (entries <= 0 never count as kept).

    Example:
        >>> batch_topk(torch.tensor([[0.1, 3.0, 0.2, 0.0], [2.0, 0.3, 0.0, 1.0]]), k=1).int()
        tensor([[0, 1, 0, 0],
                [1, 0, 0, 0]], dtype=torch.int32)
    """
    n = min(k * scores.shape[0], scores.numel())
    keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    keep[scores.flatten().topk(n).indices] = True
    return keep.view_as(scores) & (scores > 0)


def fit_beta(
    f: Float[Tensor, "batch"],  # noqa: F821
    direction: Float[Tensor, "d_model"],  # noqa: F821
    target: Float[Tensor, "batch d_model"],
) -> float:
    """The least-squares ``beta`` minimising ``sum_i ||beta * f_i * direction - target_i||^2``.

    Example:
        >>> fit_beta(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]),
        ...          torch.tensor([[2.0, 5.0], [3.0, 1.0]]))
        1.6
    """
    den = float((f.double() ** 2).sum() * (direction.double() ** 2).sum())
    num = float((f.double() * (target.double() @ direction.double())).sum())
    return num / den if den > 0 else float("nan")


class Crosscoder(nn.Module):
    """A BatchTopK crosscoder over ``n_models`` models' activations at one hook.

    Args:
        n_models: models read (2 for base and tuned).
        d_model: width of the hook's activations.
        n_latents: dictionary size.
        k: latents kept per position on average (BatchTopK).

    Attributes:
        threshold: the inference threshold on ``f * (summed decoder norm)``; negative until
            estimated, and then :meth:`encode` falls back to BatchTopK.
        hook, labels, models, config, training: provenance, saved in ``cfg.json``.

    Example:
        >>> cc = Crosscoder(n_models=2, d_model=4, n_latents=8, k=2)
        >>> cc(torch.randn(5, 2, 4)).shape
        torch.Size([5, 2, 4])
    """

    def __init__(self, n_models: int, d_model: int, n_latents: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.W_enc = nn.Parameter(torch.zeros(n_models, d_model, n_latents))
        self.b_enc = nn.Parameter(torch.zeros(n_latents))
        self.W_dec = nn.Parameter(torch.zeros(n_models, n_latents, d_model))
        self.b_dec = nn.Parameter(torch.zeros(n_models, d_model))
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("fire_count", torch.zeros(n_latents, dtype=torch.long))
        self.hook: str | None = None
        self.labels: tuple[str, ...] = tuple(f"model{i}" for i in range(n_models))
        self.models: dict[str, dict[str, Any]] = {}
        self.config: CrosscoderConfig | None = None
        self.training_stats: dict[str, Any] = {}

    @property
    def n_models(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_model(self) -> int:
        return self.W_enc.shape[1]

    @property
    def n_latents(self) -> int:
        return self.W_enc.shape[2]

    def decoder_norms(self) -> Float[Tensor, "n_models d_sae"]:
        return self.W_dec.norm(dim=-1)

    def pre_acts(self, x: Float[Tensor, "batch n_models d_model"]) -> Float[Tensor, "batch d_sae"]:
        return torch.einsum("bmd,mdl->bl", x, self.W_enc) + self.b_enc

    def encode(
        self, x: Float[Tensor, "batch n_models d_model"], batch_rule: bool | None = None
    ) -> Float[Tensor, "batch d_sae"]:
        """Latent activations: BatchTopK (``batch_rule``, or while no threshold is estimated) or
        the inference threshold on each latent's decoder-norm-weighted activation."""
        f = torch.relu(self.pre_acts(x))
        scores = f * self.decoder_norms().sum(0)
        use_batch = bool(self.threshold < 0) if batch_rule is None else batch_rule
        keep = batch_topk(scores.detach(), self.k) if use_batch else scores > self.threshold
        return f * keep

    def decode(self, f: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch n_models d_model"]:
        return torch.einsum("bl,mld->bmd", f, self.W_dec) + self.b_dec

    def forward(self, x: Float[Tensor, "batch n_models d_model"]) -> Float[Tensor, "batch n_models d_model"]:
        return self.decode(self.encode(x))

    def index(self, label: str) -> int:
        if label not in self.labels:
            raise CrosscoderError(
                f"the crosscoder has no model {label!r}; its models are {list(self.labels)}"
            )
        return self.labels.index(label)

    def check_fits(self, source: "PairedCache | Mapping[str, Tensor]", hook: str | None = None) -> None:
        """Refuse data at another hook, without one of this crosscoder's models, or of another width.

        A paired cache of other weights than those trained on is used with a warning.

        Raises:
            CrosscoderError: naming the mismatch.
        """
        hook = hook if hook is not None else self.hook
        if self.hook is not None and hook != self.hook:
            raise CrosscoderError(f"the crosscoder was trained on hook {self.hook!r}, not on {hook!r}")
        _, d_model, models = _describe_source(source, hook, self.labels)
        if d_model != self.d_model:
            raise CrosscoderError(
                f"the crosscoder reads d_model={self.d_model}, but {hook!r} has width {d_model}"
            )
        for label in self.labels:
            mine, theirs = self.models.get(label, {}).get("fingerprint"), models[label].get("fingerprint")
            if mine and theirs and mine != theirs:
                log.warning(
                    "crosscoder model %r was trained on %s; the data comes from %s", label, mine, theirs
                )

    # --- saving --------------------------------------------------------------------------------

    def cfg_dict(self) -> dict[str, Any]:
        thr = float(self.threshold)
        return {
            "format": FORMAT,
            "n_models": self.n_models,
            "d_model": self.d_model,
            "n_latents": self.n_latents,
            "k": self.k,
            "hook": self.hook,
            "labels": list(self.labels),
            "models": self.models,
            "threshold": thr if thr >= 0 else None,
            "config": asdict(self.config) if self.config is not None else None,
            "training": self.training_stats,
        }

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``cfg.json`` into ``path``, atomically (a temp dir, renamed).

        An existing crosscoder directory at ``path`` is replaced; anything else there is refused.

        Raises:
            CrosscoderError: ``path`` holds something else, or cannot be written.
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not _replaceable(path):
            raise CrosscoderError(f"cannot save the crosscoder in {str(path)!r}: it holds something else")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.saving-"))
        except OSError as exc:
            raise CrosscoderError(
                f"cannot save the crosscoder in {str(path)!r}: {exc.strerror or exc}"
            ) from None
        try:
            tensors = {
                k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k != "threshold"
            }
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            cfg = {**self.cfg_dict(), "weights_sha256": sha256_file(tmp / WEIGHTS_FILE)}
            (tmp / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            for name in (WEIGHTS_FILE, CFG_FILE):
                with open(tmp / name, "rb") as fh:
                    os.fsync(fh.fileno())
            if not path.exists():
                os.replace(tmp, path)
            else:  # move the old one aside, put the new one in, and only then delete the old one
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
                os.replace(path, old / "cc")
                try:
                    os.replace(tmp, path)
                except OSError:
                    os.replace(old / "cc", path)
                    raise
                finally:
                    shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            raise CrosscoderError(
                f"cannot save the crosscoder in {str(path)!r}: {exc.strerror or exc}"
            ) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Crosscoder":
        """Load a crosscoder saved by :meth:`save`, checking its checksum and shapes first.

        Raises:
            CrosscoderError: a missing directory or file, unreadable or ill-formed ``cfg.json``,
                weights whose sha256 or shapes differ from ``cfg.json``.

        Example:
            >>> Crosscoder.load("/no")
            Traceback (most recent call last):
            ...
            steering.crosscoder.CrosscoderError: '/no' is not a crosscoder directory: cfg.json is missing
        """
        from safetensors import safe_open

        path = Path(path)
        for name in (CFG_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                raise CrosscoderError(f"{str(path)!r} is not a crosscoder directory: {name} is missing")
        where = f"cannot load the crosscoder in {str(path)!r}:"
        try:
            cfg = json.loads((path / CFG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CrosscoderError(f"{where} {CFG_FILE} is not readable JSON ({_one_line(exc)})") from None
        problem = _cfg_problem(cfg)
        if problem:
            raise CrosscoderError(f"{where} {CFG_FILE} {problem}")
        if sha256_file(path / WEIGHTS_FILE) != cfg["weights_sha256"]:
            raise CrosscoderError(
                f"{where} {WEIGHTS_FILE} does not match the sha256 in {CFG_FILE} (corrupt or replaced)"
            )
        m, d, n = cfg["n_models"], cfg["d_model"], cfg["n_latents"]
        want = {"W_enc": [m, d, n], "b_enc": [n], "W_dec": [m, n, d], "b_dec": [m, d], "fire_count": [n]}
        try:
            with safe_open(str(path / WEIGHTS_FILE), framework="pt") as fh:
                shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}  # header only
                if shapes != want:
                    raise CrosscoderError(f"{where} {WEIGHTS_FILE} holds {shapes}; {CFG_FILE} needs {want}")
                tensors = {k: fh.get_tensor(k) for k in want}
        except CrosscoderError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise CrosscoderError(
                f"{where} {WEIGHTS_FILE} is not readable safetensors ({_one_line(exc)})"
            ) from None
        try:
            config = CrosscoderConfig.from_dict(cfg["config"]) if cfg["config"] is not None else None
        except (TypeError, ValueError) as exc:
            raise CrosscoderError(f"{where} {CFG_FILE} has a bad config ({_one_line(exc)})") from None
        cc = cls(m, d, n, cfg["k"])
        cc.load_state_dict(
            {
                **tensors,
                "threshold": torch.tensor(-1.0 if cfg["threshold"] is None else float(cfg["threshold"])),
            }
        )
        cc.hook, cc.labels, cc.models = cfg["hook"], tuple(cfg["labels"]), cfg["models"]
        cc.config, cc.training_stats = config, cfg["training"]
        return cc


def _replaceable(path: Path) -> bool:
    """An empty directory, or one holding a crosscoder (and nothing else)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return names <= {CFG_FILE, WEIGHTS_FILE}


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cfg_problem(cfg: Any) -> str | None:
    """What is wrong with a ``cfg.json``'s fields, or None."""
    if not isinstance(cfg, dict):
        return f"holds a {type(cfg).__name__}, not an object"
    if cfg.get("format") != FORMAT:
        return f"has format {cfg.get('format')!r}, not {FORMAT!r}"
    for key in ("n_models", "d_model", "n_latents", "k"):
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return f"has {key}={v!r}; expected a positive int"
    labels = cfg.get("labels")
    if (
        not isinstance(labels, list)
        or len(labels) != cfg["n_models"]
        or not all(isinstance(x, str) for x in labels)
    ):
        return f"has labels={labels!r}; expected {cfg['n_models']} names"
    checks = (
        ("hook", str | None),
        ("models", dict),
        ("threshold", int | float | None),
        ("config", dict | None),
        ("training", dict),
        ("weights_sha256", str),
    )
    for key, kind in checks:
        if key not in cfg or not isinstance(cfg[key], kind) or isinstance(cfg[key], bool):
            return f"has {key}={cfg.get(key)!r}, which is not a valid value"
    return None


# --- data ----------------------------------------------------------------------------------------


def _describe_source(
    source: "PairedCache | Mapping[str, Tensor]", hook: str | None, labels: Sequence[str] | None
) -> tuple[list[str], int, dict[str, dict[str, Any]]]:
    """Labels, d_model and per-label provenance; refuses mismatched hooks, rows or widths."""
    if isinstance(source, PairedCache):
        labels = list(labels) if labels is not None else source.labels
        missing = [lab for lab in labels if lab not in source.labels]
        if missing:
            raise CrosscoderError(
                f"the paired cache has no model {missing[0]!r}; its labels are {source.labels}"
            )
        if hook is None:
            raise CrosscoderError("a hook is needed to read a paired cache; pass hook=")
        caches = {lab: source[lab] for lab in labels}
        for lab, cache in caches.items():
            if hook not in cache.hooks:
                raise CrosscoderError(f"cache {lab!r} has no hook {hook!r}; its hooks are {cache.hooks}")
        layouts = {lab: _layout(c) for lab, c in caches.items()}
        for lab, layout in layouts.items():
            if layout != layouts[labels[0]]:  # batches are zipped shard by shard: the shards must match
                raise CrosscoderError(
                    f"caches {labels[0]!r} and {lab!r} are not over the same token rows in the same shards"
                )
        widths = {lab: math.prod(c[hook].shape[1:]) for lab, c in caches.items()}
        models = {
            lab: {
                "spec": c.manifest["model"]["spec"],
                "fingerprint": c.model_fingerprint,
                "cache_id": c.id,
                "architecture": architecture_of_cache(c),
            }
            for lab, c in caches.items()
        }
    else:
        labels = list(labels) if labels is not None else list(source)
        missing = [lab for lab in labels if lab not in source]
        if missing:
            raise CrosscoderError(f"no activations for model {missing[0]!r}; given {list(source)}")
        shapes = {lab: tuple(source[lab].shape) for lab in labels}
        if any(len(s) != 2 for s in shapes.values()):
            raise CrosscoderError(f"activations must be [positions, d_model] per model; got shapes {shapes}")
        rows = {s[0] for s in shapes.values()}
        if len(rows) > 1:
            raise CrosscoderError(f"the models' activations cover different numbers of positions: {shapes}")
        widths = {lab: s[1] for lab, s in shapes.items()}
        models = {
            lab: {"spec": None, "fingerprint": None, "cache_id": None, "architecture": None} for lab in labels
        }
    if len(labels) < 2:
        raise CrosscoderError(f"a crosscoder needs two or more models; got {labels}")
    if len(set(widths.values())) > 1:
        raise CrosscoderError(f"the models' activations at {hook!r} differ in d_model: {widths}")
    return labels, next(iter(widths.values())), models


def _layout(cache) -> tuple:
    return cache.manifest["prompts"]["sha256"], [s["n_positions"] for s in cache.manifest["shards"]]


def _batches(
    source: "PairedCache | Mapping[str, Tensor]",
    hook: str | None,
    labels: Sequence[str],
    batch_size: int,
    seed: int,
    keep: Tensor | None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[Tensor]:
    """One pass of aligned ``[batch, n_models, d_model]`` float batches."""
    if isinstance(source, PairedCache):
        # the same seed and keep mask over identically sharded caches give the same permutation
        iters = [
            kept_batches(source[lab], hook, batch_size, keep, shuffle, seed, drop_last) for lab in labels
        ]
        for parts in zip(*iters, strict=True):
            yield torch.stack([p.reshape(len(p), -1).float() for p in parts], dim=1)
        return
    n = len(source[labels[0]])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield torch.stack([source[lab][idx].float() for lab in labels], dim=1)


# --- training ------------------------------------------------------------------------------------


def train_crosscoder(
    source: "PairedCache | Mapping[str, Tensor]",
    config: CrosscoderConfig,
    hook: str | None = None,
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> Crosscoder:
    """Train a BatchTopK crosscoder on aligned activations of several models at one hook.

    Args:
        source: a paired cache (read one shard at a time, attention sinks left out as the config
            says), or ``{label: activations [positions, d_model]}`` in memory.
        config: the settings.
        hook: the hook to read (required for a paired cache; recorded either way).
        labels: which models, in order (default: all of the source's); the first is the base.
        progress: show a progress bar.

    Returns:
        The trained :class:`Crosscoder`, with its inference threshold, provenance (both models'
        fingerprints and cache IDs) and training statistics.

    Raises:
        CrosscoderError: fewer than two models, a model or hook the source lacks, caches over other
            rows, activations of different widths, or fewer positions than one batch.

    Example:
        >>> acts = {"base": torch.randn(64, 4), "tuned": torch.randn(64, 4)}
        >>> cc = train_crosscoder(acts, CrosscoderConfig(n_latents=8, k=2, steps=5, batch_size=16),
        ...                       hook="blocks.0.hook_resid_post", progress=False)
        >>> cc.labels, cc.W_dec.shape
        (('base', 'tuned'), torch.Size([2, 8, 4]))
    """
    from tqdm.auto import tqdm

    labels, d_model, models = _describe_source(source, hook, labels)
    exclusion = config.exclusion()
    keep = None
    n_positions = (
        len(source[labels[0]]) if not isinstance(source, PairedCache) else source[labels[0]].n_positions
    )
    if isinstance(source, PairedCache) and exclusion.excludes_anything:
        keep = exclusion.keep_mask(source[labels[0]])
        n_positions = int(keep.sum())
    if n_positions < config.batch_size:
        raise CrosscoderError(
            f"the source holds {n_positions} usable positions, fewer than one batch of "
            f"batch_size={config.batch_size}; lower batch_size"
        )

    def forever() -> Iterator[Tensor]:
        epoch = 0
        while True:
            yield from _batches(source, hook, labels, config.batch_size, config.seed + epoch, keep)
            epoch += 1

    batches = forever()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seeds the init without disturbing the caller's RNG
        torch.manual_seed(config.seed)
        cc = _initialised(len(labels), d_model, config, next(batches))
        stats = _fit(
            cc, config, batches, tqdm(total=config.steps, desc=f"crosscoder {hook}", disable=not progress)
        )
    cc.hook, cc.labels, cc.models, cc.config = hook, tuple(labels), models, config
    stats["fraction_variance_explained"] = dict(
        zip(labels, stats["fraction_variance_explained"], strict=True)
    )
    cc.training_stats = {
        **stats,
        "seconds": time.perf_counter() - start,
        "n_positions": n_positions,
        "excluded": exclusion.to_dict() if isinstance(source, PairedCache) else None,
    }
    return cc


def _initialised(n_models: int, d_model: int, config: CrosscoderConfig, first: Tensor) -> Crosscoder:
    cc = Crosscoder(n_models, d_model, config.n_latents, config.k)
    with torch.no_grad():
        dec = torch.randn(n_models, config.n_latents, d_model)
        cc.W_dec.copy_(dec / dec.norm(dim=-1, keepdim=True) * config.decoder_init_norm)
        cc.W_enc.copy_(cc.W_dec.transpose(1, 2))
        cc.b_dec.copy_(first.mean(0))
    return cc


def _fit(cc: Crosscoder, config: CrosscoderConfig, batches: Iterator[Tensor], bar) -> dict[str, Any]:
    opt = torch.optim.Adam(cc.parameters(), lr=config.lr)
    idle = torch.zeros(config.n_latents, dtype=torch.long)  # steps since each latent last fired
    threshold_from = int(config.threshold_start * config.steps)
    window = max(1, config.steps // 10)  # the last tenth of training, for the reported numbers
    sq_err = torch.zeros(cc.n_models, dtype=torch.float64)
    sq_dev = torch.zeros(cc.n_models, dtype=torch.float64)
    threshold, aux_total, l0_total = None, 0.0, 0.0
    with bar:
        for step in range(config.steps):
            x = next(batches)
            f = torch.relu(cc.pre_acts(x))
            scores = f * cc.decoder_norms().sum(0)
            kept = batch_topk(scores.detach(), config.k)
            recon = cc.decode(f * kept)
            err = x - recon
            loss = err.pow(2).sum(-1).mean(0).sum()
            fired = kept.any(0)
            idle = torch.where(fired, 0, idle + 1)
            dead = idle >= config.dead_steps
            aux = _aux_loss(cc, f, err.detach(), dead, config.aux_k_for()) if config.aux_coefficient else None
            if aux is not None:
                loss = loss + config.aux_coefficient * aux
            if step >= threshold_from:
                cc.fire_count += kept.sum(0)
            if step >= threshold_from and kept.any():
                smallest = float(scores.detach()[kept].min())
                b = config.threshold_beta
                threshold = smallest if threshold is None else b * threshold + (1 - b) * smallest
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= config.steps - window:
                sq_err += err.detach().pow(2).sum((0, 2)).double()
                sq_dev += (x - x.mean(0)).pow(2).sum((0, 2)).double()
                aux_total += float(aux.detach()) if aux is not None else 0.0
                l0_total += float(kept.sum(1).float().mean())
            bar.update(1)
    cc.threshold.fill_(threshold if threshold is not None else -1.0)
    fve = (1 - sq_err / sq_dev.clamp(min=1e-30)).tolist()
    return {
        "steps": config.steps,
        "final_loss": float(sq_err.sum() / (window * config.batch_size)),
        "fraction_variance_explained": fve,
        "final_aux_loss": aux_total / window,
        "mean_l0": l0_total / window,
        "dead_latents": int((idle >= config.dead_steps).sum()),
        "never_fired": int((cc.fire_count == 0).sum()),
    }


def _aux_loss(cc: Crosscoder, f: Tensor, err: Tensor, dead: Tensor, aux_k: int) -> Tensor | None:
    """How well the dead latents' top ``aux_k`` activations reconstruct the remaining error, normalised."""
    n_dead = int(dead.sum())
    if not n_dead:
        return None
    masked = torch.where(dead, f, torch.zeros_like(f))
    vals, idx = masked.topk(min(aux_k, n_dead), dim=-1)
    aux_f = torch.zeros_like(f).scatter(-1, idx, vals)
    guess = torch.einsum("bl,mld->bmd", aux_f, cc.W_dec)
    return (guess - err).pow(2).sum((1, 2)).mean() / err.pow(2).sum((1, 2)).mean().clamp(min=1e-12)


# --- reading a trained crosscoder ----------------------------------------------------------------


@dataclass(frozen=True)
class LatentKinds:
    """Each latent's decoder-norm ratio between two of the crosscoder's models, and its kind.

    ``ratio`` is ``||d_tuned|| / (||d_base|| + ||d_tuned||)``; ``cosine`` the cosine between the
    two decoder vectors (nan where one is zero); ``kinds`` one of :data:`KINDS` per latent.
    """

    labels: tuple[str, str]
    ratio: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    cosine: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    kinds: tuple[str, ...] = field(repr=False)

    def indices(self, kind: str) -> list[int]:
        if kind not in KINDS:
            raise CrosscoderError(f"kind {kind!r} is not one of {list(KINDS)}")
        return [i for i, k in enumerate(self.kinds) if k == kind]

    def counts(self) -> dict[str, int]:
        return {k: len(self.indices(k)) for k in KINDS}

    def shared_cosine(self) -> float:
        """Mean decoder cosine over the shared latents (nan if none)."""
        idx = self.indices("shared")
        return float(self.cosine[idx].mean()) if idx else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "counts": self.counts(),
            "shared_mean_cosine": self.shared_cosine(),
            "ratio": self.ratio.tolist(),
            "cosine": [None if math.isnan(c) else c for c in self.cosine.tolist()],
            "kinds": list(self.kinds),
        }

    def __str__(self) -> str:
        base, tuned = self.labels
        head = f"crosscoder latents by decoder-norm ratio ||d_{tuned}|| / (||d_{base}|| + ||d_{tuned}||)"
        rows = [[k, n] for k, n in self.counts().items()] + [["shared: mean cosine", self.shared_cosine()]]
        return head + "\n" + format_table(["kind", "latents"], rows)


def classify_latents(cc: Crosscoder, base: str | None = None, tuned: str | None = None) -> LatentKinds:
    """Decoder-norm ratio, kind and decoder cosine of every latent (see the module docstring).

    Args:
        cc: a trained crosscoder.
        base, tuned: the two models compared (default: its first and second).

    Example:
        >>> cc = Crosscoder(2, 3, 2, k=1)
        >>> _ = cc.W_dec.data.copy_(torch.tensor([[[1., 0, 0], [0, 0, 0]], [[1., 0, 0], [0, 1, 0]]]))
        >>> _ = cc.fire_count.fill_(1)
        >>> classify_latents(cc).kinds
        ('shared', 'tuned-only')
    """
    b, t = cc.index(base or cc.labels[0]), cc.index(tuned or cc.labels[1])
    with torch.no_grad():
        d_base, d_tuned = cc.W_dec[b].float(), cc.W_dec[t].float()
        nb, nt = d_base.norm(dim=-1), d_tuned.norm(dim=-1)
        ratio = nt / (nb + nt).clamp(min=1e-30)
        cosine = torch.where(
            (nb > 0) & (nt > 0), (d_base * d_tuned).sum(-1) / (nb * nt).clamp(min=1e-30), torch.nan
        )
    lo, hi = BOUNDS["shared"]
    kinds = []
    for r, dead in zip(ratio.tolist(), ((cc.fire_count == 0) | (nb + nt == 0)).tolist(), strict=True):
        if dead:
            kinds.append("dead")
        elif r < BOUNDS["base-only"]:
            kinds.append("base-only")
        elif r > BOUNDS["tuned-only"]:
            kinds.append("tuned-only")
        elif lo <= r <= hi:
            kinds.append("shared")
        else:
            kinds.append("other")
    return LatentKinds((cc.labels[b], cc.labels[t]), ratio, cosine, tuple(kinds))


@dataclass(frozen=True)
class LatentScaling:
    """Latent scaling of model-specific latents (see the module docstring).

    ``beta[name]`` per latent for ``error_own``, ``error_other``, ``reconstruction_own`` and
    ``reconstruction_other``; ``own[i]`` is the model latent ``latents[i]`` lives in.
    """

    latents: tuple[int, ...]
    own: tuple[str, ...]
    other: tuple[str, ...]
    beta: dict[str, Tensor] = field(repr=False)
    n_active: Tensor = field(repr=False)
    max_ratio: float = 0.5

    @property
    def nu_error(self) -> Tensor:
        return self.beta["error_other"] / self.beta["error_own"]

    @property
    def nu_reconstruction(self) -> Tensor:
        return self.beta["reconstruction_other"] / self.beta["reconstruction_own"]

    def flagged(self) -> list[int]:
        """Latents whose model-specific label may be a shrinkage artefact (either ratio > ``max_ratio``)."""
        bad = (self.nu_error > self.max_ratio) | (self.nu_reconstruction > self.max_ratio)
        return [j for j, b in zip(self.latents, bad.tolist(), strict=True) if b]

    def to_dict(self) -> dict[str, Any]:
        def clean(t: Tensor) -> list:
            return [None if math.isnan(v) else v for v in t.tolist()]

        return {
            "latents": list(self.latents),
            "own": list(self.own),
            "other": list(self.other),
            "beta": {k: clean(v) for k, v in self.beta.items()},
            "n_active": self.n_active.tolist(),
            "nu_error": clean(self.nu_error),
            "nu_reconstruction": clean(self.nu_reconstruction),
            "max_ratio": self.max_ratio,
            "flagged": self.flagged(),
        }

    def __str__(self) -> str:
        rows = [
            [j, own, int(n), e, r, "yes" if j in self.flagged() else ""]
            for j, own, n, e, r in zip(
                self.latents,
                self.own,
                self.n_active.tolist(),
                self.nu_error.tolist(),
                self.nu_reconstruction.tolist(),
                strict=True,
            )
        ]
        return format_table(["latent", "in", "active", "nu_error", "nu_recon", "flagged"], rows)


def latent_scaling(
    cc: Crosscoder,
    source: "PairedCache | Mapping[str, Tensor]",
    latents: Sequence[int] | None = None,
    base: str | None = None,
    tuned: str | None = None,
    batch_size: int = 4096,
    max_ratio: float = 0.5,
) -> LatentScaling:
    """Fit each latent's ``beta`` ratios over the source's activations (streamed, exact sums).

    Args:
        cc: a trained crosscoder.
        source: the data (a paired cache at ``cc.hook``, or ``{label: [positions, d_model]}``).
        latents: which (default: the base-only and tuned-only ones of :func:`classify_latents`).
        base, tuned: the two models compared (default: the crosscoder's first two).
        batch_size: positions per batch (inference uses the threshold, so this changes nothing).
        max_ratio: ``nu`` above which a latent is flagged.

    Raises:
        CrosscoderError: the data does not fit the crosscoder (see :meth:`Crosscoder.check_fits`).
    """
    kinds = classify_latents(cc, base, tuned)
    idx_b, idx_t = cc.index(kinds.labels[0]), cc.index(kinds.labels[1])
    if latents is None:
        latents = kinds.indices("base-only") + kinds.indices("tuned-only")
    cc.check_fits(source, cc.hook)
    lat = torch.as_tensor(list(latents), dtype=torch.long)
    own = torch.where(kinds.ratio[lat] >= 0.5, idx_t, idx_b)
    other = torch.where(own == idx_t, idx_b, idx_t)
    keep = None
    if isinstance(source, PairedCache) and cc.config is not None and cc.config.exclusion().excludes_anything:
        keep = cc.config.exclusion().keep_mask(source[cc.labels[0]])
    num = {k: torch.zeros(len(lat), dtype=torch.float64) for k in ("error", "reconstruction")}
    num = {f"{k}_{side}": v.clone() for k, v in num.items() for side in ("own", "other")}
    den = torch.zeros(len(lat), dtype=torch.float64)
    active = torch.zeros(len(lat), dtype=torch.long)
    with torch.no_grad():
        d = cc.W_dec[own, lat].double()  # [S, d_model]: each latent's direction in its own model
        for x in _batches(source, cc.hook, cc.labels, batch_size, 0, keep, shuffle=False, drop_last=False):
            f = cc.encode(x)
            recon = cc.decode(f)
            fs = f[:, lat].double()
            den += (fs**2).sum(0) * (d**2).sum(-1)
            active += (fs > 0).sum(0)
            for side, models in (("own", own), ("other", other)):
                for m in models.unique().tolist():
                    sel = models == m
                    self_dot = (cc.W_dec[m, lat[sel]].double() * d[sel]).sum(-1)  # j's own share in m
                    err = (x[:, m] - recon[:, m]).double() @ d[sel].T
                    rec = (recon[:, m] - cc.b_dec[m]).double() @ d[sel].T
                    f_sq = (fs[:, sel] ** 2).sum(0)
                    num[f"error_{side}"][sel] += (fs[:, sel] * err).sum(0) + f_sq * self_dot
                    num[f"reconstruction_{side}"][sel] += (fs[:, sel] * rec).sum(0)
    beta = {k: torch.where(den > 0, v / den.clamp(min=1e-300), torch.nan).float() for k, v in num.items()}
    return LatentScaling(
        tuple(lat.tolist()),
        tuple(cc.labels[i] for i in own.tolist()),
        tuple(cc.labels[i] for i in other.tolist()),
        beta,
        active,
        max_ratio,
    )
