"""Stage 5, finding (b) (Kim et al. 2026): do accuracy tunes stop verbalising their self-checks?

Self-check phrases per greedy response to the same test problems, parent against each tune, as
a paired bootstrap difference; a tune "suppressed" them when the interval lies below 0.
"""

from typing import Any

from experiments.real.common import paired, verdict
from experiments.real.tunes import State


def stage_verbalisation(state: State, preconditions: dict[str, Any]) -> dict[str, Any]:
    """Per tune: self-checks per response and the paired difference from the parent."""
    parent = state.evals["parent"]
    rows = {}
    for label in state.tunes:
        ev = state.evals[label]
        diff = paired(ev["self_checks"], parent["self_checks"], state.profile.resamples)
        rows[label] = {
            "self_checks_per_response": ev["self_checks_per_response"],
            "diff": diff,
            "suppressed": diff["excludes_0"] and diff["estimate"] < 0,
            "raised_accuracy": preconditions[label]["raised_accuracy"],
        }
    out = {"parent_self_checks_per_response": parent["self_checks_per_response"], "tunes": rows}
    out["claim"] = _claim(out)
    return out


def _claim(r: dict[str, Any]) -> dict[str, Any]:
    base = r["parent_self_checks_per_response"]
    rows = r["tunes"]
    numbers = "; ".join(
        f"{t} {row['self_checks_per_response']:.2f} (diff {row['diff']['estimate']:+.2f} "
        f"[{row['diff']['low']:+.2f}, {row['diff']['high']:+.2f}])"
        for t, row in rows.items()
    )
    if base == 0:
        return verdict("not testable", "the parent says no self-check phrase, so none can disappear")
    testable = {t: row for t, row in rows.items() if row["raised_accuracy"]}
    if not testable:
        return verdict(
            "not testable",
            f"no tune raised accuracy over the parent (precondition); parent "
            f"{base:.2f} per response, {numbers}",
        )
    gone = [t for t, row in testable.items() if row["suppressed"]]
    if gone:
        return verdict(
            "reproduced",
            f"accuracy tunes {', '.join(gone)} say fewer self-check phrases than "
            f"the parent ({base:.2f} per response): {numbers}",
            suppressed=gone,
        )
    return verdict(
        "not reproduced",
        f"no accuracy tune says fewer self-check phrases with an interval "
        f"below 0 (parent {base:.2f}): {numbers}",
        suppressed=[],
    )
