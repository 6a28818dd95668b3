"""Steering vectors: per-layer directions added to the residual stream, and SAE-feature clamping.

A :class:`SteeringVector` holds one direction per hook point plus where it came from. Build one
by difference of means (CAA) over contrastive prompts or labelled cached positions, by PCA of
paired differences, or from an SAE feature's decoder row; apply it with::

    with vec.apply(model, scale=4.0):
        model(tokens)

Model policy of :meth:`SteeringVector.apply`: a vector may be applied to any model whose
*architecture* (module class, ``n_layers``, ``d_model``, ``d_vocab``) matches the one it was
built on, so that a vector from ``base`` can steer its fine-tuned twin; if the weight
fingerprint differs a warning is logged. A model of another architecture, or a hook whose width
is not the vector's ``d_model``, is refused with :class:`~interp.errors.ModelMismatchError`.

With a key-value cache (``interp.generation`` / ``interp.organism.generate``) every forward pass
sees only the positions it computes: the prompt once, then one new token per step. ``positions``
select along the ``pos`` axis *of each pass*: ``None`` (the default) steers every prompt position
once and every generated token once, exactly as a full recomputation with the vector at all
positions would; ``-1`` steers the last prompt token and each generated token. Explicit prompt
indices (``[0, 3]``) are only meaningful for single forward passes, not for generation.
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.atomic import atomic_write_bytes, atomic_write_json
from interp.errors import InterpError, ModelMismatchError
from interp.fingerprint import sha256_file
from interp.hooks import Positions, add_vector, patch, record, resolve_hook_names
from interp.results import format_table, save_figure

log = logging.getLogger(__name__)

TENSORS_FILE = "vector.safetensors"
META_FILE = "vector.json"
ARCH_KEYS = ("class", "n_layers", "d_model", "d_vocab")
PromptPositions = Literal["last", "all"] | int | Sequence[int]


class VectorFileError(InterpError, ValueError):
    """A steering-vector directory that is missing, incomplete or corrupt."""


def model_meta(model) -> dict[str, Any]:
    """Spec, fingerprint and architecture summary of a model, as stored in a vector's metadata."""
    from interp.models import as_model

    d = as_model(model).describe()
    return {
        "spec": d["spec"],
        "fingerprint": d["fingerprint"],
        "architecture": {k: d[k] for k in ARCH_KEYS},
    }


@dataclass(frozen=True)
class SteeringVector:
    """One direction per hook point, with its provenance.

    Args:
        directions: hook name -> direction ``[d_model]`` (added as ``scale * direction``).
        meta: ``method``, ``d_model``, ``model`` (``spec``, ``fingerprint``, ``architecture``;
            ``None`` when unknown, e.g. an SAE direction given as a bare tensor) and
            ``provenance`` (prompt counts and hashes, cache ID, SAE feature).

    Example:
        >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> v.d_model, v.hook_names
        (4, ('blocks.0.hook_resid_post',))
    """

    directions: dict[str, Tensor]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.directions:
            raise ValueError("a steering vector needs at least one hook direction; got none")
        widths = {name: tuple(v.shape) for name, v in self.directions.items()}
        if any(len(s) != 1 for s in widths.values()) or len({s[0] for s in widths.values()}) != 1:
            raise ValueError(f"directions must all be 1-D of one width d_model; got shapes {widths}")

    @property
    def d_model(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])

    @property
    def hook_names(self) -> tuple[str, ...]:
        return tuple(self.directions)

    def norms(self) -> dict[str, float]:
        return {name: float(v.float().norm()) for name, v in self.directions.items()}

    def select(self, layers: Sequence[int | str] | None) -> dict[str, Tensor]:
        """The directions of the given layers (ints) or hook names (``None``: all).

        Raises:
            KeyError: a layer or name the vector has no direction for (lists those it has).
        """
        if layers is None:
            return dict(self.directions)
        out = {}
        for key in layers:
            if isinstance(key, int):
                names = [n for n in self.directions if n.startswith(f"blocks.{key}.")]
            else:
                names = [key] if key in self.directions else []
            if not names:
                raise KeyError(f"the vector has no direction for {key!r}; it has {list(self.directions)}")
            out.update((n, self.directions[n]) for n in names)
        return out

    def check_model(self, model) -> None:
        """Apply the model policy (see the module docstring).

        Raises:
            ModelMismatchError: another architecture, or a hook of another width.
        """
        from interp.models import as_model

        m = as_model(model)
        if m.d_model != self.d_model:
            raise ModelMismatchError(
                f"steering vector has d_model {self.d_model}, the model {m.spec!r} has d_model {m.d_model}"
            )
        built = (self.meta.get("model") or {}).get("architecture")
        if built is None:
            return
        here = {k: m.describe()[k] for k in ARCH_KEYS}
        diff = {k: (built.get(k), here[k]) for k in ARCH_KEYS if built.get(k) != here[k]}
        if diff:
            raise ModelMismatchError(
                f"steering vector was built on a {built} model ({self.meta['model'].get('spec')}), "
                f"not on {m.spec!r}: differs in "
                + ", ".join(f"{k} (vector {a}, model {b})" for k, (a, b) in diff.items())
            )
        if self.meta["model"].get("fingerprint") != m.fingerprint:
            log.warning(
                "steering vector from %s (%s) applied to %s (%s): same architecture, other weights",
                self.meta["model"].get("spec"),
                self.meta["model"].get("fingerprint"),
                m.spec,
                m.fingerprint,
            )

    @contextmanager
    def apply(
        self,
        model,
        scale: float = 1.0,
        positions: Positions = None,
        layers: Sequence[int | str] | None = None,
    ) -> Iterator[None]:
        """Add ``scale * direction`` at each hook during the forward passes in the body.

        Args:
            model: a :class:`interp.models.Model` or TransformerLens module.
            scale: multiplier of every direction.
            positions: where to add, along the ``pos`` axis of each forward pass (see the module
                docstring for generation with a key-value cache); ``None``: everywhere.
            layers: restrict to these layer indices or hook names (``None``: all of the vector's).

        Raises:
            ModelMismatchError: see :meth:`check_model`.
            HookNameError: the model lacks one of the hooks (nothing is registered then).

        Example:
            >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
            >>> cfg = HookedTransformerConfig(
            ...     n_layers=1, d_model=4, n_ctx=4, d_head=2, d_vocab=5, act_fn="relu")
            >>> m = HookedTransformer(cfg)
            >>> v = SteeringVector({"blocks.0.hook_resid_post": torch.ones(4)}, {"method": "manual"})
            >>> with v.apply(m, scale=2.0):
            ...     logits = m(torch.tensor([[1, 2]]))
            >>> sum(len(h._forward_hooks) for h in m.hook_dict.values())
            0
        """
        self.check_model(model)
        chosen = self.select(layers)
        resolve_hook_names(model, list(chosen))  # every name checked before any registration
        with ExitStack() as stack:
            for name, direction in chosen.items():
                stack.enter_context(add_vector(model, name, direction, scale=scale, positions=positions))
            yield

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooks": list(self.directions),
            "norms": self.norms(),
            "d_model": self.d_model,
            "meta": self.meta,
        }

    def __str__(self) -> str:
        rows = [[name, float(v.float().norm())] for name, v in self.directions.items()]
        head = f"steering vector ({self.meta.get('method', '?')}, d_model {self.d_model})"
        return head + "\n" + format_table(["hook", "norm"], rows)

    def save(self, path: str | Path) -> Path:
        """Write ``vector.safetensors`` then ``vector.json`` (with its checksum) into a directory.

        Both writes are atomic; the JSON, written last, names the tensors file's sha256, so a
        directory whose JSON exists holds a complete vector.
        """
        from safetensors.torch import save

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {n: v.detach().float().cpu().contiguous() for n, v in self.directions.items()}
        atomic_write_bytes(path / TENSORS_FILE, save(tensors))
        atomic_write_json(path / META_FILE, {**self.to_dict(), "sha256": sha256_file(path / TENSORS_FILE)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SteeringVector":
        """Load a vector saved with :meth:`save`.

        Raises:
            VectorFileError: a missing directory or file, a checksum mismatch, or unreadable
                contents.
        """
        import json

        from safetensors.torch import load_file

        path = Path(path)
        meta_path, tensor_path = path / META_FILE, path / TENSORS_FILE
        for p in (meta_path, tensor_path):
            if not p.is_file():
                raise VectorFileError(f"no steering vector at {str(path)!r}: {p.name} is missing")
        try:
            info = json.loads(meta_path.read_text())
            hooks, expected = info["hooks"], info["sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise VectorFileError(f"{str(meta_path)!r} is not a steering-vector file ({exc})") from None
        if sha256_file(tensor_path) != expected:
            raise VectorFileError(
                f"{str(tensor_path)!r} is corrupt: its sha256 differs from the one in {META_FILE}"
            )
        try:
            tensors = load_file(str(tensor_path))
        except Exception as exc:  # safetensors raises its own error types
            raise VectorFileError(f"cannot read {str(tensor_path)!r}: {exc}") from None
        missing = [h for h in hooks if h not in tensors]
        if missing:
            raise VectorFileError(f"{str(tensor_path)!r} lacks the directions for {missing}")
        return cls({h: tensors[h] for h in hooks}, info.get("meta", {}))

    def plot(self, path_or_ax=None):
        """Bar chart of the direction norms per hook; a path saves a PNG and returns it."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "bar") else plt.subplots(figsize=(6, 3))[1]
        names = list(self.directions)
        ax.bar(range(len(names)), list(self.norms().values()))
        ax.set_xticks(range(len(names)), [n.replace(".hook_", "\n") for n in names], fontsize=7)
        ax.set_ylabel("direction norm")
        ax.set_title(f"steering vector ({self.meta.get('method', '?')})")
        if path_or_ax is None or hasattr(path_or_ax, "bar"):
            return ax
        return save_figure(ax.figure, path_or_ax)


def layer_hooks(layers: Sequence[int], site: str = "hook_resid_post") -> list[str]:
    """Hook names of a residual site at the given layers.

    Example:
        >>> layer_hooks([0, 2])
        ['blocks.0.hook_resid_post', 'blocks.2.hook_resid_post']
    """
    return [f"blocks.{int(i)}.{site}" for i in layers]


def mean_difference(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, "d_model"]:  # noqa: F821
    """Difference of means (CAA): ``mean(positive) - mean(negative)``.

    Raises:
        ValueError: an empty set or sets of different widths.

    Example:
        >>> mean_difference(torch.tensor([[2.0, 0.0], [4.0, 0.0]]), torch.tensor([[0.0, 1.0]])).tolist()
        [3.0, -1.0]
    """
    if positive.shape[-1] != negative.shape[-1] or not len(positive) or not len(negative):
        raise ValueError(
            f"need non-empty sets of equal width, got {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    return positive.double().mean(0).float() - negative.double().mean(0).float()


def pca_difference(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, "d_model"]:  # noqa: F821
    """First principal component of the paired differences ``positive[i] - negative[i]`` (``n == m``).

    The component is that of the differences and their negations together (uncentred, so a
    shared offset is not removed), i.e. the top right-singular vector of the difference matrix;
    its sign is aligned with the mean difference and its length is the mean difference's
    projection on it, so that ``scale`` means the same as for :func:`mean_difference`.

    Raises:
        ValueError: sets of different shapes, or empty.

    Example:
        >>> pos = torch.tensor([[3.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
        >>> pca_difference(pos, torch.zeros(3, 2)).tolist()
        [1.3333333730697632, 0.0]
    """
    if positive.shape != negative.shape or not len(positive):
        raise ValueError(
            f"paired sets must have one shape, got {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    diffs = positive.double() - negative.double()
    pc = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
    mean = diffs.mean(0)
    proj = float(mean @ pc)
    if proj < 0:
        pc, proj = -pc, -proj
    return (pc * proj).float()


def _tokenize(model, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
    rows = [list(model.encode(p)) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    empty = [i for i, r in enumerate(rows) if not r]
    if empty:
        raise ValueError(f"prompts {empty} are empty; every prompt needs at least one token")
    return rows


def _position_mask(lengths: list[int], width: int, positions: PromptPositions) -> Bool[Tensor, "batch pos"]:
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for i, n in enumerate(lengths):
        if positions == "last":
            idx = [n - 1]
        elif positions == "all":
            idx = list(range(n))
        else:
            raw = [positions] if isinstance(positions, int) else list(positions)
            bad = [p for p in raw if not -n <= p < n]
            if bad:
                raise ValueError(f"positions {bad} are outside prompt {i} of {n} tokens")
            idx = [p % n for p in raw]
        mask[i, idx] = True
    return mask


def prompt_activations(
    model,
    prompts: Sequence[str | Sequence[int]],
    hooks: str | Sequence[str],
    positions: PromptPositions = "last",
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Float[Tensor, "n d_model"]]:
    """Each prompt's activation at each hook, averaged over its selected positions.

    Prompts are right-padded into batches (causal attention: padding after a token does not
    change it), one forward pass per batch, recorded with :func:`interp.hooks.record`.

    Args:
        model: a :class:`interp.models.Model` (its tokenizer encodes strings) or module.
        prompts: strings or token-id lists.
        hooks: hook names or globs.
        positions: ``"last"`` token, ``"all"`` tokens, or indices into each prompt (negative from
            its end).
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        hook name -> ``[n_prompts, d_model]`` (float32, on the CPU).

    Raises:
        ValueError: an empty prompt or a position outside a prompt.
        HookNameError: an unknown hook.
    """
    from tqdm.auto import tqdm

    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    rows = _tokenize(m, prompts)
    if positions not in ("last", "all") and not isinstance(positions, int | Sequence):
        raise ValueError(f"positions={positions!r}; expected 'last', 'all', an int or a list of ints")
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    pad = m.pad_token_id if m.tokenizer is not None else 0
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc="activations"):
        chunk = rows[start : start + batch_size]
        lengths = [len(r) for r in chunk]
        width = max(lengths)
        toks = torch.tensor([r + [pad] * (width - len(r)) for r in chunk], dtype=torch.long)
        mask = _position_mask(lengths, width, positions)
        weights = (mask / mask.sum(1, keepdim=True)).float()
        with torch.inference_mode(), record(m, names, device="cpu") as acts:
            m.forward(toks)
        for n in names:
            out[n].append(torch.einsum("bp,bpd->bd", weights, acts[n].float()))
    return {n: torch.cat(v) for n, v in out.items()}


def _provenance(model, prompts: Sequence[str | Sequence[int]]) -> dict[str, Any]:
    from interp.fingerprint import hash_token_rows
    from interp.models import as_model

    rows = _tokenize(as_model(model), prompts)
    return {"count": len(rows), "sha256": hash_token_rows(rows)}


def from_prompts(
    model,
    positive: Sequence[str | Sequence[int]],
    negative: Sequence[str | Sequence[int]],
    hooks: str | Sequence[str],
    method: Literal["mean", "pca"] = "mean",
    positions: PromptPositions = "last",
    batch_size: int = 32,
    progress: bool = False,
) -> SteeringVector:
    """A steering vector from contrastive prompts: difference of means (CAA) or PCA of pairs.

    Args:
        model: the model (a :class:`interp.models.Model` or module).
        positive: prompts showing the behaviour.
        negative: prompts without it (for ``pca``: paired with ``positive``, same count).
        hooks: hook names or globs (see :func:`layer_hooks`).
        method: ``mean`` (:func:`mean_difference`) or ``pca`` (:func:`pca_difference`).
        positions: which positions of each prompt (see :func:`prompt_activations`).
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        A :class:`SteeringVector` with the model's identity and the prompts' hashes.

    Raises:
        ValueError: an unknown method, empty sets, or unpaired sets for ``pca``.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> v = from_prompts(HookedTransformer(cfg), [[1, 2], [1, 3]], [[4, 2]], "blocks.0.hook_resid_post")
        >>> v.hook_names, v.meta["method"]
        (('blocks.0.hook_resid_post',), 'mean')
    """
    if method not in ("mean", "pca"):
        raise ValueError(f"method={method!r}; expected 'mean' or 'pca'")
    if not positive or not negative:
        raise ValueError(f"need positive and negative prompts, got {len(positive)} and {len(negative)}")
    if method == "pca" and len(positive) != len(negative):
        raise ValueError(f"pca pairs prompts: got {len(positive)} positive and {len(negative)} negative")
    acts = prompt_activations(model, [*positive, *negative], hooks, positions, batch_size, progress)
    n = len(positive)
    fn = mean_difference if method == "mean" else pca_difference
    directions = {h: fn(a[:n], a[n:]) for h, a in acts.items()}
    meta = {
        "method": method,
        "d_model": next(iter(directions.values())).shape[0],
        "model": model_meta(model),
        "provenance": {
            "source": "prompts",
            "positions": positions if isinstance(positions, str | int) else list(positions),
            "positive": _provenance(model, positive),
            "negative": _provenance(model, negative),
        },
    }
    return SteeringVector(directions, meta)


def from_cache(
    cache,
    labels: Bool[Tensor, "n"],  # noqa: F821
    hooks: Sequence[str] | None = None,
    batch_size: int = 65536,
) -> SteeringVector:
    """Difference of means between labelled (``True``) and other cached positions.

    Streams each hook's activations in cache order, one batch at a time (bounded memory).

    Args:
        cache: an opened :class:`interp.cache.Cache` (or its directory).
        labels: one boolean per cached position (``cache.n_positions``).
        hooks: which of the cache's hooks (default: all).
        batch_size: positions read at a time.

    Returns:
        A :class:`SteeringVector` citing the cache ID and the model it was built from.

    Raises:
        ValueError: labels of the wrong length, or a class with no position.
        HookNameError: a hook the cache lacks.
    """
    from interp.cache import open_cache
    from interp.fingerprint import sha256_json

    if isinstance(cache, str | Path):
        cache = open_cache(cache)
    labels = torch.as_tensor(labels).bool().reshape(-1)
    if len(labels) != cache.n_positions:
        raise ValueError(f"{len(labels)} labels for a cache of {cache.n_positions} positions")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise ValueError(f"labels mark {n_pos} of {len(labels)} positions; both classes need some")
    hooks = list(hooks or cache.hooks)
    for h in hooks:
        cache[h]  # raises HookNameError listing the cache's hooks
    directions = {}
    for h in hooks:
        sums = torch.zeros(2, cache[h].shape[-1], dtype=torch.float64)
        start = 0
        for batch in cache.batches(h, batch_size):
            lab = labels[start : start + len(batch)]
            sums[0] += batch[lab].double().sum(0)
            sums[1] += batch[~lab].double().sum(0)
            start += len(batch)
        directions[h] = (sums[0] / n_pos - sums[1] / (len(labels) - n_pos)).float()
    m = cache.manifest["model"]
    meta = {
        "method": "mean",
        "d_model": next(iter(directions.values())).shape[0],
        "model": {
            "spec": m["spec"],
            "fingerprint": m["fingerprint"],
            "architecture": {k: m.get(k) for k in ARCH_KEYS},
        },
        "provenance": {
            "source": "cache",
            "cache_id": cache.id,
            "labels": {
                "positive": n_pos,
                "negative": len(labels) - n_pos,
                "sha256": sha256_json(labels.int().tolist()),
            },
        },
    }
    return SteeringVector(directions, meta)


def _sae_hook(sae, hook_name: str | None) -> str:
    if hook_name is not None:
        return hook_name
    name = getattr(getattr(getattr(sae, "cfg", None), "metadata", None), "hook_name", None)
    if not name:
        raise ValueError("the SAE does not say which hook it reads (cfg.metadata.hook_name); pass hook_name")
    return str(name)


def _decoder_row(sae, feature: int | None) -> Tensor:
    W = sae.W_dec if hasattr(sae, "W_dec") else sae
    if not isinstance(W, Tensor):
        raise TypeError(f"expected a tensor or an object with W_dec, got {type(sae).__name__}")
    if W.dim() == 1:
        return W.detach().float()
    if feature is None or not 0 <= feature < W.shape[0]:
        raise ValueError(f"feature={feature!r}; expected an index in [0, {W.shape[0]}) of W_dec")
    return W[feature].detach().float()


def from_sae_feature(
    sae,
    feature: int | None = None,
    hook_name: str | None = None,
    model=None,
) -> SteeringVector:
    """A steering vector along an SAE feature's decoder direction ``W_dec[feature]``.

    Args:
        sae: an object with ``W_dec`` ``[d_sae, d_model]`` (an sae-lens SAE), a ``W_dec`` tensor,
            or one direction ``[d_model]``.
        feature: the feature's index (not needed for a single direction).
        hook_name: where to add it; default ``sae.cfg.metadata.hook_name``.
        model: the model it is meant for, recorded in the metadata (``None``: only ``d_model`` is
            checked on apply).

    Raises:
        ValueError: a feature out of range, or no hook name.

    Example:
        >>> v = from_sae_feature(torch.eye(3), 1, hook_name="blocks.0.hook_resid_post")
        >>> v.directions["blocks.0.hook_resid_post"].tolist()
        [0.0, 1.0, 0.0]
    """
    direction = _decoder_row(sae, feature)
    hook = _sae_hook(sae, hook_name)
    meta = {
        "method": "sae_feature",
        "d_model": direction.shape[0],
        "model": model_meta(model) if model is not None else None,
        "provenance": {"source": "sae", "feature": feature, "hook_name": hook, "sae": type(sae).__name__},
    }
    return SteeringVector({hook: direction.clone()}, meta)


@contextmanager
def clamp_feature(
    model,
    sae,
    feature: int,
    value: float,
    positions: Positions = None,
    hook_name: str | None = None,
) -> Iterator[None]:
    """Set an SAE feature's activation to ``value`` at the chosen positions.

    At the SAE's hook, ``x`` becomes ``x + (value - f(x)) * W_dec[feature]`` where ``f(x)`` is the
    feature's current activation (``sae.encode``): only the feature's share of the
    reconstruction changes, and the SAE's reconstruction error stays in ``x``. Re-encoding gives
    exactly ``value`` when ``W_enc[:, feature] . W_dec[feature] = 1`` and the other features do not
    see ``W_dec[feature]`` (e.g. a tied, orthonormal dictionary); otherwise approximately.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        sae: an object with ``encode(x)`` and ``W_dec`` (an sae-lens SAE).
        feature: the feature's index.
        value: its new activation (``0`` ablates it).
        positions: where (see :mod:`interp.hooks`); ``None``: everywhere.
        hook_name: default ``sae.cfg.metadata.hook_name``.

    Raises:
        ValueError: a feature out of range or no hook name.
        ModelMismatchError: the SAE's width differs from the hook's.
    """
    direction = _decoder_row(sae, feature)
    hook = _sae_hook(sae, hook_name)
    resolve_hook_names(model, hook)

    def clamp(x: Tensor) -> Tensor:
        if x.shape[-1] != direction.shape[0]:
            raise ModelMismatchError(
                f"SAE of width {direction.shape[0]} cannot read {hook!r}, whose width is {x.shape[-1]}"
            )
        with torch.no_grad():
            f = sae.encode(x)[..., feature]
        d = direction.to(device=x.device, dtype=x.dtype)
        return x + (value - f).to(x.dtype)[..., None] * d

    with patch(model, {hook: clamp}, positions=positions):
        yield
