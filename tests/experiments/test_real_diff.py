"""Stage (b)-diff of the real-model suite: the crosscoder diff of the parent against its tunes and
their matched-noise controls. The verdict logic against planted results, the pipeline against
planted shared and parent-only directions (tests/crosscoder_fixtures.py, the organism's oracle),
and the whole stage on tiny chat Llamas built here."""

import copy
import json
from dataclasses import replace

import crosscoder_fixtures as PLANTED
import pytest
import torch
from real_llamas import CHECKED, chat_llamas

# --- the verdict -------------------------------------------------------------------------------


def _iv(estimate: float, low: float, high: float) -> dict:
    return {"estimate": estimate, "low": low, "high": high, "excludes_0": low > 0 or high < 0}


DOWN, FLAT = _iv(-0.5, -0.8, -0.2), _iv(0.0, -0.1, 0.1)


def _tune(count: int, control: int, direction: dict | None) -> dict:
    best = {"latent": 3, "kind": "base-only", "ratio": 0.02, "auroc": 0.97, "survives_scaling": True}
    return {
        "base_only_surviving": count,
        "best_marker_latent": best,
        "control": {"base_only_surviving": control},
        "direction": direction,
    }


def _result(tune: dict, raised: bool = True, n_before: int = 40) -> dict:
    return {
        "n_before_positions": n_before,
        "min_positions": 20,
        "raised_accuracy": {"t": raised},
        "tunes": {"t": tune},
    }


FALLS = {"tune_minus_parent": DOWN, "tune_minus_noise": DOWN, "noise_minus_parent": FLAT}


@pytest.mark.parametrize("control", [5, 7])
def test_claim_is_never_reproduced_unless_the_count_exceeds_the_noise_controls(control):
    from experiments.real.diff import _claim

    # every interval says "switched off", but the noise control has as many parent-only latents
    claim = _claim(_result(_tune(5, control, FALLS)))
    assert claim["verdict"] == "not reproduced" and claim["beyond_control"] == []
    assert (
        f"5 parent-only latents surviving latent scaling vs {control} for its noise control" in claim["why"]
    )
    assert "mean something only beyond the noise control's count" in claim["why"]


def test_claim_needs_the_direction_to_fall_beyond_the_noise_as_well_as_the_count():
    from experiments.real.diff import _claim

    claim = _claim(_result(_tune(5, 0, FALLS)))
    assert claim["verdict"] == "reproduced" and claim["switched_off"] == ["t"]
    # counts alone: no direction check (no surviving parent-only latent named), or one that the
    # noise moved as much, is not enough
    for direction in (None, {**FALLS, "tune_minus_noise": FLAT}, {**FALLS, "tune_minus_parent": FLAT}):
        claim = _claim(_result(_tune(5, 0, direction)))
        assert claim["verdict"] == "not reproduced" and claim["beyond_control"] == ["t"], direction


def test_claim_names_the_failed_precondition_and_keeps_the_numbers():
    from experiments.real.diff import _claim

    claim = _claim(_result(_tune(5, 0, FALLS), raised=False))
    assert claim["verdict"] == "not testable" and "no diffed tune raised accuracy" in claim["why"]
    assert "-0.500 [-0.800, -0.200]" in claim["why"]
    claim = _claim(_result(_tune(5, 0, FALLS), n_before=5))
    assert claim["verdict"] == "not testable" and "only 5 positions precede" in claim["why"]
    claim = _claim({**_result(_tune(5, 0, FALLS)), "tunes": {}})
    assert claim["verdict"] == "not testable" and "no tune was diffed" in claim["why"]
    claim = _claim({**_result(_tune(5, 0, FALLS), n_before=0), "tunes": {}})
    assert claim["verdict"] == "not testable" and "no self-check phrase" in claim["why"]


def test_sizes_refuse_bad_values_and_unknown_profiles():
    from experiments.real.diff import DiffSizes, diff_sizes

    with pytest.raises(ValueError, match=r"sae_steps=0; expected an integer >= 1"):
        DiffSizes("x", 0, False)
    with pytest.raises(ValueError, match=r"profile='huge'; expected one of \['full', 'quick', 'tiny'\]"):
        diff_sizes("huge")


# --- the pipeline against planted directions ----------------------------------------------------


def _planted_run(noise_of):
    """Parent and tune from the shared fixture (4 shared, 3 parent-only, 3 tune-only directions);
    the pre-phrase positions are where parent-only direction 0 is on; 16 positions per response."""
    from experiments.model_diff import MarkedPositions
    from experiments.real.diff import diff_with_control

    acts, dirs, kinds = PLANTED.planted(n=2048)
    parent, tune = acts["base"], acts["tuned"]
    at = parent @ dirs[kinds.index("base-only")] > 0.25
    rows = torch.arange(len(parent)) // 16
    tokens = torch.where(at, 7, 3)
    positions = MarkedPositions(at, tokens, torch.full_like(tokens, -1))
    noisy = noise_of(parent, tune) + 0.01 * torch.randn(
        parent.shape, generator=torch.Generator().manual_seed(5)
    )
    config = replace(PLANTED.PLANTED_CONFIG, steps=250)
    _, _, res = diff_with_control(
        ({"parent": parent, "t": tune}, "t"),
        ({"parent": parent, "noise-t": noisy}, "noise-t"),
        config,
        "planted",
        positions,
        lambda t: f"tok{t}",
        rows,
        at,
        200,
    )
    return res, int(at.sum())


def test_planted_parent_only_direction_is_found_beyond_a_control_that_keeps_it():
    """Oracle: the tune lacks the parent-only directions; the control (the parent plus small noise)
    keeps them. The tune's crosscoder finds surviving parent-only latents, the control's none; the
    top one's direction falls in the tune, below the parent and below the control: reproduced."""
    from experiments.real.diff import _claim

    res, n_at = _planted_run(lambda parent, tune: parent)
    assert res["base_only_surviving"] >= 2 and res["control"]["base_only_surviving"] == 0, res["counts"]
    best = res["best_marker_latent"]
    assert best["kind"] == "base-only" and best["survives_scaling"] and best["auroc"] > 0.95
    d = res["direction"]
    assert d["latent"] == res["base_only_named"][0]["latent"] and d["n_responses"] > 50
    assert d["mean"]["tune"] == pytest.approx(0.0, abs=0.05) and d["mean"]["parent"] > 0.5
    assert d["tune_minus_parent"]["high"] < 0 and d["tune_minus_noise"]["high"] < 0
    assert not d["noise_minus_parent"]["excludes_0"] or abs(d["noise_minus_parent"]["estimate"]) < 0.01
    claim = _claim(
        {"n_before_positions": n_at, "min_positions": 20, "raised_accuracy": {"t": True}, "tunes": {"t": res}}
    )
    assert claim["verdict"] == "reproduced" and claim["switched_off"] == ["t"]
    json.dumps(res)


def test_a_control_that_loses_the_same_directions_stops_the_claim():
    """Hollow-test control: random change that removes the parent-only directions as the tune does
    (the tune plus fresh noise). The tune's own numbers are as before; the verdict is not reproduced."""
    from experiments.real.diff import _claim

    res, n_at = _planted_run(lambda parent, tune: tune)
    assert res["base_only_surviving"] >= 2 and res["control"]["base_only_surviving"] >= 2
    assert not res["direction"]["tune_minus_noise"]["excludes_0"] or (
        abs(res["direction"]["tune_minus_noise"]["estimate"]) < 0.01
    )
    claim = _claim(
        {"n_before_positions": n_at, "min_positions": 20, "raised_accuracy": {"t": True}, "tunes": {"t": res}}
    )
    assert claim["verdict"] == "not reproduced" and claim["switched_off"] == []


# --- the stage on tiny chat Llamas ---------------------------------------------------------------


@pytest.fixture(scope="module")
def llamas(make_chat_tokenizer, make_chat_llama) -> dict[str, str]:
    """Tiny chat Llamas sharing one BPE: ``label -> hf:DIR``."""
    return chat_llamas(make_chat_tokenizer, make_chat_llama, ("base", "parent", "answer", "self"), "diff")


RAISED = {"sft-answer@1": True, "sft-answer@2": True, "sft-self@1": True}


@pytest.fixture(scope="module")
def _state(llamas, tmp_path_factory):
    """A state as stages 1-3 leave it, the parent's answers planted (two phrases each), and stage
    features run on it (its paired cache is what the diff reads)."""
    from experiments.real import PROFILES
    from experiments.real.features import stage_features
    from experiments.real.tunes import State
    from interp.tasks.arithmetic import arithmetic_task

    st = State(llamas["base"], PROFILES["tiny"], tmp_path_factory.mktemp("diff"), progress=False)
    st.problems = arithmetic_task(n=4, seed=0, splits=("test",))
    st.parent = llamas["parent"]
    # quick and tiny diff the focus tune only (sft-answer@2): sft-answer@1 and sft-self@1 are left out
    st.tunes = {
        "sft-answer@1": llamas["parent"],
        "sft-answer@2": llamas["answer"],
        "sft-self@1": llamas["self"],
    }
    st.strongest = st.focus = "sft-answer@2"
    n = len(st.problems)
    st.evals = {
        label: {
            "responses": [CHECKED] * n,
            "correct": [1] * n,
            "self_checks": [2] * n,
            "self_checks_per_response": 2.0,
        }
        for label in ("base", "parent", *st.tunes)
    }
    features = stage_features(st, {t: {"raised_accuracy": r} for t, r in RAISED.items()})
    return st, features


@pytest.fixture(scope="module")
def diffed(_state):
    from experiments.real.diff import stage_diff

    st, features = _state
    return stage_diff(copy.deepcopy(st), features)


def test_stage_saves_a_crosscoder_per_tune_and_control_with_both_fingerprints(_state, diffed):
    from experiments.model_diff import CONTROL_PREFIX
    from steering.crosscoder import Crosscoder

    st, features = _state
    out = diffed
    # the focus tune only; the others are left out, and why is said
    assert list(out["tunes"]) == ["sft-answer@2"] and "the focus tune" in out["tunes_why"]
    assert out["hook"] == features["hook"] == "blocks.1.hook_resid_post"
    parent_fp = st.model("parent").fingerprint
    for tune, res in out["tunes"].items():
        label = tune.replace("@", "_")
        assert sum(res["counts"].values()) == out["config"]["n_latents"]
        tune_fp = st.model(tune).fingerprint
        cc = Crosscoder.load(st.out / res["dir"])
        assert res["dir"] == f"diff/crosscoders/{label}"
        assert cc.labels == ("parent", label) and cc.hook == out["hook"]
        assert cc.models["parent"]["fingerprint"] == parent_fp and cc.models[label]["fingerprint"] == tune_fp
        assert cc.models["parent"]["cache_id"] == features["cache"]["ids"]["parent"]
        assert cc.models[label]["cache_id"] == features["cache"]["ids"][tune]
        # the control: its own crosscoder, on the parent plus noise cached over the same rows
        control = res["control"]
        assert control["dir"] == f"diff/crosscoders/{CONTROL_PREFIX}{label}"
        noisy = Crosscoder.load(st.out / control["dir"])
        assert noisy.labels == ("parent", CONTROL_PREFIX + label)
        assert noisy.models["parent"]["fingerprint"] == parent_fp
        noise_fp = noisy.models[CONTROL_PREFIX + label]["fingerprint"]
        assert noise_fp not in (parent_fp, tune_fp)
        assert noisy.models[CONTROL_PREFIX + label]["cache_id"] == control["cache_id"]
        assert set(control["counts"]) == set(res["counts"])
        assert res["n_before_marker"] == features["n_before_positions"] == 2 * len(st.problems)
    caches = sorted(p.name.rsplit("-", 1)[0] for p in (st.out / "diff" / "noise").iterdir())
    assert caches == ["noise-sft-answer_2"]
    assert out["claim"]["verdict"] in ("reproduced", "not reproduced")
    for t in out["claim"].get("switched_off", []):
        assert out["tunes"][t]["base_only_surviving"] > out["tunes"][t]["control"]["base_only_surviving"]
    json.dumps(out)


def test_rerun_reuses_the_noise_caches_and_replaces_the_crosscoders(_state, diffed):
    from experiments.real.diff import stage_diff

    st, features = _state
    manifests = sorted((st.out / "diff" / "noise").glob("*/manifest.json"))
    mtimes = {m: m.stat().st_mtime_ns for m in manifests}
    again = stage_diff(copy.deepcopy(st), features)
    assert {m: m.stat().st_mtime_ns for m in manifests} == mtimes and len(manifests) == 1
    for t, res in diffed["tunes"].items():  # seeded: the same crosscoders again
        assert again["tunes"][t]["counts"] == res["counts"]
        assert again["tunes"][t]["control"]["counts"] == res["control"]["counts"]
    left = sorted(p.name for p in (st.out / "diff" / "crosscoders").iterdir())
    assert left == ["noise-sft-answer_2", "sft-answer_2"]


def test_report_shows_the_diff_table_and_the_claim(diffed):
    from experiments.real.report import _diff

    text = "\n".join(_diff(diffed))
    assert (
        "| tune | parent-only surviving | shared | tuned-only surviving | noise control's parent-only |"
        in text
    )
    for t, res in diffed["tunes"].items():
        assert f"| {t} | {res['base_only_surviving']} | {res['counts']['shared']} |" in text
    assert diffed["claim"]["why"] in text


def test_answers_other_than_the_cached_ones_are_refused_before_anything_is_written(_state, tmp_path):
    from experiments.real.diff import stage_diff
    from interp.errors import CacheError, InterpError

    st, features = _state
    st = copy.deepcopy(st)
    st.out = tmp_path
    st.evals["parent"]["responses"] = ["7 + 5 = 12. Wait.\nAnswer: 12"] * len(st.problems)
    with pytest.raises(
        CacheError, match="is not over the parent's answers of this state; rerun stage features"
    ) as info:
        stage_diff(st, features)
    assert isinstance(info.value, InterpError)
    assert not (tmp_path / "diff").exists()


def test_without_a_features_cache_the_stage_is_not_testable_and_builds_nothing(_state, tmp_path):
    from experiments.real.diff import stage_diff

    st, _ = _state
    st = copy.deepcopy(st)
    st.out = tmp_path
    features = {"hook": "blocks.1.hook_resid_post", "n_before_positions": 0, "raised_accuracy": {}}
    out = stage_diff(st, features)
    assert out["claim"]["verdict"] == "not testable" and "no self-check phrase" in out["claim"]["why"]
    assert out["tunes"] == {} and not (tmp_path / "diff").exists()
