"""The damage report: the evidence per layer and component, the verdict, table, JSON and figure."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.results import format_table, save_figure, save_json
from probes.damage.config import COMPONENTS, EVIDENCE


@dataclass(frozen=True)
class DamageRow:
    """The evidence at one component: ``layer`` is ``None`` for ``embed`` and ``final``."""

    component: str
    layer: int | None
    site: str
    restoration: float | None = None
    damage: float | None = None
    weight_change: float | None = None
    cka: float | None = None
    probe_base: float | None = None
    probe_tuned: float | None = None

    @property
    def probe_drop(self) -> float | None:
        return None if self.probe_base is None else self.probe_base - self.probe_tuned


COLUMNS = ("site", "restoration", "damage", "weight_change", "cka", "probe_base", "probe_tuned")


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _top(values: Sequence[float | None]) -> int | None:
    """The layer with the largest positive value (the first of ties); ``None`` if none is positive."""
    pairs = [(v, -i) for i, v in enumerate(values) if v is not None and v > 0]
    return -max(pairs)[1] if pairs else None


@dataclass(frozen=True)
class DamageReport:
    """Where the damage lies: every evidence per layer and component, and a verdict.

    ``layer_evidence[e][L]`` ranks layers (higher: more damage): ``restoration`` and
    ``weight_change`` are the larger of the attention's and MLP's; ``cka_drop`` is how much
    residual-stream CKA falls across block L; ``probe_drop`` how much the probes' accuracy drop
    grows across block L.
    """

    base: str
    tuned: str
    scorer: str
    score_base: float
    score_tuned: float
    rows: tuple[DamageRow, ...]
    layer_evidence: dict[str, tuple[float | None, ...]]
    damaged_layers: tuple[int, ...]
    verdict: str
    meta: dict = field(default_factory=dict)

    @property
    def layer_evidence_lead(self) -> str:
        """The evidence the verdict ranks by: ``restoration``, or ``weight_change`` without a score gap."""
        return (
            "restoration"
            if any(v is not None for v in self.layer_evidence["restoration"])
            else "weight_change"
        )

    def top_layer(self, evidence: str) -> int | None:
        """The layer ranked first by one evidence (``None`` where it was not measured)."""
        if evidence not in EVIDENCE:
            raise ValueError(f"evidence {evidence!r}; expected one of {EVIDENCE}")
        return _top(self.layer_evidence[evidence])

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "tuned": self.tuned,
            "scorer": self.scorer,
            "score_base": self.score_base,
            "score_tuned": self.score_tuned,
            "rows": [
                {
                    **{k: _finite(v) if isinstance(v, float) else v for k, v in asdict(r).items()},
                    "probe_drop": _finite(r.probe_drop),
                }
                for r in self.rows
            ],
            "layer_evidence": {k: [_finite(v) for v in vs] for k, vs in self.layer_evidence.items()},
            "damaged_layers": list(self.damaged_layers),
            "verdict": self.verdict,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically); returns the path."""
        return save_json(self, path)

    def __str__(self) -> str:
        head = f"{self.scorer}: base {self.score_base:.3f}, tuned {self.score_tuned:.3f}"
        table = format_table(COLUMNS, [[getattr(r, c) for c in COLUMNS] for r in self.rows])
        return f"{head}\n{table}\n{self.verdict}"

    def plot(self, path_or_ax: "str | Path | Iterable[Any]"):
        """One panel per evidence (patching, weight change, CKA, probes) against the layer.

        Args:
            path_or_ax: a PNG path (the figure is saved and closed; the path is returned) or four
                matplotlib axes to draw into (returned).
        """
        import matplotlib.pyplot as plt

        if isinstance(path_or_ax, str | Path):
            fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
        else:
            axes, fig = list(path_or_ax), None
        titles = (
            "patching (share of lost score)",
            "weight change ||dW|| / ||W||",
            "CKA base vs tuned",
            "probe accuracy (base probes)",
        )
        series = (
            [("restoration", "restore"), ("damage", "damage")],
            [("weight_change", "")],
            [("cka", "")],
            [("probe_base", "on base"), ("probe_tuned", "on tuned")],
        )
        for ax, title, cols in zip(axes, titles, series, strict=True):
            for col, label in cols:
                for comp, marker in zip(COMPONENTS, "os^", strict=True):
                    pts = [(r.layer, getattr(r, col)) for r in self.rows if r.component == comp]
                    pts = [(x, y) for x, y in pts if y is not None and math.isfinite(y)]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), marker=marker, label=f"{comp} {label}".strip())
            if not ax.lines:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("layer")
            ax.set_xticks(range(len(self.layer_evidence["restoration"])))
            for layer in self.damaged_layers:
                ax.axvspan(layer - 0.4, layer + 0.4, color="red", alpha=0.08)
            if ax.lines:
                ax.legend(fontsize=7)
        if fig is None:
            return axes
        named = f"layers {list(self.damaged_layers)}" if self.damaged_layers else "no single layer"
        lead = (
            "damage in"
            if self.layer_evidence_lead == "restoration"
            else "no score lost; weights changed most in"
        )
        fig.suptitle(f"{self.tuned} vs {self.base}: {lead} {named}", fontsize=10)
        return save_figure(fig, path_or_ax)
