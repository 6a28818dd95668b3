"""Shared verdict helpers: preconditions, intervals that must exclude zero, and the report's column."""

import pytest

from experiments.claims import VERDICTS
from experiments.report import render_report
from experiments.verdicts import (
    MIN_N,
    ClaimHead,
    Precondition,
    check_preconditions,
    combine,
    describe,
    fmt_interval,
    holds,
    interval_verdict,
    over_models,
    paired_interval,
    proportion_interval,
    raised,
)

HEAD = ClaimHead(9, "title", "paper")


def test_interval_verdict_needs_the_interval_beyond_zero_on_the_papers_side():
    below = {"estimate": -0.12, "low": -0.2, "high": -0.04}
    across = {"estimate": -0.05, "low": -0.1, "high": 0.01}
    assert interval_verdict(below, -1) == "reproduced"
    assert interval_verdict(below, +1) == "not reproduced"
    assert interval_verdict(across, -1) == "not reproduced"
    assert interval_verdict({"estimate": 0.0, "low": 0.0, "high": 0.0}, +1) == "not reproduced"
    with pytest.raises(ValueError, match="direction=0"):
        interval_verdict(below, 0)


def test_paired_interval_pairs_problems_and_drops_unmeasured_ones():
    iv = paired_interval([1, 1, None, 1, float("nan")], [0, 0, 1, 0, 1])
    assert iv["n"] == 3 and iv["estimate"] == 1.0 and iv["excludes_0"]
    assert paired_interval([None], [1]) is None
    with pytest.raises(ValueError, match="differ in length"):
        paired_interval([1, 0], [1])


def test_fmt_interval_reads_as_estimate_and_bounds():
    assert fmt_interval({"estimate": -0.12, "low": -0.2, "high": -0.04}) == "-0.12 [-0.20, -0.04]"
    assert fmt_interval(None) == "n/a"


def test_check_preconditions_names_the_first_that_failed_and_lists_all():
    ok = Precondition("tuned raised accuracy", True, "0.10 [0.05, 0.15]")
    bad = Precondition("base solves OOD", False, "0 of 90")
    worse = Precondition("later", False, "x")
    assert check_preconditions(HEAD, "org", ok) is None
    c = check_preconditions(HEAD, "org", ok, bad, worse)
    assert c.verdict == "not testable" and "not testable" in VERDICTS
    assert c.explanation == "not testable: base solves OOD failed (0 of 90)"
    assert c.precondition == describe([ok, bad, worse])
    assert "tuned raised accuracy: held" in c.precondition and "base solves OOD: failed" in c.precondition


def test_holds_needs_enough_problems_and_the_right_side():
    up = paired_interval([1] * MIN_N, [0] * MIN_N)
    few = paired_interval([1] * (MIN_N - 1), [0] * (MIN_N - 1))
    assert holds("x", up, +1).held and not holds("x", up, -1).held
    assert not holds("x", few, +1).held and f"fewer than {MIN_N}" in holds("x", few, +1).detail
    assert holds("x", None, +1).detail == "not measured"
    # a Wilson interval of a proportion: above zero once one of enough problems succeeds
    assert holds("solves", proportion_interval([1] + [0] * 39), +1).held
    assert not holds("solves", proportion_interval([0] * 40), +1).held


def test_raised_compares_with_the_parent_in_its_own_format():
    same = {"parent": "base", "format": "answer", "correct": [1, 0] * 20, "parent_correct": [1, 0] * 20}
    better = {**same, "correct": [1] * 40}
    assert not raised("sft-answer", same).held
    p = raised("sft-answer", better)
    assert p.held and p.name == "sft-answer raised accuracy over base (answer format)"
    assert raised("sft-answer", {**same, "parent_correct": None}).detail == "not measured"


def test_combine_and_over_models():
    assert combine(["reproduced", "reproduced"]) == "reproduced"
    assert combine(["reproduced", "not reproduced"]) == "partly"
    assert combine(["partly", "not reproduced"]) == "partly"
    assert combine(["not reproduced", "not testable"]) == "not reproduced"
    assert combine(["not testable"]) == "not testable"
    pre = [Precondition("a raised accuracy", False, "n/a"), Precondition("b raised accuracy", True, "ok")]
    c = over_models(HEAD, "o", {"a": "not testable", "b": "reproduced"}, pre, "it fell", "nothing fell")
    assert (
        c.verdict == "partly" and "it fell for b" in c.explanation and "not testable for a" in c.explanation
    )
    c = over_models(HEAD, "o", {"a": "not testable"}, pre[:1], "it fell", "nothing fell")
    assert c.verdict == "not testable" and "a raised accuracy failed" in c.explanation


def test_report_renders_the_precondition_column():
    claim = HEAD.claim(
        "org [1, 2]",
        "not testable",
        "not testable: base solves OOD failed (0 of 90)",
        [Precondition("base solves OOD", False, "0 of 90")],
    )
    results = {
        "profile": "tiny",
        "zoo_dir": "z",
        "seconds": {"zoo": 1.0, "total": 2.0},
        "failures": {},
        "experiments": {
            "e9_cot_length": {
                "finding": 9,
                "title": "title",
                "status": "ok",
                "seconds": 1.0,
                "results": {"per_problem": {"x": list(range(40))}, "n": 3},
                "claim": claim.to_dict(),
            },
            "e8_backward": {"finding": 8, "title": "b", "status": "failed", "error": "boom"},
        },
    }
    report = render_report(results)
    assert (
        "| # | finding (PAPERS.md) | paper | organism (95% intervals) | precondition | verdict | why |"
        in report
    )
    assert (
        "| 9 | title | paper | org [1, 2] | base solves OOD: failed (0 of 90) | **not testable** | "
        "not testable: base solves OOD failed (0 of 90) |"
    ) in report
    assert "| 8 | b | - | - | - | **failed** | boom |" in report
    # per-problem lists stay in results.json; the numbers table shows their length
    assert "| `per_problem.x` | 40 values (in results.json) |" in report


def test_report_prints_an_interval_as_one_row_not_seven():
    from experiments.report import _flat, _fmt

    iv = {
        "estimate": 0.5,
        "low": 0.25,
        "high": 0.75,
        "level": 0.95,
        "n": 40,
        "method": "wilson",
        "excludes_0": True,
    }
    rows = _flat({"curve": {"sft@30": {"accuracy": 0.5, "accuracy_interval": iv}}})
    assert [k for k, _ in rows] == ["curve.sft@30.accuracy", "curve.sft@30.accuracy_interval"]
    assert _fmt(rows[1][1]) == "0.500 [0.250, 0.750] (n=40)"


def test_dose_curves_are_summarised_in_the_numbers_table():
    from experiments.report import _flat

    rows = _flat({"dose_curves": {"sft-answer": {"points": {"a": 1}}, "sft-clean": {}}, "x": 1.0})
    assert rows == [("dose_curves", "2 fine-tunes' dose curves (in results.json and the figure)"), ("x", 1.0)]
