"""interp reproduce on the tiny profile, end to end; the report renders from results.json."""

import json

from interp.reproduce import CLAIMS, render_report, reproduce


def test_reproduce_tiny_end_to_end(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("INTERP_ZOO", raising=False)
    out = tmp_path / "run"
    assert reproduce(profile="tiny", out_dir=out, progress=False) == 0
    assert "INTERP_ZOO" not in os.environ  # the run's zoo setting does not leak out
    assert (out / "zoo" / "base" / "card.json").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["failures"] == {}
    assert set(results["zoo"]) >= {"base", "sft-answer", "rl-answer"}
    assert {c["verified"] for c in results["caches"].values()} == {True}
    report = (out / "REPORT.md").read_text()
    for cache in results["caches"].values():
        assert cache["id"] in report and (out / cache["dir"] / "manifest.json").is_file()
    # every claim is listed, and none is claimed as reproduced
    assert all(f"| {n} | {claim}" in report for n, claim, _ in CLAIMS)
    assert "reproduced" not in report.replace("No finding is claimed as reproduced", "")
    # a rerun reuses the zoo and the caches
    again = json.loads((out / "results.json").read_text())
    assert reproduce(profile="tiny", out_dir=out, progress=False) == 0
    rerun = json.loads((out / "results.json").read_text())
    assert {k: c["id"] for k, c in rerun["caches"].items()} == {
        k: c["id"] for k, c in again["caches"].items()
    }


def test_report_renders_from_results_and_names_failures():
    results = {
        "profile": "tiny", "zoo_dir": "z", "seconds": {"zoo": 1.0, "total": 2.0},
        "experiments": {n: {"status": "not run", "reason": "r"} for n, _, _ in CLAIMS},
        "failures": {"caches": "CacheError: boom"},
        "zoo": {"base": {"fact_recall": 0.5}},
    }
    report = render_report(results)
    assert "## Failed steps" in report and "CacheError: boom" in report
    assert "| base | 0.500 |" in report
