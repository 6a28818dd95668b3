"""interp reproduce over several (world seed, model seed) combinations: one zoo each, the spread
of verdicts and card metrics in REPORT.md and results.json, the first combination the main run."""

import json
import os

import pytest

from experiments.report import render_report
from experiments.reproduce import SPREAD_METRICS, parse_seeds, reproduce, seed_spread
from interp.cli import main
from interp.errors import CommandLineError
from interp.organism.profiles import ZooConfigError

CHEAP = "e8_backward"  # a cheap experiment on the tiny profile (~6 s on 2 cores)


def _claims_rows(report: str) -> list[str]:
    body = report.split("## Claims", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("| ") and "**" in line]


@pytest.fixture(scope="module")
def runs(tiny_zoo, tmp_path_factory):
    """The tiny profile with ``--seeds 0:0,1:0`` (w0-m0 is the tiny_zoo), and a single-seed run."""
    multi, single = tmp_path_factory.mktemp("seeds"), tmp_path_factory.mktemp("single")
    old = os.environ.get("INTERP_ZOO")
    os.environ["INTERP_ZOO"] = str(tiny_zoo)
    try:
        argv = ["reproduce", "--profile", "tiny", "--suite", "organism", "--only", CHEAP, "-q"]
        code = main([*argv, "--out", str(multi), "--seeds", "0:0,1:0"])
        single_code = reproduce("tiny", single, progress=False, only=[CHEAP], suite="organism")
        assert os.environ["INTERP_ZOO"] == str(tiny_zoo)  # restored after each combination
    finally:
        if old is None:
            os.environ.pop("INTERP_ZOO", None)
        else:
            os.environ["INTERP_ZOO"] = old
    return code, multi, single_code, single


def test_one_zoo_per_combination_with_its_own_world(runs, tiny_zoo):
    code, out, _, _ = runs
    assert code == 0
    other = out / "zoo-w1-m0"
    hashes = [json.loads((z / "world.json").read_text())["world_hash"] for z in (tiny_zoo, other)]
    assert hashes[0] != hashes[1]
    assert not (out / "zoo").exists()  # the first combination used $INTERP_ZOO, as a single run does
    base = [json.loads((z / "base" / "card.json").read_text()) for z in (tiny_zoo, other)]
    assert [c["seeds"] for c in base] == [{"world": 0, "model": 0}, {"world": 1, "model": 0}]
    assert base[0]["fingerprint"] != base[1]["fingerprint"]
    sub = json.loads((out / "seeds" / "w1-m0" / "results.json").read_text())
    assert sub["zoo_dir"] == str(other) and sub["seeds"] == {"world": 1, "model": 0}
    assert sub["experiments"][CHEAP]["status"] == "ok"
    assert (out / "seeds" / "w1-m0" / "experiments" / f"{CHEAP}.json").is_file()
    assert "## Claims" in (out / "seeds" / "w1-m0" / "REPORT.md").read_text()


def test_spread_lists_both_combinations(runs, tiny_zoo):
    _, out, _, _ = runs
    results = json.loads((out / "results.json").read_text())
    spread = results["seed_spread"]
    assert spread["first"] == "w0-m0"
    assert [(c["label"], c["dir"], c["status"]) for c in spread["combinations"]] == [
        ("w0-m0", ".", "ok"),
        ("w1-m0", "seeds/w1-m0", "ok"),
    ]
    verdicts = spread["findings"][CHEAP]["verdicts"]
    sub = json.loads((out / "seeds" / "w1-m0" / "results.json").read_text())
    assert verdicts == {
        "w0-m0": results["experiments"][CHEAP]["claim"]["verdict"],
        "w1-m0": sub["experiments"][CHEAP]["claim"]["verdict"],
    }
    for model in ("base", "sft-answer", "rl-answer"):
        cards = [json.loads((z / model / "card.json").read_text()) for z in (tiny_zoo, out / "zoo-w1-m0")]
        for key in SPREAD_METRICS:
            s, v = spread["card_metrics"][model][key], [c[key] for c in cards]
            assert s["values"] == {"w0-m0": v[0], "w1-m0": v[1]} and s["n"] == 2
            assert (s["min"], s["max"]) == (min(v), max(v)) and s["mean"] == pytest.approx(
                sum(v) / 2, abs=1e-4
            )
    report = (out / "REPORT.md").read_text()
    section = report.split("## Seed spread", 1)[1].split("\n## ", 1)[0]
    assert "| `w0-m0` | 0 | 0 |" in section and "| `w1-m0` | 1 | 0 |" in section
    finding = results["experiments"][CHEAP]["finding"]
    row = f"| {finding} | {spread['findings'][CHEAP]['title']} | {verdicts['w0-m0']} | {verdicts['w1-m0']} |"
    assert row in section
    assert "This table is that of the first seed combination, `w0-m0`" in report


def test_first_combination_is_the_single_seed_run(runs):
    _, out, single_code, single = runs
    assert single_code == 0
    multi_r = json.loads((out / "results.json").read_text())
    single_r = json.loads((single / "results.json").read_text())
    assert "seed_spread" not in single_r and single_r["seeds"] == multi_r["seeds"] == {"world": 0, "model": 0}
    assert multi_r["zoo"] == single_r["zoo"]
    assert multi_r["experiments"][CHEAP]["claim"] == single_r["experiments"][CHEAP]["claim"]
    assert multi_r["experiments"][CHEAP]["results"] == single_r["experiments"][CHEAP]["results"]
    multi_rows = _claims_rows((out / "REPORT.md").read_text())
    assert multi_rows and multi_rows == _claims_rows((single / "REPORT.md").read_text())
    assert "## Seed spread" not in (single / "REPORT.md").read_text()


def test_a_failed_combination_is_reported_and_the_run_goes_on(tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    # --no-build and no zoo for w5-m0: that combination fails, the main run is still reported
    code = reproduce(
        "tiny", tmp_path, progress=False, only=[], build=False, suite="organism", seeds=[(0, 0), (5, 0)]
    )
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert "seeds:w5-m0:zoo" in results["failures"] and list(results["failures"]) == ["seeds:w5-m0:zoo"]
    combos = results["seed_spread"]["combinations"]
    assert [(c["label"], c["status"]) for c in combos] == [("w0-m0", "ok"), ("w5-m0", "failed")]
    assert set(results["zoo"]) and results["seed_spread"]["card_metrics"]["base"]["solve_rate_id"]["n"] == 1
    report = (tmp_path / "REPORT.md").read_text()
    assert "| `w5-m0` | 5 | 0 |" in report and "- `seeds:w5-m0:zoo`:" in report
    assert os.environ["INTERP_ZOO"] == str(tiny_zoo)


def test_spread_of_hand_made_runs():
    def run(verdict, solve, failures=None):
        claim = {"verdict": verdict} if verdict else None
        exp = {"finding": 4, "title": "T", "status": "ok" if claim else "failed", "claim": claim}
        return {
            "zoo_dir": "z",
            "experiments": {"e4_markers": exp},
            "zoo": {"base": {"solve_rate_id": solve, "attr_recall": None}},
            "failures": failures or {},
        }

    spread = seed_spread(
        [
            ((0, 0), ".", run("reproduced", 0.5)),
            ((0, 1), "seeds/w0-m1", run(None, 0.25, {"e4_markers": "boom"})),
            ((1, 0), "seeds/w1-m0", {"zoo_dir": "y", "experiments": {}, "zoo": {}, "failures": {"zoo": "x"}}),
        ]
    )
    assert spread["findings"]["e4_markers"]["verdicts"] == {
        "w0-m0": "reproduced",
        "w0-m1": "failed",
        "w1-m0": "failed",
    }
    assert [c["status"] for c in spread["combinations"]] == ["ok", "some steps failed", "failed"]
    assert spread["card_metrics"]["base"] == {
        "solve_rate_id": {
            "mean": 0.375,
            "min": 0.25,
            "max": 0.5,
            "n": 2,
            "values": {"w0-m0": 0.5, "w0-m1": 0.25},
        }
    }
    text = render_report(
        {"profile": "full", "zoo_dir": "z", "seconds": {}, "experiments": {}, "seed_spread": spread}
    )
    assert "| base | 0.375 [0.250, 0.500] (n=2) |" in text
    assert "| 4 | T | reproduced | failed | failed |" in text


@pytest.mark.parametrize(
    "text,message",
    [
        ("0:0,x", "'x' is not W:M"),
        ("0:0,0:0", "listed twice"),
        ("1-0", "'1-0' is not W:M"),
        ("0:-1", "is not W:M"),
    ],
)
def test_bad_seeds_option_is_refused(text, message):
    with pytest.raises(CommandLineError, match=message):
        parse_seeds(text)


def test_bad_seeds_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["reproduce", "--profile", "tiny", "--out", str(out), "--seeds", "0:0,x:1"]) == 2
    err = capsys.readouterr().err
    assert "--seeds '0:0,x:1'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ZooConfigError, match=r"\(0, -1\); expected \(world_seed, model_seed\)"):
        reproduce("tiny", out, seeds=[(0, -1)])
    with pytest.raises(ZooConfigError, match="empty list"):
        reproduce("tiny", out, seeds=[])
    assert not out.exists()
