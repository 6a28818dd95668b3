"""interp reproduce on the tiny profile, end to end, and the report rendered from results.json."""

import json

import pytest

from experiments import EXPERIMENTS
from experiments.claims import Claim
from experiments.report import render_report
from experiments.reproduce import reproduce
from interp.cli import main


@pytest.fixture(scope="module")
def run(tiny_zoo, tmp_path_factory):
    import os

    out = tmp_path_factory.mktemp("reproduce")
    old = os.environ.get("INTERP_ZOO")
    os.environ["INTERP_ZOO"] = str(tiny_zoo)
    try:
        code = main(["reproduce", "--profile", "tiny", "--out", str(out), "-q"])
    finally:
        if old is None:
            os.environ.pop("INTERP_ZOO", None)
        else:
            os.environ["INTERP_ZOO"] = old
    return code, out


def test_every_experiment_runs_and_writes_its_json(run):
    code, out = run
    results = json.loads((out / "results.json").read_text())
    failed = {k: v.get("error") for k, v in results["experiments"].items() if v["status"] != "ok"}
    assert failed == {} and code == 0
    assert list(results["experiments"]) == list(EXPERIMENTS)
    for name, exp in results["experiments"].items():
        assert (out / "experiments" / f"{name}.json").is_file()
        assert exp["results"] and exp["claim"]["verdict"] in (
            "reproduced",
            "partly",
            "not reproduced",
            "not testable",
        )
        assert exp["claim"]["precondition"]  # every claim states what had to hold
        for fig in exp["figures"]:
            assert (out / fig).stat().st_size > 1000
        assert results["seconds"][name] >= 0


def test_report_cites_caches_and_lists_every_finding(run):
    _, out = run
    results = json.loads((out / "results.json").read_text())
    report = (out / "REPORT.md").read_text()
    assert "| precondition | verdict | why |" in report
    for exp in results["experiments"].values():
        c = exp["claim"]
        assert f"| {exp['finding']} | {c['title']} |" in report
        assert f"| {c['precondition']} | **{c['verdict']}** |" in report
        for cache in exp["caches"].values():
            assert cache["id"] in report
            assert (out / cache["dir"] / "manifest.json").is_file() or (out / cache["dir"]).is_dir()
    assert sorted(e["finding"] for e in results["experiments"].values()) == list(range(1, 10))


def test_rerun_reuses_zoo_and_caches(run, tiny_zoo, monkeypatch):
    _, out = run
    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    before = json.loads((out / "results.json").read_text())
    assert reproduce("tiny", out, progress=False, only=["e3_swapped_traces"]) == 0
    after = json.loads((out / "experiments" / "e3_swapped_traces.json").read_text())
    assert after["results"] == before["experiments"]["e3_swapped_traces"]["results"]


def test_failed_experiment_is_reported_and_the_run_goes_on(tiny_zoo, tmp_path, monkeypatch):
    import experiments.e8_backward as e8

    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))

    def boom(ctx):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(e8, "run", boom)
    code = reproduce("tiny", tmp_path, progress=False, only=["e8_backward", "e3_swapped_traces"])
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiments"]["e8_backward"]["status"] == "failed"
    assert results["experiments"]["e3_swapped_traces"]["status"] == "ok"
    report = (tmp_path / "REPORT.md").read_text()
    assert "planted failure" in report and "## Failed steps" in report


def test_report_renders_from_results_alone():
    claim = Claim(3, "T", "paper fig", "organism fig", "partly", "because", "x raised accuracy: held (n)")
    results = {
        "profile": "tiny",
        "zoo_dir": "z",
        "seconds": {"zoo": 1.0, "total": 2.0},
        "failures": {},
        "zoo": {"base": {"fact_recall": 0.5}},
        "experiments": {
            "e3_swapped_traces": {
                "finding": 3,
                "title": "T",
                "status": "ok",
                "seconds": 1.5,
                "figures": ["figures/x.png"],
                "caches": {
                    "c": {
                        "id": "sha256:abc",
                        "dir": "caches/c",
                        "n_rows": 3,
                        "model_fingerprint": "sha256:def",
                        "used_for": "fig",
                    }
                },
                "results": {"a": {"b": 0.25}},
                "claim": claim.to_dict(),
            }
        },
    }
    report = render_report(results)
    row = "| 3 | T | paper fig | organism fig | x raised accuracy: held (n) | **partly** | because |"
    assert row in report
    assert "sha256:abc" in report and "![e3_swapped_traces](figures/x.png)" in report
    assert "| `a.b` | 0.250 |" in report and "| base | 0.500 |" in report


def test_bad_profile_and_unknown_experiment(tmp_path):
    with pytest.raises(ValueError, match="e1_info_gain"):
        reproduce("tiny", tmp_path, only=["nope"])
