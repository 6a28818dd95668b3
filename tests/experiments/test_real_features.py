"""Stage (b)-features of the real-model suite: pure helpers against hand-computed oracles, the
verdict logic, and the whole stage on tiny chat Llamas built here (planted parent answers)."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from real_llamas import CHECKED, chat_llamas


@pytest.fixture(scope="module")
def llamas(make_chat_tokenizer, make_chat_llama) -> dict[str, str]:
    """Three tiny chat Llamas sharing one BPE (base, parent, tune): ``label -> hf:DIR``."""
    return chat_llamas(make_chat_tokenizer, make_chat_llama, ("base", "parent", "tune"), "feat")


@pytest.fixture(scope="module")
def _state(llamas, tmp_path_factory):
    """A state as stages 1-3 leave it, with the parent's answers planted (two phrases each)."""
    from experiments.real import PROFILES
    from experiments.real.tunes import State
    from interp.tasks.arithmetic import arithmetic_task

    st = State(llamas["base"], PROFILES["tiny"], tmp_path_factory.mktemp("features"), progress=False)
    st.problems = arithmetic_task(n=4, seed=0, splits=("test",))
    st.parent = llamas["parent"]
    # sft-answer@1 is the parent itself: its features cannot move
    st.tunes = {"sft-answer@1": llamas["parent"], "sft-answer@2": llamas["tune"]}
    st.strongest = "sft-answer@2"
    n = len(st.problems)
    st.evals = {
        label: {"responses": [CHECKED] * n, "correct": [1] * n, "self_checks": [2] * n}
        for label in ("base", "parent", *st.tunes)
    }
    for ev in st.evals.values():
        ev["self_checks_per_response"] = 2.0
    return st


@pytest.fixture
def state(_state):
    return copy.deepcopy(_state)


RAISED = {"sft-answer@1": {"raised_accuracy": True}, "sft-answer@2": {"raised_accuracy": True}}


@pytest.fixture(scope="module")
def measured(_state):
    from experiments.real.features import stage_features

    return stage_features(copy.deepcopy(_state), RAISED)


def test_position_masks_mark_the_token_before_each_phrase_and_the_rest_of_the_response():
    from experiments.real.features import position_masks

    # row 0: prompt of 3 tokens (response starts predicting at 2), phrase after position 4;
    # row 1: prompt of 2 tokens, no phrase
    rows = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1])
    pos = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2])
    before, other = position_masks(rows, pos, [[4], []], [2, 1])
    assert before.tolist() == [False, False, False, False, True, False, False, False, False]
    assert other.tolist() == [False, False, True, True, False, True, False, True, True]


def test_select_features_takes_the_largest_positive_excess():
    from experiments.real.features import select_features

    before = [0.5, 2.0, 0.1, 1.0, 0.0]
    other = [0.5, 0.5, 0.0, 0.2, 0.3]  # excess 0, 1.5, 0.1, 0.8, -0.3
    assert select_features(before, other, 2) == [1, 3]
    assert select_features(before, other, 5) == [1, 3, 2]  # never a feature with excess <= 0
    assert select_features([0.0, 0.0], [0.1, 0.0], 2) == []


def test_matched_control_draws_live_unchosen_features_nearest_in_frequency():
    from experiments.real.features import matched_control

    freq = [0.1, 0.5, 0.11, 0.0, 0.52, 0.9, 0.09]
    # pool 1: the nearest live, unchosen, not yet drawn feature; 3 is dead and never drawn
    assert matched_control(freq, [0, 1], pool=1) == [2, 4]
    # pool 2 for feature 0: {2 (0.01 away), 6 (0.01 away)}; ties broken by index, then a seeded draw
    draws = {tuple(matched_control(freq, [0], pool=2, seed=s)) for s in range(20)}
    assert draws == {(2,), (6,)}
    assert matched_control(freq, [0], pool=2, seed=3) == matched_control(freq, [0], pool=2, seed=3)
    # fewer live features than chosen ones: the control is shorter, never a chosen or dead one
    assert matched_control([0.5, 0.4, 0.0], [0, 1], pool=5) == []
    assert matched_control([0.5, 0.4, 0.3], [0, 1], pool=5) == [2]


def test_feature_sizes_refuse_bad_values_and_unknown_profiles():
    from experiments.real.features import FeatureSizes, feature_sizes

    with pytest.raises(ValueError, match=r"top_features=0; expected an integer >= 1"):
        FeatureSizes("x", 0, 4, 8, 20, 64, 1e-3, 2, 3, 2)
    with pytest.raises(ValueError, match=r"lr=0.0; expected > 0"):
        FeatureSizes("x", 4, 4, 8, 20, 64, 0.0, 2, 3, 2)
    with pytest.raises(ValueError, match=r"profile='huge'; expected one of \['full', 'quick', 'tiny'\]"):
        feature_sizes("huge")


def _iv(estimate: float, low: float, high: float) -> dict:
    return {"estimate": estimate, "low": low, "high": high, "excludes_0": low > 0 or high < 0}


def _result(diff, control, beyond, raised=True, n_before=40) -> dict:
    return {
        "n_before_positions": n_before,
        "min_positions": 20,
        "parent_self_checks_per_response": 2.0,
        "raised_accuracy": {"t": raised},
        "features": [{"feature": 3}],
        "diffs": {"t": {"diff": diff, "control_diff": control, "diff_minus_control": beyond}},
    }


def test_claim_is_reproduced_only_below_zero_and_below_the_control():
    from experiments.real.features import _claim

    down, flat = _iv(-0.5, -0.8, -0.2), _iv(0.0, -0.1, 0.1)
    claim = _claim(_result(down, flat, _iv(-0.5, -0.8, -0.2)))
    assert claim["verdict"] == "reproduced" and claim["switched_down"] == ["t"]
    # the control fell as much: not beyond it
    claim = _claim(_result(down, down, _iv(0.0, -0.2, 0.2)))
    assert claim["verdict"] == "not reproduced" and "control" in claim["why"]
    claim = _claim(_result(flat, flat, flat))
    assert claim["verdict"] == "not reproduced"


def test_claim_names_the_failed_precondition():
    from experiments.real.features import _claim

    down = _iv(-0.5, -0.8, -0.2)
    claim = _claim(_result(down, down, down, raised=False))
    assert claim["verdict"] == "not testable" and "no tune raised accuracy" in claim["why"]
    assert "-0.500 [-0.800, -0.200]" in claim["why"]  # the numbers measured are still reported
    claim = _claim(_result(down, down, down, n_before=5))
    assert claim["verdict"] == "not testable" and "only 5 positions precede" in claim["why"]
    claim = _claim({**_result(down, down, down), "features": []})
    assert claim["verdict"] == "not testable" and "no SAE feature" in claim["why"]
    claim = _claim({**_result(down, down, down, n_before=0), "parent_self_checks_per_response": 0.0})
    assert claim["verdict"] == "not testable" and "no self-check phrase" in claim["why"]


def test_stage_measures_every_model_on_one_paired_cache(measured, _state):
    out = measured
    n = len(_state.problems)
    assert out["hook"] == "blocks.1.hook_resid_post"
    assert out["n_rows"] == n and out["n_responses"] == n
    assert out["n_before_positions"] == 2 * n  # "Wait" and "check" in each planted answer
    assert set(out["cache"]["ids"]) == {"parent", "base", "sft-answer@1", "sft-answer@2"}
    sae = out["sae"]
    assert math.isfinite(sae["explained_variance"]) and 0 <= sae["dead_fraction"] <= 1
    assert sae["positions"].startswith("real tokens only")
    chosen = [f["feature"] for f in out["features"]]
    excess = [f["mean_before"] - f["mean_other"] for f in out["features"]]
    assert chosen and len(chosen) <= 4 and len(set(chosen)) == len(chosen)  # top_features=4, distinct
    assert excess == sorted(excess, reverse=True)  # ranked by excess before phrases
    assert all(f["mean_before"] > f["mean_other"] and f["contexts"] for f in out["features"])
    assert all("[[" in c["text"] for f in out["features"] for c in f["contexts"])
    control = [c["feature"] for c in out["control"]]
    assert (
        control
        and not set(control) & set(chosen)
        and all(c["firing_rate_before"] > 0 for c in out["control"])
    )
    assert set(out["diffs"]) == {"base", "sft-answer@1", "sft-answer@2"}
    # the "tune" that is the parent itself moves no feature: every difference is exactly 0
    same = out["diffs"]["sft-answer@1"]
    for iv in (
        same["diff"],
        same["control_diff"],
        same["diff_minus_control"],
        *same["per_feature_diff"].values(),
    ):
        assert iv["estimate"] == iv["low"] == iv["high"] == 0.0
    assert out["claim"]["verdict"] in ("reproduced", "not reproduced")
    json.dumps(out, allow_nan=False)  # plain JSON, for results.json
    assert "sft-answer@1" not in out["claim"].get("switched_down", [])


def test_rerun_reuses_the_paired_cache(measured, state):
    from experiments.real.features import stage_features

    root = Path(measured["cache"]["dir"])
    manifests = sorted(root.glob("*/manifest.json"))
    mtimes = {m: m.stat().st_mtime_ns for m in manifests}
    again = stage_features(state, RAISED)
    assert again["cache"] == measured["cache"] and len(manifests) == 4
    assert {m: m.stat().st_mtime_ns for m in manifests} == mtimes
    assert again["features"] == measured["features"]


def test_without_raised_accuracy_the_numbers_stay_and_the_claim_is_not_testable(measured, state):
    from experiments.real.features import stage_features

    out = stage_features(state, {})
    assert out["claim"]["verdict"] == "not testable" and "no tune raised accuracy" in out["claim"]["why"]
    assert out["diffs"] == measured["diffs"]


def test_a_parent_without_phrases_is_not_testable_and_builds_nothing(state):
    from experiments.real.features import stage_features

    state.evals["parent"]["responses"] = ["7 + 5 = 12.\nAnswer: 12"] * len(state.problems)
    state.evals["parent"]["self_checks_per_response"] = 0.0
    state.out = state.out / "none"
    out = stage_features(state, RAISED)
    assert out["n_before_positions"] == 0 and "sae" not in out
    assert out["claim"]["verdict"] == "not testable" and "no self-check phrase" in out["claim"]["why"]
    assert not (state.out / "features").exists()
