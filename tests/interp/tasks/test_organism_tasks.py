"""interp.organism.tasks: the organism's fact recall and path solving as Tasks, checked by its validator."""

import pytest

from interp.organism.tasks import (
    PathAnswer,
    ToggleChecks,
    WrongMove,
    fact_recall_task,
    organism_task,
    solve_task,
    trace_step_texts,
)
from interp.organism.validator import validate_trace
from interp.organism.world import make_world
from interp.tasks.protocol import TaskError

WORLD = make_world()


def _words(steps):
    return [w for s in steps for w in s.split()]


def test_fact_recall_reads_the_neighbours():
    t = fact_recall_task(WORLD)
    assert len(t) == WORLD.n_nodes and t.stop == "E" and t.splits == ("test",)
    ex = t.examples[5]
    assert ex.prompt == "F n5 :" and ex.answer == " ".join(f"n{v}" for v in WORLD.neighbours(5))
    assert t.correct(ex, f"{ex.answer} E") and t.correct(ex, f"F n5 : {ex.answer} E")
    assert not t.correct(ex, "n0 E") and t.extract_answer("E") is None
    assert t.split_steps(f"{ex.answer} E") == []


def test_solve_has_gold_traces_the_validator_accepts_in_every_split():
    t = solve_task(WORLD)
    assert t.splits == ("train", "rl", "test", "ood", "comp", "start")
    assert len(t.split("test")) == len(WORLD.split("test_id"))
    for ex in t.examples[::9]:
        s, g = ex.meta["start"], ex.meta["goal"]
        assert ex.prompt == f"Q n{s} n{g} T"
        for checks in (False, True):
            text = t.solution(ex, with_checks=checks)
            assert validate_trace(WORLD, s, g, text.split()).valid, text
            assert t.correct(ex, text)
        assert t.split_steps(t.solution(ex)) == list(ex.steps)


def test_solve_answers_any_shortest_path_and_reads_continuations():
    t = solve_task(WORLD, ["test_id"])
    ex = t.examples[0]
    assert t.extract_answer(f" {ex.answer} E") == ex.answer, "a continuation after the cue"
    path = ex.answer.split()
    assert not t.correct(ex, f"A {' '.join(path[:-1])} E"), "a path that stops short of the goal"
    assert not t.correct(ex, f"A {len(path) - 1} {' '.join(path)} E"), "the old move count is no node"
    assert PathAnswer(WORLD.n_nodes)("no answer here") is None
    assert t.compose(list(ex.steps)).endswith("; A")


def test_the_mistake_maker_changes_exactly_one_step_and_the_validator_rejects_it():
    t = solve_task(WORLD, ["test_id"])
    made = 0
    for ex in t:
        for i in range(len(ex.steps)):
            out = t.mistake_maker(ex, list(ex.steps), i)
            if out is None:
                continue
            made += 1
            assert [j for j, (a, b) in enumerate(zip(ex.steps, out, strict=True)) if a != b] == [i]
            s, g = ex.meta["start"], ex.meta["goal"]
            assert not validate_trace(WORLD, s, g, [*_words(out[: i + 1]), "A"]).steps_valid
    assert made > 10
    ex = t.examples[0]
    assert WrongMove(WORLD)(ex, ["not a step"], 0) is None
    with pytest.raises(TaskError, match=r"step index 3 outside"):
        t.mistake_maker(ex, ["a ;"], 3)


def test_the_paraphraser_toggles_checks_and_keeps_the_path():
    t = solve_task(WORLD, ["test_id"])
    for ex in t.examples[:20]:
        checked = t.paraphraser(ex, list(ex.steps))
        s, g = ex.meta["start"], ex.meta["goal"]
        for step, before in zip(checked, ex.steps, strict=True):
            cur = int(before.split()[0][1:])
            assert ("WAIT CHECK" in step) == WORLD.uncertain(cur, g), (before, step)
        assert t.paraphraser(ex, checked) == list(ex.steps)
        s, g = ex.meta["start"], ex.meta["goal"]
        assert validate_trace(WORLD, s, g, [*_words(checked), "A", *ex.answer.split(), "E"]).valid
    assert ToggleChecks(WORLD)(t.examples[0], ["garbage"]) is None


def test_step_texts_of_raw_responses():
    assert trace_step_texts("n1 : n2 n3 > n2 ; n2 : n4 n5 > n4") == ["n1 : n2 n3 > n2 ;", "n2 : n4 n5 > n4"]
    assert trace_step_texts("") == [] and trace_step_texts("A 1 n1 n2 E") == []


def test_unknown_names_and_options():
    with pytest.raises(TaskError, match=r"unknown organism task 'x'"):
        organism_task("x", world=WORLD)
    with pytest.raises(TaskError, match=r"organism:fact_recall takes no options"):
        organism_task("fact_recall", world=WORLD, n=3)
    with pytest.raises(TaskError, match=r"organism splits \['dev'\]"):
        organism_task("solve", world=WORLD, splits=["dev"])
