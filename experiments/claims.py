"""A finding's verdict on the organism, as the claims table of REPORT.md shows it."""

from dataclasses import asdict, dataclass
from typing import Literal

Verdict = Literal["reproduced", "partly", "not reproduced", "failed"]
VERDICTS: tuple[str, ...] = ("reproduced", "partly", "not reproduced", "failed")


@dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    Args:
        finding: the finding's number in PAPERS.md.
        title: the finding in a few words.
        paper: the paper's headline figure.
        organism: what the organism showed, with the numbers.
        verdict: ``reproduced``, ``partly``, ``not reproduced`` or ``failed``.
        explanation: one sentence on why that verdict.
    """

    finding: int
    title: str
    paper: str
    organism: str
    verdict: Verdict
    explanation: str

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
