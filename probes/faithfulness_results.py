"""Results of the chain-of-thought faithfulness tests (:mod:`probes.faithfulness`).

One frozen dataclass per test (:class:`EarlyAnswering`, :class:`AddingMistakes`,
:class:`FillerTokens`, :class:`Paraphrase`) and :class:`FaithfulnessResult` holding all four;
each saves itself as JSON and prints itself as a table.
"""

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.results import format_table, save_figure, save_json


class _Result:
    """Shared outputs of the result dataclasses: ``to_dict``, ``save`` (JSON) and a table."""

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; returns the path."""
        return save_json(self, path)

    def rows(self) -> list[list]:
        return []

    def __str__(self) -> str:
        return format_table(["test", "metric", "value", "n"], self.rows())


@dataclass(frozen=True)
class EarlyAnswering(_Result):
    """same(f) = P[answer(f) == answer(1)] on each fraction, its AOC, and accuracy per fraction."""

    fractions: tuple[float, ...]
    same: tuple[float, ...]
    accuracy: tuple[float, ...]
    aoc: float
    n_used: int
    n_problems: int

    def rows(self) -> list[list]:
        out = [["early answering", "AOC", self.aoc, self.n_used]]
        out += [
            ["early answering", f"same(f={f:g})", s, self.n_used]
            for f, s in zip(self.fractions, self.same, strict=True)
        ]
        return out


@dataclass(frozen=True)
class AddingMistakes(_Result):
    """P[answer changes] after one corrupted step and a free continuation; accuracy after it."""

    change_rate: float
    accuracy: float
    n_used: int
    n_problems: int

    def rows(self) -> list[list]:
        return [
            ["adding mistakes", "P[answer changes]", self.change_rate, self.n_used],
            ["adding mistakes", "accuracy", self.accuracy, self.n_used],
        ]


@dataclass(frozen=True)
class FillerTokens(_Result):
    """Accuracy with filler in place of the chain of thought, without one, and with the real one."""

    accuracy_no_cot: float
    accuracy_filler: float
    accuracy_cot: float
    gain: float
    filler: str
    mean_filler_tokens: float
    n_problems: int

    def rows(self) -> list[list]:
        return [
            ["filler", "accuracy, no CoT", self.accuracy_no_cot, self.n_problems],
            ["filler", f"accuracy, filler {self.filler!r}", self.accuracy_filler, self.n_problems],
            ["filler", "accuracy, CoT", self.accuracy_cot, self.n_problems],
            ["filler", "gain over no CoT", self.gain, self.n_problems],
        ]


@dataclass(frozen=True)
class Paraphrase(_Result):
    """Accuracy with a paraphrased chain of thought vs the original, and P[same answer]."""

    accuracy_original: float
    accuracy_paraphrased: float
    same_answer: float
    n_used: int
    n_problems: int

    def rows(self) -> list[list]:
        return [
            ["paraphrase", "accuracy, original", self.accuracy_original, self.n_used],
            ["paraphrase", "accuracy, paraphrased", self.accuracy_paraphrased, self.n_used],
            ["paraphrase", "P[same answer]", self.same_answer, self.n_used],
        ]


@dataclass(frozen=True)
class FaithfulnessResult(_Result):
    """The four tests (``None`` where not run or not applicable) and where they came from."""

    early: EarlyAnswering | None
    mistakes: AddingMistakes | None
    filler: FillerTokens | None
    paraphrase: Paraphrase | None
    meta: dict = field(default_factory=dict)

    def rows(self) -> list[list]:
        return [
            r
            for part in (self.early, self.mistakes, self.filler, self.paraphrase)
            if part
            for r in part.rows()
        ]

    def plot(self, path_or_ax: Any = None) -> Any:
        """The same(f) curve and the tests' bars.

        Args:
            path_or_ax: a path (a two-panel PNG is written there), a matplotlib axes (the
                curve only is drawn on it), or ``None`` (a new two-panel figure).

        Returns:
            The written path, the axes, or the new figure.
        """
        import matplotlib.pyplot as plt

        if path_or_ax is not None and not isinstance(path_or_ax, str | Path):
            self._plot_curve(path_or_ax)
            return path_or_ax
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
        self._plot_curve(left)
        self._plot_bars(right)
        fig.tight_layout()
        return fig if path_or_ax is None else save_figure(fig, path_or_ax)

    def _plot_curve(self, ax: Any) -> None:
        if self.early is None:
            ax.set_title("early answering not run")
            return
        ax.plot(self.early.fractions, self.early.same, marker="o", label="same(f)")
        ax.fill_between(
            self.early.fractions, self.early.same, 1.0, alpha=0.2, label=f"AOC {self.early.aoc:.3f}"
        )
        if not all(math.isnan(a) for a in self.early.accuracy):
            ax.plot(self.early.fractions, self.early.accuracy, marker="x", ls="--", label="accuracy(f)")
        ax.set(xlabel="fraction of CoT steps kept", ylabel="P", ylim=(-0.02, 1.02), title="early answering")
        ax.legend(loc="best")

    def _plot_bars(self, ax: Any) -> None:
        bars: list[tuple[str, float]] = []
        if self.filler:
            bars += [("no CoT", self.filler.accuracy_no_cot), ("filler", self.filler.accuracy_filler)]
            bars += [("CoT", self.filler.accuracy_cot)]
        if self.paraphrase:
            bars += [("paraphrased", self.paraphrase.accuracy_paraphrased)]
        if self.mistakes:
            bars += [("mistake: P[changed]", self.mistakes.change_rate)]
        names = [b[0] for b in bars]
        ax.bar(range(len(bars)), [0.0 if math.isnan(v) else v for _, v in bars], color="tab:gray")
        ax.set_xticks(range(len(bars)), names, rotation=30, ha="right")
        ax.set(ylim=(0, 1.02), ylabel="accuracy / probability", title="filler, paraphrase, mistakes")
