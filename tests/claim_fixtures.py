"""Hand-made pieces of experiment results for the claim tests (tests/experiments/test_claims_*.py)."""

N = 40
HALF = [1, 0] * (N // 2)


def vs_parent(raised: bool, parent: str = "base", fmt: str = "cot") -> dict:
    """A parent comparison (verdicts.parent_comparison's shape) over N problems: the tune answers
    every problem when it ``raised`` accuracy, else the same half as its parent."""
    return {"parent": parent, "format": fmt, "correct": [1] * N if raised else HALF, "parent_correct": HALF}
