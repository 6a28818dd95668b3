"""A finding's verdict on the organism, as the claims table of REPORT.md shows it."""

from dataclasses import asdict, dataclass
from typing import Literal

Verdict = Literal["reproduced", "partly", "not reproduced", "not testable", "failed"]
VERDICTS: tuple[str, ...] = ("reproduced", "partly", "not reproduced", "not testable", "failed")


@dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    Args:
        finding: the finding's number in PAPERS.md.
        title: the finding in a few words.
        paper: the paper's headline figure.
        organism: what the organism showed, with the numbers and their 95% intervals.
        verdict: ``reproduced``, ``partly``, ``not reproduced``, ``not testable`` (a precondition
            failed: the organism cannot say) or ``failed`` (the experiment did not run).
        explanation: one sentence on why that verdict.
        precondition: what had to hold before the comparison means anything, whether it did,
            with the numbers (:func:`experiments.verdicts.describe`).

    Example:
        >>> Claim(1, "t", "p", "o", "not testable", "why", "x raised accuracy: failed").verdict
        'not testable'
    """

    finding: int
    title: str
    paper: str
    organism: str
    verdict: Verdict
    explanation: str
    precondition: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r}; expected one of {VERDICTS}")

    def to_dict(self) -> dict:
        return asdict(self)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rel_change(new: float, old: float) -> float:
    """(new - old) / |old|; NaN when old is 0."""
    return (new - old) / abs(old) if old else float("nan")
