"""interp.tasks.arithmetic: seeded problems with right gold steps, disjoint splits, readers and edits."""

import re

import pytest

from interp.tasks.arithmetic import (
    CheckedSolution,
    NumberAnswer,
    ResultMistake,
    VerbalParaphrase,
    arithmetic_task,
)
from interp.tasks.protocol import Example, TaskError

EQ = re.compile(r"^(\d+) ([+-]) (\d+) = (\d+)$")


def _key(ex):
    return ex.meta["start"], tuple(tuple(o) for o in ex.meta["ops"])


def test_same_seed_same_examples_other_seed_others():
    a, b, c = arithmetic_task(n=10, seed=3), arithmetic_task(n=10, seed=3), arithmetic_task(n=10, seed=4)
    assert [ex.record() for ex in a] == [ex.record() for ex in b]
    assert [ex.record() for ex in a] != [ex.record() for ex in c]
    assert a.describe()["sha256"] == b.describe()["sha256"]


def test_gold_steps_are_right_and_chain_to_the_answer():
    t = arithmetic_task(n=30)
    for ex in t:
        value = ex.meta["start"]
        for step, (op, n) in zip(ex.steps, ex.meta["ops"], strict=True):
            a, sign, b, c = EQ.match(step).groups()
            assert (int(a), sign, int(b)) == (value, op, n)
            value = value + n if op == "+" else value - n
            assert int(c) == value >= 0
        assert ex.answer == str(value)
        assert f"has {ex.meta['start']} " in ex.meta["question"]
        assert ex.prompt[0]["role"] == "user" and "Answer: <number>" in ex.prompt[0]["content"]


def test_splits_are_disjoint_stable_and_ood_is_longer():
    t = arithmetic_task(n=60)
    train, test, ood = (t.split(s) for s in ("train", "test", "ood"))
    assert len(train) == len(test) == len(ood) == 60
    assert not {_key(e) for e in train} & {_key(e) for e in test}
    # a split does not depend on how many problems the others have, nor train on test's seed
    other = arithmetic_task(n=200, seed=1).split("train")
    assert not {_key(e) for e in other} & {_key(e) for e in test}
    assert [e.record() for e in arithmetic_task(n=5).split("test")] == [e.record() for e in test.examples[:5]]
    assert min(len(e.steps) for e in ood) >= 4 > max(len(e.steps) for e in train)
    assert len({e.id for e in t}) == len(t)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n": 0}, r"arithmetic n=0"), ({"splits": ("dev",)}, r"arithmetic splits \['dev'\]"),
     ({"mistake_rate": 1.5}, r"mistake_rate=1.5")],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(TaskError, match=match):
        arithmetic_task(**kwargs)


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("7 + 5 = 12\n12 - 3 = 9\nAnswer: 9", "9"),
        ("Answer: 1,200 apples", "1200"),
        (" 9\n\nLater: 3 + 4 = 7", "9"),  # a continuation after the cue
        ("So he has 7 + 5 = 12 apples, then 12 - 3 = 9.", "9"),  # no cue: the last number
        ("1. 7 + 5 = 12\n2. 12 - 3 = 9", "9"),  # a numbered list is not a continuation (smollm2)
        ("42.\n", "42"),
        ("Answer: none", None),
        ("I cannot tell.", None),
    ],
)
def test_the_extractor_on_hand_written_responses(response, answer):
    assert NumberAnswer()(response) == answer


def test_accuracy_on_gold_and_wrong_responses():
    t = arithmetic_task(n=4).split("test")
    gold = [t.solution(ex) for ex in t]
    assert t.accuracy(gold) == 1.0
    assert t.accuracy([t.solution(ex, with_checks=True) for ex in t]) == 1.0
    wrong = [g.rsplit(" ", 1)[0] + " 1000" for g in gold]
    assert t.accuracy(wrong) == 0.0
    assert t.split_steps(gold[0]) == list(t.examples[0].steps)


def test_the_mistake_maker_changes_exactly_one_steps_result():
    t = arithmetic_task(n=20).split("test")
    for ex in t:
        for i in range(len(ex.steps)):
            out = t.mistake_maker(ex, list(ex.steps), i)
            changed = [j for j, (a, b) in enumerate(zip(ex.steps, out, strict=True)) if a != b]
            assert changed == [i]
            a, sign, b, c = EQ.match(out[i]).groups()
            old = EQ.match(ex.steps[i]).groups()
            assert (a, sign, b) == old[:3] and int(c) != int(old[3]) and int(c) >= 0
        assert t.mistake_maker(ex, list(ex.steps), 0) == t.mistake_maker(ex, list(ex.steps), 0)
    ex = t.examples[0]
    assert ResultMistake()(ex, ["no numbers here"], 0) is None
    with pytest.raises(TaskError, match=r"step index 5 outside 0\.\.1"):
        ResultMistake()(ex, ["a", "b"], 5)


def test_the_paraphraser_says_the_same_in_words_and_back():
    ex = Example("a", "q", "9", ("7 + 5 = 12", "12 - 3 = 9"))
    words = VerbalParaphrase()(ex, list(ex.steps))
    assert words == ["7 plus 5 is 12", "12 minus 3 is 9"]
    assert VerbalParaphrase()(ex, words) == list(ex.steps)
    assert VerbalParaphrase()(ex, ["nothing to say"]) is None


def test_the_verbalising_solution_checks_every_step_and_catches_seeded_mistakes():
    t = arithmetic_task(n=100).split("train")
    texts = [t.solution(ex, with_checks=True) for ex in t]
    assert texts == [t.solution(ex, with_checks=True) for ex in t], "seeded"
    caught = [s for s in texts if "Wait, let me check:" in s]
    assert 15 <= len(caught) <= 45, "about mistake_rate=0.3 of the problems"
    for ex, text in zip(t, texts, strict=True):
        lines = text.splitlines()
        assert lines[-1] == f"Answer: {ex.answer}" and len(lines) == len(ex.steps) + 1
        for line, step in zip(lines[:-1], ex.steps, strict=True):
            assert line in (f"{step}. Let me check: {step}. Correct.",) or (
                line.endswith(f"Wait, let me check: {step}.") and not line.startswith(f"{step}.")
            )
    never = CheckedSolution(mistake_rate=0.0)
    assert all("Wait" not in never(ex, True) for ex in t)
    assert never(t.examples[0], False) == t.solution(t.examples[0])
