"""Diffing SAE features between two models: how often each fires in each, over a paired cache.

:func:`firing_rates` runs one SAE over the same token rows cached from two models (e.g. ``base``
and ``sft``); the features that training switched off are those whose rate drops
(:meth:`FiringRates.switched_off`).
"""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import PairedCache, open_paired_cache
from interp.results import format_table, save_figure, save_json
from steering.sae_io import check_sae_fits, encode


@dataclass(frozen=True)
class FiringRates:
    """Per-feature firing rates of the same SAE's features in two models over a paired cache."""

    hook: str
    labels: tuple[str, str]
    rates: Float[Tensor, "2 d_sae"] = field(repr=False)
    n_positions: int

    @property
    def drop(self) -> Float[Tensor, "d_sae"]:  # noqa: F821
        """Rate in the first model minus rate in the second."""
        return self.rates[0] - self.rates[1]

    @property
    def ratio(self) -> Float[Tensor, "d_sae"]:  # noqa: F821
        """Rate in the second model over rate in the first (nan where the first never fires)."""
        return torch.where(self.rates[0] > 0, self.rates[1] / self.rates[0].clamp(min=1e-12), torch.nan)

    def switched_off(self, min_rate: float = 0.01, max_ratio: float = 0.2) -> list[int]:
        """Features firing at least ``min_rate`` in the first model and at most ``max_ratio`` of
        that in the second, by largest drop first."""
        keep = (self.rates[0] >= min_rate) & (self.ratio <= max_ratio)
        idx = keep.nonzero().squeeze(1)
        return idx[self.drop[idx].argsort(descending=True)].tolist()

    def to_dict(self, n: int = 50) -> dict[str, Any]:
        top = self.drop.argsort(descending=True)[:n].tolist()
        return {
            "hook": self.hook,
            "labels": list(self.labels),
            "n_positions": self.n_positions,
            "switched_off": self.switched_off(),
            "top_drops": [self._row(f) for f in top],
            "rates": {lab: self.rates[i].tolist() for i, lab in enumerate(self.labels)},
        }

    def _row(self, f: int) -> dict[str, Any]:
        ratio = float(self.ratio[f])
        return {
            "feature": f,
            f"rate_{self.labels[0]}": float(self.rates[0, f]),
            f"rate_{self.labels[1]}": float(self.rates[1, f]),
            "drop": float(self.drop[f]),
            "ratio": None if math.isnan(ratio) else ratio,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def table(self, n: int = 10) -> str:
        rows = [self._row(f) for f in self.drop.argsort(descending=True)[:n].tolist()]
        return format_table(list(rows[0]), [list(r.values()) for r in rows])

    def __str__(self) -> str:
        return self.table()

    def plot(self, path_or_ax):
        """Firing rate in the first model against the second (log-log); switched-off ones in red."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "scatter") else plt.subplots(figsize=(4.5, 4.5))[1]
        floor = 0.5 / max(self.n_positions, 1)
        x, y = self.rates[0].clamp(min=floor), self.rates[1].clamp(min=floor)
        off = torch.zeros_like(x, dtype=torch.bool)
        off[self.switched_off()] = True
        ax.scatter(x[~off], y[~off], s=6, alpha=0.6, label="features")
        ax.scatter(x[off], y[off], s=10, color="red", label="switched off")
        ax.plot([floor, 1], [floor, 1], color="grey", lw=0.8, ls="--")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=f"firing rate, {self.labels[0]}",
            ylabel=f"firing rate, {self.labels[1]}",
            title=f"feature firing rates ({self.hook})",
        )
        ax.legend()
        return ax if ax is path_or_ax else save_figure(ax.figure, path_or_ax)


def firing_rates(
    sae,
    paired: "PairedCache | str | Path",
    hook: str,
    labels: tuple[str, str] | None = None,
    threshold: float = 0.0,
    max_positions: int | None = None,
    batch_size: int = 4096,
) -> FiringRates:
    """How often each feature fires (activation above ``threshold``) in two models' caches.

    Args:
        sae: an ``sae_lens.SAE``.
        paired: a paired cache (same token rows in both models) or its directory.
        hook: the hook the SAE reads.
        labels: the two models to compare, first the reference (e.g. ``("base", "sft")``);
            default: the paired cache's first two labels.
        threshold: a feature fires where its activation exceeds this.
        max_positions: stop after this many positions.
        batch_size: positions encoded at once, per model.

    Returns:
        A :class:`FiringRates`; ``.switched_off()`` lists the features training turned off.

    Raises:
        KeyError: a label the paired cache lacks.
        SAEError: the SAE does not fit the caches' activations.

    Example:
        >>> firing_rates(None, "/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: '/nonexistent' is not a paired cache (no pair.json)
    """
    paired = paired if isinstance(paired, PairedCache) else open_paired_cache(paired)
    labels = tuple(labels) if labels is not None else tuple(paired.labels[:2])
    if len(labels) != 2:
        raise ValueError(f"labels must name two models of the paired cache {paired.labels}, got {labels}")
    for lab in labels:
        check_sae_fits(sae, paired[lab], hook)
    counts = torch.zeros((2, int(sae.cfg.d_sae)), dtype=torch.long)
    seen = 0
    pair = PairedCache(paired.root, {lab: paired[lab] for lab in labels})
    for batch in pair.batches(hook, batch_size):
        take = (
            len(batch[labels[0]])
            if max_positions is None
            else min(len(batch[labels[0]]), max_positions - seen)
        )
        for i, lab in enumerate(labels):
            counts[i] += (encode(sae, batch[lab][:take]).cpu() > threshold).sum(0)
        seen += take
        if max_positions is not None and seen >= max_positions:
            break
    return FiringRates(hook, labels, counts.float() / max(seen, 1), seen)
