"""The crosscoder itself: a plain ``nn.Module`` with BatchTopK sparsity, and the settings it is trained with.

A crosscoder (Lindsey et al. 2024) reads the activations of several models at one hook over the
same token positions through one latent code: each model ``m`` has its own encoder ``W_enc[m]``
(``d_model x n_latents``) and decoder ``W_dec[m]`` (``n_latents x d_model``, with ``b_dec[m]``),
the latents share ``b_enc``. Sparsity is BatchTopK (Bussmann et al. 2024, :func:`batch_topk`): of
the whole batch's pre-activations, weighted by each latent's summed decoder norm, the
``k * batch`` largest are kept; a threshold estimated during training replaces the batch rule at
inference. Training is :func:`steering.crosscoder.train_crosscoder`; the files are
:mod:`steering.crosscoder_io`.
"""

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.cache import PairedCache
from interp.errors import CrosscoderError
from steering.crosscoder_data import describe_source
from steering.crosscoder_io import CFG_FILE, FORMAT, read_crosscoder, write_crosscoder
from steering.sae_io import SinkExclusion, _one_line

log = logging.getLogger(__name__)


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
        interp.errors.CrosscoderError: k=9 must be at most n_latents=8
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
        _, d_model, models = describe_source(source, hook, self.labels)
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

    # --- saving (the format and its checks: steering.crosscoder_io) ---------------------------

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
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k != "threshold"}
        return write_crosscoder(path, tensors, self.cfg_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Crosscoder":
        """Load a crosscoder saved by :meth:`save`, checking its checksum and shapes first.

        Raises:
            CrosscoderError: what :func:`~steering.crosscoder_io.read_crosscoder` refuses, or a
                ``config`` in ``cfg.json`` that :class:`CrosscoderConfig` refuses.

        Example:
            >>> Crosscoder.load("/no")
            Traceback (most recent call last):
            ...
            interp.errors.CrosscoderError: '/no' is not a crosscoder directory: cfg.json is missing
        """
        cfg, tensors = read_crosscoder(path)
        try:
            config = CrosscoderConfig.from_dict(cfg["config"]) if cfg["config"] is not None else None
        except (TypeError, ValueError) as exc:
            where = f"cannot load the crosscoder in {str(Path(path))!r}:"
            raise CrosscoderError(f"{where} {CFG_FILE} has a bad config ({_one_line(exc)})") from None
        cc = cls(cfg["n_models"], cfg["d_model"], cfg["n_latents"], cfg["k"])
        threshold = -1.0 if cfg["threshold"] is None else float(cfg["threshold"])
        cc.load_state_dict({**tensors, "threshold": torch.tensor(threshold)})
        cc.hook, cc.labels, cc.models = cfg["hook"], tuple(cfg["labels"]), cfg["models"]
        cc.config, cc.training_stats = config, cfg["training"]
        return cc
