"""Finding SAE features: rank them against labelled positions, show their top contexts, diff models.

- :func:`rank_features`: AUROC of every feature at once for picking out labelled positions (e.g.
  the positions just before an epistemic marker, :func:`marker_labels`), the difference of mean
  activation between labelled and other positions, and optionally a ReasonScore.
- :func:`top_contexts` (in :mod:`steering.feature_contexts`): the top-activating positions of
  chosen features, rendered as text with the maximal token marked ``[[like this]]``.
- :func:`firing_rates` (in :mod:`steering.feature_diff`): how often the same features fire in two
  models over a paired cache; the features that training switched off are those whose rate drops.

AUROC is the Mann-Whitney statistic, ties counted half: ``(R_pos - n_pos (n_pos + 1) / 2) /
(n_pos n_neg)`` with ``R_pos`` the sum of the labelled positions' average ranks, computed for all
features in one sort per chunk of features.

ReasonScore, in the manner of Galichin et al. 2025 (arXiv 2503.18878), for feature ``i`` over
positions inside windows around reasoning words ``R`` (here: marker tokens) and the rest::

    score_i = mean_R(a_i) / sum_j mean_R(a_j) * H_i ** alpha  -  mean_notR(a_i) / sum_j mean_notR(a_j)

where ``H_i`` is the entropy of the feature's mean activation across the individual words of
``R`` (normalised to sum to 1), divided by ``log |R|``, so features that fire on one word only are
discounted. It ranks features that fire specifically and broadly on the reasoning vocabulary.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from interp.cache import Cache
from interp.results import format_table, save_figure, save_json
from interp.tokenizers import encode_plain
from steering.feature_contexts import Context, FeatureContexts, top_contexts
from steering.feature_diff import FiringRates, firing_rates
from steering.sae_io import _as_cache, check_sae_fits, encode

__all__ = [
    "Context",
    "FeatureContexts",
    "FeatureRanking",
    "FiringRates",
    "auroc",
    "feature_activations",
    "firing_rates",
    "marker_labels",
    "rank_features",
    "reason_score",
    "token_labels",
    "token_word_ids",
    "top_contexts",
]


def auroc(
    scores: Float[Tensor, "n d_sae"],
    labels: Bool[Tensor, "n"],  # noqa: F821
    chunk: int = 256,
) -> Float[Tensor, "d_sae"]:  # noqa: F821
    """AUROC of every column of ``scores`` for separating ``labels`` (ties count half).

    Args:
        scores: one column per feature.
        labels: True for the positive positions.
        chunk: columns sorted at once (memory is ``n * chunk``).

    Returns:
        One AUROC per column: 1 when every positive scores above every negative, 0.5 for chance.

    Raises:
        ValueError: shapes differ, or the labels are all of one class.

    Example:
        >>> auroc(torch.tensor([[0.9, 0.0], [0.1, 0.0], [0.5, 1.0]]), torch.tensor([True, False, True]))
        tensor([1.0000, 0.7500])
    """
    n = len(scores)
    if labels.shape != (n,):
        raise ValueError(f"labels of shape {tuple(labels.shape)} for {n} rows of scores; expected ({n},)")
    labels = labels.bool()
    n_pos = int(labels.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positive and {n_neg} negative positions")
    out = []
    for j in range(0, scores.shape[1], chunk):
        v, order = scores[:, j : j + chunk].float().sort(0)
        idx = torch.arange(n)[:, None].expand_as(v)
        first = torch.ones_like(v, dtype=torch.bool)
        first[1:] = v[1:] != v[:-1]
        last = torch.ones_like(v, dtype=torch.bool)
        last[:-1] = first[1:]
        start = torch.where(first, idx, 0).cummax(0).values
        end = torch.where(last, idx, n - 1).flip(0).cummin(0).values.flip(0)
        rank = (start + end).double() / 2 + 1  # average rank of each tie group
        rank_pos = (rank * labels[order]).sum(0)
        out.append((rank_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return torch.cat(out).float()


def _flat_rows(cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """All row tokens flat, each row's start in them, and each row's length."""
    rows = list(cache.iter_row_tokens())
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.long)
    return flat, starts, lengths


def token_labels(cache: "Cache | str | Path", token_ids: Sequence[int], offset: int = 1) -> Bool[Tensor, "n"]:  # noqa: F821
    """Mark the cached positions whose token ``offset`` places later is one of ``token_ids``.

    ``offset=1`` marks the positions just before such a token, ``offset=0`` the token itself.

    Example:
        >>> token_labels("/nonexistent", [5])
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    return token_word_ids(_as_cache(cache), token_ids, offsets=(offset,)) >= 0


def token_word_ids(
    cache: "Cache | str | Path", token_ids: Sequence[int], offsets: Sequence[int] = (0,)
) -> Int[Tensor, "n"]:  # noqa: F821
    """Which of ``token_ids`` sits ``offset`` places from each cached position (-1: none).

    Offsets are tried in order; the first that finds one of the tokens wins. With
    ``offsets=range(-after, before + 1)`` this labels windows around each occurrence, as
    :func:`reason_score` wants.

    Args:
        cache: an opened cache or its directory.
        token_ids: the words, as token ids; the result indexes this list.
        offsets: relative positions to look at.

    Returns:
        One index into ``token_ids`` per cached position, or -1.

    Example:
        >>> token_word_ids("/nonexistent", [5, 7])
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    flat, starts, lengths = _flat_rows(cache)
    rows, pos = cache.rows, cache.positions
    lookup = torch.full((int(flat.max()) + 1 if len(flat) else 1,), -1, dtype=torch.long)
    for i, t in enumerate(token_ids):
        if 0 <= int(t) < len(lookup) and lookup[int(t)] < 0:
            lookup[int(t)] = i
    out = torch.full((len(rows),), -1, dtype=torch.long)
    for off in offsets:
        target = pos + off
        inside = (target >= 0) & (target < lengths[rows])
        tok = flat[(starts[rows] + target.clamp(min=0)).clamp(max=max(len(flat) - 1, 0))]
        word = torch.where(inside, lookup[tok], -1)
        out = torch.where(out < 0, word, out)
    return out


def marker_labels(
    cache: "Cache | str | Path", tokenizer, marker: str = "WAIT", offset: int = 1
) -> Bool[Tensor, "n"]:  # noqa: F821
    """Positions just before (``offset=1``) a marker word such as the organism's ``WAIT``.

    Args:
        cache: an opened cache or its directory.
        tokenizer: the model's tokenizer (anything with ``encode(text) -> ids``).
        marker: the word.
        offset: 1 marks the position before the marker, 0 the marker itself.

    Returns:
        One bool per cached position.

    Raises:
        ValueError: the marker is not exactly one token for this tokenizer.

    Example:
        >>> from interp.organism.tokenizer import WordTokenizer
        >>> marker_labels("/nonexistent", WordTokenizer(["WAIT", "CHECK"]), "WAIT CHECK")
        Traceback (most recent call last):
        ...
        ValueError: marker 'WAIT CHECK' encodes to 2 tokens [0, 1]; expected exactly one
    """
    ids = encode_plain(tokenizer, marker)
    if len(ids) != 1:
        raise ValueError(f"marker {marker!r} encodes to {len(ids)} tokens {ids}; expected exactly one")
    return token_labels(cache, ids, offset)


def feature_activations(
    sae, cache: "Cache | str | Path", hook: str, max_positions: int | None = None, batch_size: int = 4096
) -> Float[Tensor, "n d_sae"]:
    """Feature activations at the first ``max_positions`` cached positions (all by default).

    Args:
        sae: an ``sae_lens.SAE``.
        cache: an opened cache or its directory.
        hook: the hook the SAE reads.
        max_positions: memory is ``n * d_sae`` floats: cap this on large caches.
        batch_size: positions encoded at once.

    Returns:
        ``[n, d_sae]`` activations, in cache order.

    Raises:
        HookNameError: the cache lacks ``hook``.
        SAEError: the SAE's ``d_in`` differs from the activations' size.

    Example:
        >>> feature_activations(None, "/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    check_sae_fits(sae, cache, hook)
    n = len(cache[hook]) if max_positions is None else min(max_positions, len(cache[hook]))
    out = torch.empty((n, int(sae.cfg.d_sae)))
    seen = 0
    for batch in cache.batches(hook, batch_size):
        part = encode(sae, batch[: n - seen]).cpu()
        out[seen : seen + len(part)] = part
        seen += len(part)
        if seen >= n:
            break
    return out


def reason_score(
    acts: Float[Tensor, "n d_sae"],
    word_ids: Int[Tensor, "n"],  # noqa: F821
    alpha: float = 0.7,
) -> Float[Tensor, "d_sae"]:  # noqa: F821
    """ReasonScore (module docstring) from activations and per-position reasoning-word indices.

    Args:
        acts: feature activations.
        word_ids: index of the reasoning word whose window holds each position, -1 outside.
        alpha: weight of the entropy term.

    Returns:
        One score per feature; higher means more specific to, and broader across, the words.

    Raises:
        ValueError: no position is inside, or none outside, a reasoning window.

    Example:
        >>> acts = torch.tensor([[1.0, 2.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> reason_score(acts, torch.tensor([0, 1, -1, -1]), alpha=1.0)
        tensor([ 0.5000, -1.0000])
    """
    inside = word_ids >= 0
    if not inside.any() or inside.all():
        raise ValueError(
            "ReasonScore needs positions inside and outside reasoning windows; got "
            f"{int(inside.sum())} of {len(word_ids)} inside"
        )
    acts = acts.double()
    mean_in, mean_out = acts[inside].mean(0), acts[~inside].mean(0)
    n_words = int(word_ids.max()) + 1
    sums = torch.zeros((n_words, acts.shape[1]), dtype=torch.float64).index_add_(
        0, word_ids[inside], acts[inside]
    )
    counts = torch.bincount(word_ids[inside], minlength=n_words).clamp(min=1)
    per_word = sums / counts[:, None]
    present = torch.bincount(word_ids[inside], minlength=n_words) > 0
    per_word = per_word[present]
    p = per_word / per_word.sum(0).clamp(min=1e-12)
    ent = -(p * p.clamp(min=1e-12).log()).sum(0)
    h = ent / math.log(len(per_word)) if len(per_word) > 1 else torch.ones_like(ent)
    score = mean_in / mean_in.sum().clamp(min=1e-12) * h.pow(alpha) - mean_out / mean_out.sum().clamp(
        min=1e-12
    )
    return score.float()


@dataclass(frozen=True)
class FeatureRanking:
    """Per-feature scores for picking out labelled positions; ``order`` is by AUROC, best first."""

    hook: str
    auroc: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    mean_diff: Float[Tensor, "d_sae"] = field(repr=False)  # noqa: F821
    n_positive: int
    n_negative: int
    reason_score: Float[Tensor, "d_sae"] | None = field(default=None, repr=False)  # noqa: F821

    def top(self, n: int = 10, by: str = "auroc") -> list[int]:
        """The ``n`` best features by ``"auroc"``, ``"mean_diff"`` or ``"reason_score"``."""
        if by not in ("auroc", "mean_diff", "reason_score") or getattr(self, by) is None:
            raise ValueError(
                f"cannot rank by {by!r}; available: auroc, mean_diff"
                + (", reason_score" if self.reason_score is not None else "")
            )
        return getattr(self, by).argsort(descending=True)[:n].tolist()

    def to_dict(self, n: int = 50) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "top_by_auroc": self._rows(self.top(n)),
            "top_by_reason_score": self._rows(self.top(n, "reason_score"))
            if self.reason_score is not None
            else None,
            "auroc": self.auroc.tolist(),
            "mean_diff": self.mean_diff.tolist(),
            "reason_score": self.reason_score.tolist() if self.reason_score is not None else None,
        }

    def _rows(self, feats: list[int]) -> list[dict[str, Any]]:
        out = []
        for f in feats:
            row = {"feature": f, "auroc": float(self.auroc[f]), "mean_diff": float(self.mean_diff[f])}
            if self.reason_score is not None:
                row["reason_score"] = float(self.reason_score[f])
            out.append(row)
        return out

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def table(self, n: int = 10) -> str:
        rows = self._rows(self.top(n))
        header = list(rows[0]) if rows else ["feature", "auroc", "mean_diff"]
        return format_table(header, [list(r.values()) for r in rows])

    def __str__(self) -> str:
        return self.table()

    def plot(self, path_or_ax, n: int = 20):
        """Bar chart of the top ``n`` features' AUROC."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "bar") else plt.subplots(figsize=(7, 3.5))[1]
        feats = self.top(n)
        ax.bar([str(f) for f in feats], [float(self.auroc[f]) for f in feats])
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set(
            xlabel="feature",
            ylabel="AUROC",
            ylim=(0, 1),
            title=f"features picking out labelled positions ({self.hook})",
        )
        ax.tick_params(axis="x", labelrotation=90)
        return ax if ax is path_or_ax else save_figure(ax.figure, path_or_ax)


def rank_features(
    sae,
    cache: "Cache | str | Path",
    hook: str,
    labels: Bool[Tensor, "n"],  # noqa: F821
    word_ids: Int[Tensor, "n"] | None = None,  # noqa: F821
    alpha: float = 0.7,
    max_positions: int | None = 50_000,
    batch_size: int = 4096,
) -> FeatureRanking:
    """Rank all features by AUROC and mean-activation difference for the labelled positions.

    Args:
        sae: an ``sae_lens.SAE``.
        cache: the cache (``labels`` are over its positions, in order).
        hook: the hook the SAE reads.
        labels: one bool per cached position (e.g. :func:`marker_labels`).
        word_ids: if given, also compute :func:`reason_score` (see :func:`token_word_ids`).
        alpha: ReasonScore's entropy weight.
        max_positions: use the first this many positions (memory ``n * d_sae`` floats).

    Returns:
        A :class:`FeatureRanking`.

    Raises:
        ValueError: ``labels`` does not have one entry per cached position, or one class is empty.

    Example:
        >>> rank_features(None, "/nonexistent", "blocks.0.hook_resid_post", torch.ones(3, dtype=torch.bool))
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    total = len(cache[hook])
    if labels.shape != (total,):
        raise ValueError(
            f"labels of shape {tuple(labels.shape)}; the cache has {total} positions at {hook!r}"
        )
    acts = feature_activations(sae, cache, hook, max_positions, batch_size)
    lab = labels[: len(acts)].bool()
    score = auroc(acts, lab)
    diff = acts[lab].mean(0) - acts[~lab].mean(0)
    rs = reason_score(acts, word_ids[: len(acts)], alpha) if word_ids is not None else None
    return FeatureRanking(hook, score, diff, int(lab.sum()), int((~lab).sum()), rs)
