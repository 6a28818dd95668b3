"""Stage 7 of the real-model suite (steering self-checks back): the three methods' positions against
hand-listed ones and against always-on steering, the wrong-step prompts, the verdict, and the whole
stage on a tiny chat Llama built here."""

import re

import pytest
import torch

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def model(make_chat_tokenizer, make_chat_llama):
    """A tiny 2-layer chat Llama whose BPE knows the problems, the wrong steps and the phrases."""
    from experiments.real.steer import NEUTRAL
    from experiments.real.wrong_steps import WRONG_STEPS
    from interp.models import load_model
    from interp.tasks.arithmetic import arithmetic_task

    arith = arithmetic_task(n=8, seed=0)
    corpus = [m["content"] for ex in arith.examples for m in ex.prompt]
    corpus += [arith.solution(ex, with_checks=c) for ex in arith.examples for c in (False, True)]
    corpus += [q + "\n" + partial for q, partial, _ in WRONG_STEPS]
    corpus += [*NEUTRAL, "user assistant wait check verify"]
    tok = make_chat_tokenizer(corpus, 400, template="role")
    return load_model(f"hf:{make_chat_llama(tok, name='steer_chat_llama')}", device="cpu")


@pytest.fixture(scope="module")
def vec(model):
    from steering.vectors import SteeringVector, model_meta

    d = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    return SteeringVector({HOOK: 3.0 * d / d.norm()}, {"method": "manual", "model": model_meta(model)})


def _changed(model, method, vec, row: list[int], scale: float = 1.0) -> list[int]:
    """Positions whose activation at ``HOOK`` the method changes in a full pass over ``row``."""
    from interp.hooks import record

    with torch.no_grad():
        with record(model, HOOK) as plain:
            model(torch.tensor([row]))
        with method.apply(model, vec, scale), record(model, HOOK) as steered:
            model(torch.tensor([row]))
    diff = (steered[HOOK][0] - plain[HOOK][0]).abs().amax(-1)
    return [i for i, d in enumerate(diff.tolist()) if d > 1e-6]


def _greedy(model, rows, method=None, vec=None, scale: float = 1.0) -> list[list[int]]:
    from contextlib import nullcontext

    from interp.generation import generate

    ctx = nullcontext() if method is None else method.apply(model, vec, scale)
    with ctx:
        return generate(model, rows, 8)


def test_step_ends_are_the_full_stop_and_the_line_break(model):
    from experiments.real.steer import step_end_ids

    ends = step_end_ids(model)
    # this BPE (Metaspace) has ".\n" as one token too, and encodes "." alone as ["▁", "."]
    assert sorted(model.decode([i]) for i in ends) == ["\n", ".", ".\n"]
    assert model.encode(".", add_special_tokens=False)[-1] in ends


def test_targeted_steers_exactly_the_hand_listed_step_ends(model, vec):
    from experiments.real.steer import methods_for, step_end_ids

    dot, newline = (model.encode(t, add_special_tokens=False)[-1] for t in (".", "\n"))
    other = next(i for i in range(5, 50) if i not in step_end_ids(model))
    row = [other, dot, other, other, newline, dot, other, other]
    targeted = methods_for(model, vec, HOOK, threshold=0.0)["targeted"]
    assert _changed(model, targeted, vec, row) == [1, 4, 5]
    # and through the stage's own share count: 3 of the 8 tokens
    assert int(targeted.selector.mask(torch.tensor([row])).sum()) == 3


def test_conditional_with_an_always_true_gate_is_always_on(model, vec):
    from experiments.real.steer import Method
    from interp.tasks.render import render_prompt
    from steering.conditional import LinearGate

    always = Method("always")
    gated = Method("conditional", gate=LinearGate(HOOK, torch.zeros(model.d_model), threshold=-1.0))
    row = render_prompt(model, [{"role": "user", "content": "Tom has 7 apples."}])
    assert _changed(model, gated, vec, row) == _changed(model, always, vec, row) == list(range(len(row)))
    rows = [row, row[:-3]]
    assert _greedy(model, rows, gated, vec, 2.0) == _greedy(model, rows, always, vec, 2.0)
    with gated.apply(model, vec, 2.0) as stats:
        _greedy(model, rows)
    assert stats.share == 1.0


def test_scale_zero_is_unsteered_for_every_method(model, vec):
    from experiments.real.steer import methods_for
    from interp.tasks.render import render_prompt

    rows = [
        render_prompt(model, [{"role": "user", "content": c}]) for c in ("Tom has 7 apples.", "Ben sells 4.")
    ]
    plain = _greedy(model, rows)
    methods = methods_for(model, vec, HOOK, threshold=-1e9)  # the gate fires everywhere
    assert set(methods) == {"always", "targeted", "conditional"}
    for method in methods.values():
        assert _greedy(model, rows, method, vec, 0.0) == plain, method.name
    assert _greedy(model, rows, methods["always"], vec, 4.0) != plain  # the check can fail


def test_wrong_step_prompts_end_where_the_wrong_step_ends(model):
    from experiments.real.wrong_steps import WRONG_STEPS, wrong_step_prompts, wrong_step_task
    from interp.tasks.render import render_prompt

    task = wrong_step_task()
    rows = wrong_step_prompts(model, task)
    assert len(rows) == len(task) == len(WRONG_STEPS)
    bos = model.tokenizer.bos_token_id
    for ex, row, (q, partial, _) in zip(task.examples, rows, WRONG_STEPS, strict=True):
        prompt = render_prompt(model, ex.prompt)
        assert row[: len(prompt)] == prompt and q in ex.prompt[0]["content"]
        assert model.decode(row[len(prompt) :]) == partial
        wrong = partial.split("\n")[-1]
        assert model.decode(row).endswith(wrong) and wrong.endswith(model.decode(row[-1:]).strip())
        assert row.count(bos) == prompt.count(bos)  # the partial answer adds no special token


_STEP = re.compile(r"^(\d+) ([+-]) (\d+) = (\d+)$")
_PLUS = re.compile(r"(buys|finds|gets|receives) (\d+)")
_MINUS = re.compile(r"(gives away|loses|sells|gives) (\d+)")


def test_every_wrong_step_is_wrong_and_only_the_last():
    """The hand-written data: earlier steps right, the last one wrong, the answer the question's."""
    from experiments.real.wrong_steps import WRONG_STEPS

    assert 12 <= len(WRONG_STEPS) <= 20
    for q, partial, answer in WRONG_STEPS:
        value = int(re.search(r"has (\d+)", q).group(1))
        ops = [
            (m.start(), 1 if m.re is _PLUS else -1, int(m.group(2)))
            for pat in (_PLUS, _MINUS)
            for m in pat.finditer(q.split(". ", 1)[1])
        ]
        steps = partial.split("\n")
        for k, (_, sign, n) in enumerate(sorted(ops)):
            if k < len(steps):
                a, op, b, c = _STEP.match(steps[k]).groups()
                assert (int(a), op, int(b)) == (value, "+" if sign > 0 else "-", n), (q, steps[k])
                right = value + sign * n
                assert (int(c) == right) == (k < len(steps) - 1), (q, steps[k])
            value += sign * n
        assert str(value) == answer, q


def test_recovery_scores_the_final_answer_and_the_self_check(model):
    from experiments.real.wrong_steps import score, wrong_step_task

    task = wrong_step_task()
    texts = ["\n" + "x" for _ in task.examples]
    texts[0] = ". Wait, let me check: 17 + 8 = 25.\n25 - 6 = 19\nAnswer: 19"
    texts[1] = "\nAnswer: 15"  # carries the mistake on
    s = score(task, texts)
    assert s["recovered"][:2] == [1, 0] and sum(s["recovered"]) == 1
    assert s["self_checked"][:2] == [1, 0] and sum(s["self_checked"]) == 1


def _iv(e: float, lo: float, hi: float) -> dict:
    return {"estimate": e, "low": lo, "high": hi, "excludes_0": lo > 0 or hi < 0}


def _result(checks, rand_checks, accuracy, recovery, rand_recovery, per_response=2.0) -> dict:
    m = {
        "self_checks_per_response": per_response,
        "self_checks_diff": _iv(*checks),
        "accuracy_diff": _iv(*accuracy),
        "kl_neutral": _iv(0.1, 0.05, 0.2),
        "steered_share": 0.1,
    }
    rnd = {**m, "self_checks_diff": _iv(*rand_checks)}
    zero = _iv(0.0, 0.0, 0.0)
    return {
        "tune": "t",
        "parent_self_checks_per_response": 2.6,
        "unsteered": {"self_checks_per_response": 0.0, "accuracy": 0.1},
        "methods": {"targeted": {"scales": {"1.0": m}, "random": {"1.0": rnd}, "chosen_scale": "1.0"}},
        "recovery": {
            "n_problems": 16,
            "runs": {
                "parent": {"recovery_rate": 0.5, "recovery_diff": _iv(0.4, 0.2, 0.6)},
                "tune": {"recovery_rate": 0.1},
                "targeted": {"recovery_diff": _iv(*recovery), "self_check_diff": zero},
                "targeted random": {"recovery_diff": _iv(*rand_recovery), "self_check_diff": zero},
            },
        },
    }


UP, FLAT = (0.5, 0.2, 0.8), (0.0, -0.1, 0.1)


@pytest.mark.parametrize(
    "args, verdict, why",
    [
        ((UP, FLAT, FLAT, UP, FLAT), "reproduced", "passes"),
        ((UP, FLAT, FLAT, FLAT, FLAT), "not reproduced", "fails: recovery"),
        ((UP, FLAT, FLAT, UP, UP), "not reproduced", "fails: recovery"),  # the random control recovers too
        ((UP, UP, FLAT, UP, FLAT), "not reproduced", "fails: self-checks"),
        ((UP, FLAT, (-0.1, -0.3, 0.1), UP, FLAT), "not reproduced", "fails: accuracy within costs"),
    ],
)
def test_the_verdict_needs_self_checks_and_recovery_beyond_the_control_within_costs(args, verdict, why):
    from experiments.real.steer import function_claim

    claim = function_claim(_result(*args), {"tunes": {"t": {"suppressed": True}}})
    assert claim["verdict"] == verdict and why in claim["why"]
    assert claim["methods"] == (["targeted"] if verdict == "reproduced" else [])


def test_degenerate_phrases_fail_and_an_unsuppressed_tune_is_not_testable():
    from experiments.real.steer import function_claim

    spam = function_claim(
        _result(UP, FLAT, FLAT, UP, FLAT, per_response=72.0), {"tunes": {"t": {"suppressed": True}}}
    )
    assert spam["verdict"] == "not reproduced" and "fails: not degenerate" in spam["why"]
    assert function_claim(_result(UP, FLAT, FLAT, UP, FLAT), {})["verdict"] == "not testable"


def test_positioned_methods_run_at_the_largest_scales_only():
    from experiments.real.steer import method_scales

    scales = (0.25, 0.5, 1.0, 2.0)
    assert method_scales("always", scales) == [0.25, 0.5, 1.0, 2.0]
    assert method_scales("targeted", scales) == method_scales("conditional", scales) == [1.0, 2.0]
    assert method_scales("targeted", (4.0,)) == [4.0]


def test_the_chosen_scale_is_the_largest_functional_gain():
    from experiments.real.steer import chosen_scale

    def m(gain: float, per: float, acc: float) -> dict:
        return {
            "self_checks_per_response": per,
            "self_checks_diff": {"estimate": gain},
            "accuracy_diff": {"estimate": acc},
        }

    r = {
        "scales": {
            "0.5": m(0.5, 1.0, 0.0),
            "1.0": m(1.0, 2.0, -0.04),
            "2.0": m(9.0, 70.0, 0.0),
            "4.0": m(3.0, 3.0, -0.2),
        }
    }
    assert chosen_scale(r, 2.6) == "1.0"  # 2.0 repeats phrases, 4.0 costs accuracy
    flat = {"scales": {"0.5": m(0.0, 0.0, 0.0), "1.0": m(0.0, 0.0, 0.0)}}
    assert chosen_scale(flat, 2.6) == "0.5"  # a tie: the smaller
    broken = {"scales": {"1.0": m(9.0, 70.0, 0.0), "0.5": m(9.0, 70.0, 0.0)}}
    assert chosen_scale(broken, 2.6) == "0.5"


def _state(model, tmp_path, monkeypatch):
    """A stage-7 state on the tiny model: parent with checked answers, one tune without, 4 wrong steps."""
    from dataclasses import replace

    import experiments.real.wrong_steps as ws
    from experiments.real import PROFILES
    from experiments.real.common import self_checks
    from experiments.real.tunes import State
    from interp.tasks.arithmetic import arithmetic_task

    spec = model.spec
    monkeypatch.setattr(ws, "WRONG_STEPS", ws.WRONG_STEPS[:4])  # fewer, for time
    prof = replace(PROFILES["tiny"], steer_scales=(1.0,), steer_problems=2, max_new_tokens=4)
    st = State(spec, prof, tmp_path, progress=False)
    st.problems = arithmetic_task(n=3, seed=0, splits=("test",))
    st.parent, st.tunes, st.strongest = spec, {"sft-answer@2": spec}, "sft-answer@2"
    checked = [st.problems.solution(ex, with_checks=True) for ex in st.problems.examples]
    plain = [st.problems.solution(ex) for ex in st.problems.examples]
    for label, texts in (("parent", checked), ("sft-answer@2", plain)):
        c = self_checks(texts)
        st.evals[label] = {
            "responses": texts,
            "self_checks": c,
            "self_checks_per_response": sum(c) / len(c),
            "correct": [1] * len(texts),
        }
    return st


SUPPRESSED = {"tunes": {"sft-answer@2": {"suppressed": True}}}


def test_stage_runs_every_method_and_recovery(model, tmp_path, monkeypatch):
    """The whole stage on the tiny model: every method and its control, shares, recovery, verdict;
    without the features stage's SAE, sae_clamp is reported as not run, not dropped."""
    from experiments.real.steer import AMPLIFY_LABEL, CLAMP, stage_steering

    out = stage_steering(_state(model, tmp_path, monkeypatch), SUPPRESSED)
    assert set(out["methods"]) == {"always", "targeted", "conditional"}
    assert out["n_before_phrase_at_step_end"] <= out["n_before_phrase"]
    lo, hi = out["parent_score_other"], out["parent_score_before_phrase"]
    assert out["gate_threshold"] == pytest.approx((lo + hi) / 2)
    for name, r in out["methods"].items():
        assert set(r["scales"]) == set(r["random"]) == {"1.0"} and r["chosen_scale"] in r["scales"]
        for m in (*r["scales"].values(), *r["random"].values()):
            assert 0.0 <= m["steered_share"] <= 1.0 and m["kl_neutral"]["estimate"] >= 0
            assert (m["steered_share"] == 1.0) == (name == "always") or name != "always"
    runs = out["recovery"]["runs"]
    assert set(runs) == {"parent", "tune"} | {f"{n}{s}" for n in out["methods"] for s in ("", " random")}
    assert all(len(r["recovered"]) == out["recovery"]["n_problems"] == 4 for r in runs.values())
    assert "recovery_diff" in runs["always"] and "recovery_diff" not in runs["tune"]
    assert out["claim"]["verdict"] in ("reproduced", "not reproduced") and "recovery" in out["claim"]["why"]
    assert out["scales"] is out["methods"]["always"]["scales"]
    # the report's stage-7 part: every method and its control, recovery per run, the verdict sentence
    from experiments.real.report import _steering

    text = "\n".join(_steering(out))
    for name in out["methods"]:
        assert (
            f"| {name} | self-check | 1.0 (chosen) |" in text
            and f"| {name} | random, same norm | 1.0 |" in text
        )
    assert all(f"| {label} |" in text for label in runs)
    assert out["claim"]["why"] in text and f"**{out['claim']['verdict']}**" in text
    # the features stage did not run: both SAE methods named with why, in the result and the verdict
    assert out["not_run"] == {
        CLAMP: "no SAE: the features stage did not run",
        AMPLIFY_LABEL: out["not_run"][CLAMP],
    }
    assert "sae_clamp not run: no SAE: the features stage did not run" in out["claim"]["why"]


FEATURE, TYPICAL = 2, 3.0


def _constant_sae(d_in: int, hook: str = HOOK):
    """A tiny SAE whose feature ``FEATURE`` reads ``TYPICAL`` at every position (its encoder column
    is 0 and its bias ``TYPICAL``), so clamping it to ``TYPICAL`` must change nothing."""
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    g = torch.Generator().manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=8, metadata=SAEMetadata(hook_name=hook)))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, 8, generator=g))
        sae.W_enc[:, FEATURE] = 0.0
        sae.b_enc.zero_()
        sae.b_enc[FEATURE] = TYPICAL
        sae.W_dec.copy_(torch.randn(8, d_in, generator=g))
    return sae


def _features_result(tmp_path, sae, hook: str = HOOK) -> dict:
    """The part of the features stage's result stage 7 reads, with the SAE saved where the stage keeps it."""
    from steering.sae_io import save_sae

    save_sae(sae, tmp_path / "features" / "cache-x" / "sae_parent")
    rows = [
        {"feature": FEATURE, "mean_before": TYPICAL, "mean_other": 0.1},
        {"feature": 0, "mean_before": 9.0},
    ]
    return {"hook": hook, "cache": {"dir": str(tmp_path / "features" / "cache-x")}, "features": rows}


def test_clamping_a_feature_to_its_own_activation_changes_nothing(model):
    """The oracle: the feature reads TYPICAL everywhere, so clamping it to 1x TYPICAL is the identity
    (KL exactly 0, the same greedy tokens); 2x adds TYPICAL x its decoder row at the step ends."""
    from experiments.real.steer import FeatureEdit, _kl, methods_for
    from interp.tasks.render import render_prompt

    sae = _constant_sae(model.d_model)
    targeted = methods_for(model, _vec_like(model), HOOK, 0.0)["targeted"]
    clamp = FeatureEdit("sae_clamp", sae, FEATURE, TYPICAL, HOOK, selector=targeted.selector)
    assert _kl(model, None, 1.0, clamp) == [0.0] * 8
    rows = [render_prompt(model, [{"role": "user", "content": "Tom has 7 apples. He buys 8 more."}])]
    assert _greedy(model, rows, clamp, None, 1.0) == _greedy(model, rows)
    assert min(_kl(model, None, 2.0, clamp)) > 0  # the check can fail: 2x does change the model
    row = model.encode("Tom has 7 apples.\nHe buys 8.", add_special_tokens=False)
    changed = _changed(model, clamp, None, row, 2.0)
    assert changed and changed == [i for i, t in enumerate(row) if t in targeted.selector.ids]


def _vec_like(model):
    from steering.vectors import SteeringVector

    return SteeringVector({HOOK: torch.ones(model.d_model)}, {"method": "manual"})


def test_stage_runs_the_sae_clamp_and_its_control_at_the_clamp_vectors_norm(model, tmp_path, monkeypatch):
    """sae_clamp in the tune and the amplification in the parent run beside the other methods, in the
    same shape (the report renders them unchanged); each control has the edit's norm."""
    from experiments.real.report import _steering
    from experiments.real.steer import AMPLIFY, AMPLIFY_LABEL, CLAMP, CLAMP_MULTIPLES, stage_steering

    sae = _constant_sae(model.d_model)
    row_norm = float(sae.W_dec[FEATURE].detach().norm())
    out = stage_steering(_state(model, tmp_path, monkeypatch), SUPPRESSED, _features_result(tmp_path, sae))
    assert "not_run" not in out and out["sae_feature"]["feature"] == FEATURE  # the stage's top-ranked one
    assert out["sae_feature"]["decoder_norm"] == pytest.approx(row_norm, rel=1e-5)
    assert list(out["methods"]) == ["always", "targeted", "conditional", CLAMP, AMPLIFY_LABEL]
    clamp, amp = out["methods"][CLAMP], out["methods"][AMPLIFY_LABEL]
    assert set(clamp["scales"]) == set(clamp["random"]) == {str(m) for m in CLAMP_MULTIPLES}
    for s, m in clamp["scales"].items():
        want = float(s) * TYPICAL * row_norm  # clamp value x decoder row
        assert m["added_norm"] == pytest.approx(want, rel=1e-5)
        assert clamp["random"][s]["added_norm"] == pytest.approx(want, rel=1e-5)
        assert 0 < m["steered_share"] < 0.5  # the step ends of prompt + response
    assert clamp["scales"]["1.0"]["kl_neutral"]["estimate"] == 0.0  # clamped to its own activation
    assert clamp["scales"]["2.0"]["kl_neutral"]["estimate"] > 0
    (a,) = amp["scales"].values()
    assert (
        amp["model"] == "parent" and a["scale"] == AMPLIFY and a["steered_share"] == 1.0
    )  # fires everywhere
    want = (AMPLIFY - 1) * TYPICAL * row_norm
    assert a["added_norm"] == pytest.approx(want, rel=1e-5)
    assert amp["random"][str(AMPLIFY)]["added_norm"] == pytest.approx(want, rel=1e-5)
    runs = out["recovery"]["runs"]
    for label in (CLAMP, f"{CLAMP} random", AMPLIFY_LABEL, f"{AMPLIFY_LABEL} random"):
        assert len(runs[label]["recovered"]) == 4
    assert runs[CLAMP]["paired_against"] == "tune" and runs[AMPLIFY_LABEL]["paired_against"] == "parent"
    why = out["claim"]["why"]
    assert f"{CLAMP} x{clamp['chosen_scale']}" in why and "beside the verdict, in the parent" in why
    assert AMPLIFY_LABEL not in out["claim"]["methods"]
    text = "\n".join(_steering(out))
    for name, r in ((CLAMP, clamp), (AMPLIFY_LABEL, amp)):
        assert f"| {name} | self-check | {r['chosen_scale']} (chosen) |" in text
        assert f"| {name} | random, same norm | {r['chosen_scale']} |" in text
        vs = " (vs parent)" if name == AMPLIFY_LABEL else ""  # paired against the parent, said so
        assert f"| {name}{vs} |" in text.split("Recovery after")[1] and f"| {name} random{vs} |" in text
    assert f"SAE methods: the parent SAE's feature {out['sae_feature']['feature']}" in text


def test_an_unusable_sae_is_reported_with_why(model, tmp_path):
    from experiments.real.steer import sae_feature

    assert sae_feature(None, model.d_model) == (None, "no SAE: the features stage did not run")
    feats = _features_result(tmp_path, _constant_sae(model.d_model))
    found, why = sae_feature(feats, model.d_model)
    assert why == "" and (found["feature"], found["typical"], found["hook"]) == (FEATURE, TYPICAL, HOOK)
    assert sae_feature({**feats, "features": []}, model.d_model) == (
        None,
        "no SAE feature: the features stage chose none",
    )
    gone = {**feats, "cache": {"dir": str(tmp_path / "nowhere")}}
    assert "is not an SAE directory: cfg.json is missing" in sae_feature(gone, model.d_model)[1]
    assert "reads width 32, the model has 64" in sae_feature(feats, 64)[1]
    other = {**feats, "hook": "blocks.0.hook_resid_post"}
    assert "the features stage says 'blocks.0.hook_resid_post'" in sae_feature(other, model.d_model)[1]


def test_a_method_in_the_parent_is_reported_beside_the_verdict_not_as_passing():
    from experiments.real.steer import AMPLIFY_LABEL, function_claim

    r = _result(UP, FLAT, FLAT, FLAT, FLAT)  # targeted fails on recovery
    m = r["methods"]["targeted"]
    r["methods"][AMPLIFY_LABEL] = {
        **m,
        "model": "parent",
        "random": {"1.0": {**m, "self_checks_diff": _iv(*FLAT)}},
    }
    runs = r["recovery"]["runs"]
    runs[AMPLIFY_LABEL] = {**runs["targeted"], "recovery_diff": _iv(*UP)}
    runs[f"{AMPLIFY_LABEL} random"] = runs["targeted random"]
    claim = function_claim(r, {"tunes": {"t": {"suppressed": True}}})
    assert claim["verdict"] == "not reproduced" and claim["methods"] == []
    assert f"beside the verdict, in the parent against it unsteered: {AMPLIFY_LABEL} x1.0" in claim["why"]
    assert claim["why"].endswith("; passes")  # it passes in the parent, and still does not count


def test_recovery_refuses_an_unknown_reference_before_generating(model):
    from experiments.real.wrong_steps import recovery, unsteered

    with pytest.raises(ValueError, match=r"runs \['parent'\] are not among the runs \['tune'\]"):
        recovery({"tune": (model, unsteered)}, "tune", 10, against={"tune": "parent"})
