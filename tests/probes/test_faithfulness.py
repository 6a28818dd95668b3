"""probes.faithfulness: the four tests against models whose dependence on the CoT is known by construction."""

import json
import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.models import Model
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from probes.faithfulness import (
    CotTask,
    FaithfulnessConfig,
    FaithfulnessResult,
    ModelCompleter,
    TextCompleter,
    adding_mistakes,
    area_over_curve,
    early_answering,
    faithfulness_battery,
    filler_tokens,
    n_kept,
    paraphrase_cot,
)

# Three problems; every step commits a distinct node (the last word before ";").
STEPS = [
    ["n1 > n2 ;", "n2 > n3 ;", "n3 > n4 ;", "n4 > n5 ;", "n5 > n6 ;"],
    ["n7 > n8 ;", "n8 > n9 ;", "n9 > n10 ;"],
    ["n11 > n12 ;", "n12 > n13 ;", "n13 > n14 ;", "n14 > n15 ;", "n15 > n16 ;"],
]
PROMPTS = ["Q n1 n6 T", "Q n7 n10 T", "Q n11 n16 T"]
FINAL = ["n6", "n10", "n16"]


def first_word(text: str):
    words = text.split()
    return words[0] if words and words[0] != "E" else None


def last_committed(text: str) -> str:
    """The node of the last complete step before the cue, or ``none``."""
    words = text.split()
    semis = [i for i, w in enumerate(words) if w == ";"]
    return words[semis[-1] - 1] if semis else "none"


class Recorder:
    """A text function that logs its inputs (to check truncation, filler and memoisation)."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def __call__(self, text: str) -> str:
        self.seen.append(text)
        return self.fn(text)


def last_step_model(text: str) -> str:
    """Answers the last committed node; continuing a chain of thought, it answers at once."""
    if text.split()[-1] == "A":
        return f"{last_committed(text)} E"
    return f"A {last_committed(text)} E"


def ignoring_model(text: str) -> str:
    """Answers the goal named in the question, whatever follows it."""
    goal = text.split()[2]
    return f"{goal} E" if text.split()[-1] == "A" else f"A {goal} E"


def make_task(**kw) -> CotTask:
    base = dict(
        prompts=PROMPTS,
        steps=STEPS,
        answer_cue="A",
        extract_answer=first_word,
        is_correct=lambda i, a: a == FINAL[i],
        stop="E",
        filler=".",
        mistake_maker=lambda p, steps, i: [*steps[:i], "n0 > n99 ;", *steps[i + 1 :]],
        paraphraser=lambda p, steps: steps[::-1],
    )
    return CotTask(**{**base, **kw})


def test_aoc_is_the_trapezoid_of_one_minus_same():
    assert area_over_curve([0, 0.2, 0.4, 0.6, 0.8, 1], [0, 0, 0, 0, 0, 1]) == pytest.approx(0.9)
    assert area_over_curve([0, 0.5, 1], [0.5, 1, 1]) == pytest.approx(0.125)
    assert area_over_curve([0, 1], [1, 1]) == 0.0
    assert [n_kept(f, 5) for f in (0, 0.2, 0.4, 0.6, 0.8, 1)] == [0, 1, 2, 3, 4, 5]
    assert [n_kept(f, 3) for f in (0, 0.2, 0.4, 0.6, 0.8, 1)] == [0, 0, 1, 1, 2, 3]


def test_model_that_ignores_its_cot_has_aoc_zero_and_no_changes():
    r = faithfulness_battery(TextCompleter(ignoring_model), make_task())
    assert r.early.same == (1.0,) * 6 and r.early.aoc == 0.0 and r.early.n_used == 3
    assert r.mistakes.change_rate == 0.0 and r.mistakes.n_used == 3
    assert r.filler.accuracy_no_cot == r.filler.accuracy_filler == r.filler.accuracy_cot == 1.0
    assert r.filler.gain == 0.0
    assert r.paraphrase.same_answer == 1.0 and r.paraphrase.accuracy_paraphrased == 1.0


def test_model_answering_its_last_step_has_high_aoc_and_every_edit_changes_it():
    fn = Recorder(last_step_model)
    r = faithfulness_battery(TextCompleter(fn), make_task())
    # distinct committed nodes: only the full chain gives answer(1); hand-computed AOC 0.9
    assert r.early.same == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert r.early.aoc == pytest.approx(0.9)
    assert r.early.accuracy == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert r.mistakes.change_rate == 1.0 and r.mistakes.accuracy == 0.0
    assert (r.filler.accuracy_no_cot, r.filler.accuracy_filler, r.filler.accuracy_cot) == (0.0, 0.0, 1.0)
    assert r.paraphrase.accuracy_original == 1.0 and r.paraphrase.accuracy_paraphrased == 0.0
    # the 3-step problem is cut at floor(f * 3) = 0, 0, 1, 1, 2, 3 steps
    cut = [t for t in fn.seen if t.startswith("Q n7 n10 T") and t.endswith(" A") and "." not in t]
    assert sorted({t.count(";") for t in cut}) == [0, 1, 2, 3]
    # forced answers are memoised: no text reaches the model twice
    assert len(fn.seen) == len(set(fn.seen))


def test_filler_has_as_many_tokens_as_the_cot():
    fn = Recorder(ignoring_model)
    r = filler_tokens(TextCompleter(fn), make_task())
    fills = [t for t in fn.seen if "." in t]
    for prompt, steps in zip(PROMPTS, STEPS, strict=True):
        (text,) = [t for t in fills if t.startswith(prompt + " ")]
        assert text == " ".join([prompt, *["."] * len(" ".join(steps).split()), "A"])
    assert r.mean_filler_tokens == pytest.approx(sum(len(" ".join(s).split()) for s in STEPS) / 3)


def test_mistake_goes_at_a_seeded_step_and_the_model_continues_from_it():
    fn = Recorder(last_step_model)
    calls = []

    def mistake(p, steps, i):
        calls.append((p, i))
        return [*steps[:i], "n0 > n99 ;", *steps[i + 1 :]]

    task = make_task(mistake_maker=mistake, problems=["p0", "p1", "p2"])
    r = adding_mistakes(TextCompleter(fn), task, FaithfulnessConfig(seed=3))
    assert [p for p, _ in calls] == ["p0", "p1", "p2"]
    continued = [t for t in fn.seen if not t.endswith(" A")]
    assert len(continued) == 3 and all(t.endswith("n0 > n99 ;") for t in continued)
    for (_, i), t in zip(calls, continued, strict=True):  # the prefix keeps steps up to the mistake
        assert t.count(";") == i + 1
    assert r.change_rate == 1.0
    first = [i for _, i in calls]
    calls.clear()
    adding_mistakes(TextCompleter(fn), task, FaithfulnessConfig(seed=3))
    assert [i for _, i in calls] == first  # the seed fixes the corrupted steps


def test_answer_is_forced_when_the_continuation_never_gives_one():
    fn = Recorder(lambda text: f"{last_committed(text)} E" if text.endswith(" A") else "n0 > n42 ; E")
    r = adding_mistakes(TextCompleter(fn), make_task())
    forced = [t for t in fn.seen if t.endswith("n0 > n42 ; E A")]
    assert len(forced) == 3
    assert r.change_rate == 1.0  # the forced answer reads the continuation's own last step


def test_unreadable_reference_answers_are_left_out():
    task = make_task(extract_answer=lambda s: None if s.startswith("n10") else first_word(s))
    r = early_answering(TextCompleter(last_step_model), task)
    assert r.n_used == 2 and r.n_problems == 3


def test_without_edit_functions_those_tests_are_skipped():
    task = make_task(mistake_maker=None, paraphraser=None, is_correct=None)
    r = faithfulness_battery(TextCompleter(ignoring_model), task)
    assert r.mistakes is None and r.paraphrase is None
    assert math.isnan(r.filler.accuracy_cot)
    assert adding_mistakes(TextCompleter(ignoring_model), task) is None
    assert paraphrase_cot(TextCompleter(ignoring_model), task) is None
    only = faithfulness_battery(
        TextCompleter(ignoring_model), make_task(), FaithfulnessConfig(tests=("filler",))
    )
    assert only.early is None and only.filler is not None


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(prompts=[], steps=[]), "at least one problem"),
        (dict(steps=[STEPS[0], [], STEPS[2]]), "problem 1 .* empty chain of thought"),
        (dict(steps=[STEPS[0], ["n7 > n8 ;", "  "], STEPS[2]]), "problem 1 has empty"),
        (dict(steps=STEPS[:2]), "3 prompts but 2"),
        (dict(answer_cue=" "), "answer_cue"),
        (dict(problems=[1]), "1 problems for 3 prompts"),
    ],
)
def test_bad_tasks_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        make_task(**kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(fractions=(0.2, 1.0)), "from 0.0 to 1.0"),
        (dict(fractions=(0.0, 0.5, 0.5, 1.0)), "strictly increasing"),
        (dict(tests=("early", "lens")), "subset of"),
        (dict(batch_size=0), "batch_size=0"),
    ],
)
def test_bad_configs_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        FaithfulnessConfig(**kw)


def test_bad_edit_results_are_refused():
    with pytest.raises(ValueError, match="mistake_maker returned"):
        adding_mistakes(TextCompleter(ignoring_model), make_task(mistake_maker=lambda p, s, i: "n0 ;"))
    with pytest.raises(ValueError, match="paraphraser returned"):
        paraphrase_cot(TextCompleter(ignoring_model), make_task(paraphraser=lambda p, s: []))


def test_result_saves_prints_and_plots(tmp_path):
    r = faithfulness_battery(TextCompleter(last_step_model), make_task())
    assert isinstance(r, FaithfulnessResult)
    data = json.loads(r.save(tmp_path / "f.json").read_text())
    assert data["early"]["aoc"] == pytest.approx(0.9) and data["mistakes"]["change_rate"] == 1.0
    assert data["meta"]["n_problems"] == 3 and data["meta"]["config"]["fractions"][-1] == 1.0
    assert "AOC" in str(r) and "P[answer changes]" in str(r)
    png = r.plot(tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# A real HookedTransformer with hand-set weights: one attention head that copies the previous
# token, and a bigram table. After the cue it answers the token before the cue (or, with
# copy=0, a fixed node): its answer is the last step by construction, or ignores the CoT.
def copy_model(tok: WordTokenizer, copy: float, n_ctx: int = 40) -> Model:
    V = len(tok)
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=2 * V + n_ctx,
        n_ctx=n_ctx,
        d_head=V + n_ctx,
        n_heads=1,
        d_vocab=V,
        attn_only=True,
        normalization_type=None,
        act_fn="relu",
        seed=0,
        device="cpu",
    )
    m = HookedTransformer(cfg)
    ids = tok.get_vocab()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.embed.W_E[:, :V] = torch.eye(V)
        m.pos_embed.W_pos[:, V : V + n_ctx] = torch.eye(n_ctx)
        for p in range(n_ctx):
            m.blocks[0].attn.W_Q[0, V + p, p] = 1.0
            if p + 1 < n_ctx:  # key of position p answers the query of position p + 1
                m.blocks[0].attn.W_K[0, V + p, p + 1] = 500.0
        m.blocks[0].attn.W_V[0, :V, :V] = torch.eye(V)
        m.blocks[0].attn.W_O[0, :V, V + n_ctx :] = torch.eye(V)
        nodes = [i for w, i in ids.items() if w.startswith("n")]
        for i in nodes:
            m.unembed.W_U[V + n_ctx + i, i] = copy  # the copied previous token, if a node
            m.unembed.W_U[i, ids["E"]] = 10.0  # a node is followed by E
        m.unembed.W_U[ids["A"], ids["n1"]] = 1.0  # a weak default answer after the cue
        m.unembed.W_U[ids[";"], ids["A"]] = 10.0
    return Model(m.eval(), tok, f"copy{copy}")


def node_task(**kw) -> CotTask:
    return CotTask(
        prompts=["Q n0 n5 T", "Q n2 n4 T"],
        steps=[["n3", "n7", "n5"], ["n1", "n6", "n9", "n8", "n4"]],
        answer_cue="A",
        extract_answer=lambda s: s.split()[0] if s.split() and s.split()[0].startswith("n") else None,
        is_correct=lambda i, a: a == ["n5", "n4"][i],
        stop="E",
        filler=";",
        mistake_maker=lambda p, steps, i: [*steps[:i], "n11", *steps[i + 1 :]],
        paraphraser=lambda p, steps: steps[:-1] + ["n0", steps[-1]],
        **kw,
    )


def test_hand_set_hooked_transformers_last_step_vs_ignoring():
    tok = WordTokenizer(organism_vocab(12))
    copier, ignorer = copy_model(tok, copy=5.0), copy_model(tok, copy=0.0)
    assert ModelCompleter(copier).complete(["Q n0 n5 T n3 n7 A"], 8, "E") == ["n7 E"]
    r = faithfulness_battery(copier, node_task())
    assert r.early.same == (0.0, 0.0, 0.0, 0.0, 0.0, 1.0) and r.early.aoc == pytest.approx(0.9)
    assert r.mistakes.change_rate == 1.0
    assert r.paraphrase.accuracy_paraphrased == 1.0  # the paraphrase keeps the last step
    assert r.meta["model"]["spec"] == "copy5.0"
    i = faithfulness_battery(ignorer, node_task())
    assert i.early.same == (1.0,) * 6 and i.early.aoc == 0.0
    assert i.mistakes.change_rate == 0.0 and i.filler.gain == 0.0


def test_texts_longer_than_the_context_answer_none():
    tok = WordTokenizer(organism_vocab(12))
    long_steps = [["n3"] * 45]
    task = CotTask(prompts=["Q n0 n5 T"], steps=long_steps, answer_cue="A", extract_answer=first_word)
    r = early_answering(copy_model(tok, 5.0), task)
    assert r.n_used == 0 and math.isnan(r.aoc)
    with pytest.raises(ValueError, match="does not fit the model's context"):
        ModelCompleter(copy_model(tok, 5.0)).complete(["Q " + "n3 " * 45], 4, None)


def test_runs_on_an_hf_bridge_model(gpt2):
    task = CotTask(
        prompts=["w1 w2", "w3 w4 w5"],
        steps=[["w6 w7", "w8"], ["w9", "w10 w11", "w12"]],
        answer_cue="w20",
        extract_answer=lambda s: s.split()[0] if s.split() else None,
        filler="w30",
        mistake_maker=lambda p, s, i: [*s[:i], "w40", *s[i + 1 :]],
        paraphraser=lambda p, s: [" ".join(s)],
    )
    r = faithfulness_battery(gpt2, task, FaithfulnessConfig(max_cot_tokens=6, max_answer_tokens=3))
    assert r.early.same[-1] == 1.0 and r.early.n_used == 2  # answer(1) agrees with itself
    assert 0.0 <= r.early.aoc <= 1.0 and 0.0 <= r.mistakes.change_rate <= 1.0
    assert r.filler.mean_filler_tokens == pytest.approx((3 + 4) / 2)
    assert r.meta["model"]["class"] == "TransformerBridge"


def test_cli_writes_json_and_png(tiny_zoo, tmp_path, capsys):
    from interp.cli import main

    out = tmp_path / "out"
    code = main(
        [
            "probe",
            "faithfulness",
            "--model",
            "organism:base",
            "--zoo",
            str(tiny_zoo),
            "--n",
            "12",
            "--fractions",
            "0,0.5,1",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    data = json.loads((out / "faithfulness.json").read_text())
    assert data["early"]["fractions"] == [0.0, 0.5, 1.0] and data["meta"]["split"] == "test_id"
    assert (out / "faithfulness.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "AOC" in printed and "faithfulness.json" in printed
    assert main(["probe", "faithfulness", "--model", "hf:/nowhere", "--out", str(out)]) == 2
    assert (
        main(
            [
                "probe",
                "faithfulness",
                "--model",
                "organism:base",
                "--zoo",
                str(tiny_zoo),
                "--fractions",
                "0.5,1",
                "--out",
                str(out),
            ]
        )
        == 2
    )
