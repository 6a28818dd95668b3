"""The activation-difference lens: what a fine-tune writes into the first tokens of any text.

Minder et al. 2025 (arXiv 2510.13900) find that a narrow fine-tune leaves a readable trace in
the difference of activations between the tuned and the base model over the first few tokens of
*unrelated* text: the mean of ``tuned - base`` at a middle-layer hook, per position, read through
the logit lens (the model's final norm and unembedding), promotes tokens of the fine-tune's
domain, and added to the base model as a steering vector it pushes generations towards it.

:func:`activation_difference` takes that mean over the first ``n_positions`` tokens of every row
of a paired cache (:class:`~interp.cache.PairedCache`, base and tuned over the same token rows);
:func:`logit_lens` reads any vectors through an unembedding matrix and an optional norm (a plain
function, testable with a hand-built unembedding), :func:`model_readout` takes both from a model,
and :func:`steer_by_difference` turns the mean into a house
:class:`~steering.steering_vector.SteeringVector` for the base model. Position 0 of a row is an
attention sink in real models (SmolLM2-135M: a residual norm ~25,000 against ~171 elsewhere),
so the steering vector leaves it out unless asked for.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache import PairedCache
from interp.errors import DiffLensError
from interp.results import format_table
from steering.crosscoder_data import provenance
from steering.steering_vector import SteeringVector


@dataclass(frozen=True)
class ActivationDifference:
    """Mean of ``tuned - base`` activations at one hook, per position within a row.

    Args:
        hook: the hook read.
        labels: ``(base, tuned)``.
        mean: ``[n_positions, d_model]``, row ``p`` the mean over rows at position ``p``.
        counts: how many rows reached each position (a row shorter than ``p + 1`` does not count).
        meta: per label ``spec``, ``fingerprint``, ``cache_id``, ``architecture`` (``None`` when the
            activations were given in memory).
    """

    hook: str | None
    labels: tuple[str, str]
    mean: Float[Tensor, "pos d_model"] = field(repr=False)
    counts: Int[Tensor, "pos"] = field(repr=False)  # noqa: F821
    meta: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def n_positions(self) -> int:
        return self.mean.shape[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "labels": list(self.labels),
            "counts": self.counts.tolist(),
            "norms": self.mean.norm(dim=-1).tolist(),
            "meta": self.meta,
        }

    def __str__(self) -> str:
        base, tuned = self.labels
        rows = [
            [p, int(n), float(v.norm())] for p, (n, v) in enumerate(zip(self.counts, self.mean, strict=True))
        ]
        head = f"mean {tuned} - {base} at {self.hook}, per position"
        return head + "\n" + format_table(["position", "rows", "norm"], rows)


def activation_difference(
    source: "PairedCache | Mapping[str, Tensor]",
    hook: str | None = None,
    n_positions: int = 5,
    base: str | None = None,
    tuned: str | None = None,
    batch_size: int = 65536,
) -> ActivationDifference:
    """Per-position mean of ``tuned - base`` over the first ``n_positions`` tokens of every row.

    Args:
        source: a paired cache (read in chunks of ``batch_size`` positions), or in memory
            ``{label: activations [rows, pos, d_model]}`` (every row of full length).
        hook: the hook (required for a paired cache).
        n_positions: how many leading positions of each row.
        base, tuned: labels (default: the source's first two).
        batch_size: positions read at a time from a cache.

    Returns:
        An :class:`ActivationDifference`.

    Raises:
        DiffLensError: a label or hook the source lacks, caches over other rows, activations of
            other shapes, or no cached position below ``n_positions``.
            Also ``n_positions`` or ``batch_size`` below 1.

    Example:
        >>> acts = {"base": torch.zeros(2, 3, 4), "tuned": torch.ones(2, 3, 4)}
        >>> activation_difference(acts, n_positions=2).mean
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.]])
    """
    for name, value in (("n_positions", n_positions), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise DiffLensError(f"{name} must be a positive int, got {value!r}")
    labels = list(source.labels if isinstance(source, PairedCache) else source)
    base, tuned = base or labels[0], tuned or (labels[1] if len(labels) > 1 else None)
    for label in (base, tuned):
        if label not in labels:
            raise DiffLensError(f"no activations labelled {label!r}; labels are {labels}")
    if base == tuned:
        raise DiffLensError(f"base and tuned are both {base!r}; name two different models")
    if isinstance(source, PairedCache):
        return _from_cache(source, hook, n_positions, base, tuned, batch_size)
    a, b = source[base], source[tuned]
    if a.ndim != 3 or a.shape != b.shape:
        raise DiffLensError(
            f"in-memory activations must be [rows, pos, d_model] of one shape; got {tuple(a.shape)} "
            f"for {base!r} and {tuple(b.shape)} for {tuned!r}"
        )
    n = min(n_positions, a.shape[1])
    diff = (b[:, :n].double() - a[:, :n].double()).mean(0).float()
    counts = torch.full((n,), a.shape[0], dtype=torch.long)
    meta = {lab: provenance() for lab in (base, tuned)}
    return ActivationDifference(hook, (base, tuned), diff, counts, meta)


def _from_cache(
    paired: PairedCache, hook: str | None, n_positions: int, base: str, tuned: str, batch_size: int
) -> ActivationDifference:
    if hook is None:
        raise DiffLensError("a hook is needed to read a paired cache; pass hook=")
    caches = {lab: paired[lab] for lab in (base, tuned)}
    for lab, cache in caches.items():
        if hook not in cache.hooks:
            raise DiffLensError(f"cache {lab!r} has no hook {hook!r}; its hooks are {cache.hooks}")
    cb, ct = caches[base], caches[tuned]
    if (
        cb.manifest["prompts"]["sha256"] != ct.manifest["prompts"]["sha256"]
        or cb.n_positions != ct.n_positions
    ):
        raise DiffLensError(f"caches {base!r} and {tuned!r} are not over the same token rows")
    ab, at = cb[hook], ct[hook]
    if ab.shape != at.shape:
        raise DiffLensError(f"{hook!r} has shape {ab.shape} in {base!r} but {at.shape} in {tuned!r}")
    positions = cb.positions.long()
    if not torch.equal(positions, ct.positions.long()):
        raise DiffLensError(f"caches {base!r} and {tuned!r} keep other positions of the rows")
    idx = (positions < n_positions).nonzero().squeeze(1)
    if not len(idx):
        raise DiffLensError(
            f"cache {base!r} keeps no position below {n_positions} (its positions start at "
            f"{int(positions.min())}); cache positions='all' to read the first tokens"
        )
    width = math.prod(ab.shape[1:])
    n = int(positions[idx].max()) + 1
    sums = torch.zeros(n, width, dtype=torch.float64)
    for i in range(0, len(idx), batch_size):
        chunk = idx[i : i + batch_size]
        delta = at[chunk].reshape(len(chunk), -1).double() - ab[chunk].reshape(len(chunk), -1).double()
        sums.index_add_(0, positions[chunk], delta)
    counts = torch.bincount(positions[idx], minlength=n)
    mean = (sums / counts.clamp(min=1).unsqueeze(1)).float()
    meta = {lab: provenance(c) for lab, c in caches.items()}
    return ActivationDifference(hook, (base, tuned), mean, counts, meta)


@dataclass(frozen=True)
class LensReading:
    """The tokens each vector promotes most through the logit lens.

    ``ids`` and ``logits`` are ``[n_vectors, k]``, best first; ``tokens`` their decoded text when
    a decoder was given.
    """

    ids: Int[Tensor, "pos k"] = field(repr=False)
    logits: Float[Tensor, "pos k"] = field(repr=False)
    tokens: tuple[tuple[str, ...], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": self.ids.tolist(),
            "logits": self.logits.tolist(),
            "tokens": [list(t) for t in self.tokens] if self.tokens is not None else None,
        }

    def __str__(self) -> str:
        rows = []
        for p in range(self.ids.shape[0]):
            names = self.tokens[p] if self.tokens is not None else [str(i) for i in self.ids[p].tolist()]
            rows.append([p, ", ".join(repr(t) if self.tokens is not None else t for t in names)])
        return format_table(["position", "top promoted tokens"], rows)


def logit_lens(
    vectors: Float[Tensor, "pos d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    norm: Callable[[Tensor], Tensor] | None = None,
    k: int = 10,
    decode: Callable[[list[int]], str] | None = None,
) -> LensReading:
    """Read vectors through an (optional) final norm and an unembedding: top ``k`` tokens each.

    Args:
        vectors: one vector per row (e.g. :attr:`ActivationDifference.mean`).
        W_U: the unembedding matrix (TransformerLens's layout, ``[d_model, d_vocab]``).
        norm: the final norm to apply first (``None``: none). The unembedding bias is left out:
            it is the same for every vector and would rank tokens by itself.
        k: tokens per vector.
        decode: turns ``[token_id]`` into text (e.g. ``model.decode``), for the table.

    Raises:
        DiffLensError: ``k`` out of range, or widths that do not match.

    Example:
        >>> W_U = torch.eye(3)
        >>> logit_lens(torch.tensor([[0.0, 0.0, 2.0]]), W_U, k=1).ids
        tensor([[2]])
    """
    if vectors.shape[-1] != W_U.shape[0]:
        raise DiffLensError(
            f"vectors of width {vectors.shape[-1]} cannot be read by an unembedding of d_model {W_U.shape[0]}"
        )
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= W_U.shape[1]:
        raise DiffLensError(f"k must be an int in 1..{W_U.shape[1]} (the vocabulary), got {k!r}")
    with torch.no_grad():
        x = vectors.to(W_U.device, W_U.dtype)
        logits = (norm(x) if norm is not None else x) @ W_U
        top = logits.float().topk(k, dim=-1)
    tokens = None
    if decode is not None:
        tokens = tuple(tuple(decode([i]) for i in row) for row in top.indices.tolist())
    return LensReading(top.indices.cpu(), top.values.cpu(), tokens)


def model_readout(model) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """A model's unembedding matrix ``[d_model, d_vocab]`` and final norm, for :func:`logit_lens`.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module (HookedTransformer or
            TransformerBridge: both have ``unembed.W_U`` and ``ln_final``).

    Raises:
        TypeError: the model has no ``unembed.W_U`` or ``ln_final``.
    """
    module = getattr(model, "module", model)
    unembed, ln_final = getattr(module, "unembed", None), getattr(module, "ln_final", None)
    if unembed is None or not hasattr(unembed, "W_U") or ln_final is None:
        raise TypeError(
            f"{type(module).__name__} has no unembed.W_U and ln_final to read the logit lens with"
        )
    return unembed.W_U.detach(), ln_final


def steer_by_difference(diff: ActivationDifference, positions: Sequence[int] | None = None) -> SteeringVector:
    """The mean difference as a steering vector for the base model (add it to move towards tuned).

    Args:
        diff: from :func:`activation_difference`.
        positions: which positions' means to average, weighted by their row counts (``None``:
            every position except 0, the attention sink, unless 0 is all there is).

    Returns:
        A :class:`SteeringVector` at ``diff.hook``, its ``meta.model`` the base model (when the
        difference came from a cache), its provenance the cache IDs, labels and positions.

    Raises:
        DiffLensError: a position the difference does not have, or a difference with no hook.

    Example:
        >>> d = activation_difference({"base": torch.zeros(2, 3, 4), "tuned": torch.ones(2, 3, 4)},
        ...                           hook="blocks.0.hook_resid_post")
        >>> steer_by_difference(d).directions["blocks.0.hook_resid_post"]
        tensor([1., 1., 1., 1.])
    """
    if diff.hook is None:
        raise DiffLensError("the difference has no hook name; pass hook= to activation_difference")
    if positions is None:
        positions = list(range(1, diff.n_positions)) or [0]
    positions = list(positions)
    bad = [p for p in positions if not isinstance(p, int) or not 0 <= p < diff.n_positions]
    if bad or not positions:
        raise DiffLensError(
            f"positions {positions!r} must be a non-empty list of positions in 0..{diff.n_positions - 1}"
        )
    w = diff.counts[positions].double()
    if not float(w.sum()) > 0:
        raise DiffLensError(f"no row reaches positions {positions}")
    direction = ((diff.mean[positions].double() * w.unsqueeze(1)).sum(0) / w.sum()).float()
    base, tuned = diff.labels
    source = diff.meta.get(base) or {}
    model = None
    if source.get("fingerprint"):
        model = {
            "spec": source["spec"],
            "fingerprint": source["fingerprint"],
            "architecture": source["architecture"],
        }
    meta = {
        "method": "activation-difference",
        "d_model": int(direction.shape[0]),
        "model": model,
        "provenance": {
            "source": "paired-cache" if model else "tensors",
            "labels": {"base": base, "tuned": tuned},
            "cache_ids": {lab: (diff.meta.get(lab) or {}).get("cache_id") for lab in diff.labels},
            "tuned_fingerprint": (diff.meta.get(tuned) or {}).get("fingerprint"),
            "positions": positions,
            "rows": [int(diff.counts[p]) for p in positions],
        },
    }
    return SteeringVector({diff.hook: direction}, meta)
