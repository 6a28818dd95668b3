"""Epistemic markers per response (PAPERS.md §4): case-insensitive whole-word counts."""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interp.results import format_table, save_figure, save_json

PAPER_MARKERS = (
    "wait",
    "hmm",
    "perhaps",
    "maybe",
    "actually",
    "alternatively",
    "seems",
    "might",
    "likely",
    "check",
)
ORGANISM_MARKERS = ("WAIT", "CHECK", "OK", "BAD", "BACK")


@dataclass(frozen=True)
class MarkerResult:
    """Marker counts of each response, per marker word.

    Attributes:
        words: the marker words counted (lower case).
        counts: per response, the count of each word (in the order of ``words``).
        meta: extra information (e.g. the model).
    """

    words: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    meta: dict = field(default_factory=dict)

    @property
    def per_response(self) -> tuple[int, ...]:
        """Total markers of each response."""
        return tuple(sum(c) for c in self.counts)

    @property
    def mean(self) -> float:
        """Mean markers per response (NaN for no responses)."""
        return sum(self.per_response) / len(self.counts) if self.counts else float("nan")

    @property
    def per_word(self) -> dict[str, int]:
        return {w: sum(c[i] for c in self.counts) for i, w in enumerate(self.words)}

    def to_dict(self) -> dict:
        return {
            "words": list(self.words),
            "mean": self.mean,
            "per_response": list(self.per_response),
            "per_word": self.per_word,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        n = max(len(self.counts), 1)
        rows = [[w, t, t / n] for w, t in self.per_word.items()] + [
            ["all", sum(self.per_response), self.mean]
        ]
        return format_table(["marker", "total", "per response"], rows)

    def plot(self, path_or_ax=None):
        """Markers per response, by word."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3))
        n = max(len(self.counts), 1)
        ax.bar(list(self.words), [t / n for t in self.per_word.values()])
        ax.set_ylabel("per response")
        ax.set_title(f"epistemic markers: {self.mean:.2f} per response")
        if path_or_ax is not None:
            return save_figure(fig, path_or_ax)
        return fig


def count_markers(
    responses: Sequence[str | Sequence[str]], words: Sequence[str] = PAPER_MARKERS
) -> MarkerResult:
    """Count each marker word in each response, case-insensitively, as whole words only.

    Args:
        responses: texts, or lists of words (joined with spaces).
        words: the marker words (default: the paper's ten; :data:`ORGANISM_MARKERS` for the
            organism). Each may hold several words (``"let me check"``).

    Returns:
        :class:`MarkerResult`.

    Raises:
        ValueError: ``words`` is empty or has a blank or repeated (case-insensitively) entry.

    Example:
        >>> r = count_markers(["Wait, maybe not. WAIT!", "waiting is not a marker"])
        >>> r.per_response, r.mean
        ((3, 0), 1.5)
    """
    low = [w.strip().lower() for w in words]
    if not low or any(not w for w in low) or len(set(low)) != len(low):
        raise ValueError(f"words={list(words)!r}; expected distinct, non-blank marker words")
    patterns = [
        re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, w.split())) + r"(?!\w)", re.I) for w in low
    ]
    counts = []
    for r in responses:
        text = r if isinstance(r, str) else " ".join(r)
        counts.append(tuple(len(p.findall(text)) for p in patterns))
    return MarkerResult(tuple(low), tuple(counts))
