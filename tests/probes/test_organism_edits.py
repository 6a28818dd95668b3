"""probes.organism_edits: trace splitting, mistakes the validator rejects, paraphrases it accepts."""

import numpy as np
import pytest

from interp.organism.traces import answer_words, sample_path, trace_steps
from interp.organism.validator import validate_trace
from interp.organism.world import make_world
from probes.faithfulness import FaithfulnessConfig, faithfulness_battery
from probes.organism_edits import OrganismMistake, OrganismParaphrase, organism_steps, organism_task

WORLD = make_world()


def traces(check_rate: float, mistake_rate: float, n: int = 60, seed: int = 0):
    """Valid planted traces of train problems: ``(problem, steps, answer words)``."""
    rng = np.random.default_rng(seed)
    out = []
    for s, g in WORLD.split("train")[:n]:
        path = sample_path(WORLD, s, g, rng)
        words, _ = trace_steps(WORLD, path, rng, check_rate, mistake_rate)
        tail = ["A", *answer_words(path)]
        assert validate_trace(WORLD, s, g, words + tail).valid
        out.append(((s, g), organism_steps(words + tail), tail))
    return out


def flat(steps):
    return [w for s in steps for w in s.split()]


def test_steps_split_at_semicolons_before_the_answer():
    words = "n5 : n9 n17 > n9 WAIT CHECK n9 : n1 n3 BAD BACK > n17 ; n17 : n4 n22 > n22 ; A 2 n5 n17 n22 E"
    assert organism_steps(words.split()) == [
        "n5 : n9 n17 > n9 WAIT CHECK n9 : n1 n3 BAD BACK > n17 ;",
        "n17 : n4 n22 > n22 ;",
    ]
    assert organism_steps("n5 : n9 > A 1 n5 n9 E".split()) == ["n5 : n9 >"]  # unterminated step kept


@pytest.mark.parametrize(
    "words, match",
    [
        ([], "empty trace"),
        ("n5 : n9 n17 > n17 ;".split(), "without the answer marker"),
        ("A 1 n5 n9 E".split(), "no chain of thought"),
    ],
)
def test_bad_traces_are_refused(words, match):
    with pytest.raises(ValueError, match=match):
        organism_steps(words)


def test_every_mistake_is_rejected_by_the_validator_at_its_step():
    make = OrganismMistake(WORLD)
    n = 0
    for (s, g), steps, tail in traces(0.4, 0.3):
        for i in range(len(steps)):
            bad = make((s, g), steps, i)
            check = validate_trace(WORLD, s, g, flat(bad) + tail)
            assert not check.steps_valid and f"step {i + 1} " in check.error, check.error
            assert bad[:i] == steps[:i] and bad[i + 1 :] == steps[i + 1 :]
            n += 1
    assert n > 100


def test_mistake_falls_back_to_a_non_neighbour_when_every_move_is_good():
    make = OrganismMistake(WORLD)
    cases = [
        (u, g)
        for u in range(WORLD.n_nodes)
        for g in range(WORLD.n_nodes)
        if WORLD.dist(u, g) > 1 and len(WORLD.good_moves(u, g)) == len(WORLD.neighbours(u))
    ]
    assert cases, "the default world has a node whose every neighbour leads on a shortest path"
    u, g = cases[0]
    nb = " ".join(f"n{v}" for v in WORLD.neighbours(u))
    (bad,) = make((u, g), [f"n{u} : {nb} > n{WORLD.good_moves(u, g)[0]} ;"], 0)
    wrong = int(bad.split()[-2][1:])
    assert wrong not in WORLD.neighbours(u) and wrong != u
    assert "wrong edge" in validate_trace(WORLD, u, g, bad.split() + ["A"]).error
    assert make((u, g), ["n3 > ;"], 0) is None  # unparsable step


def test_paraphrase_is_valid_keeps_the_path_and_toggles_every_check():
    para = OrganismParaphrase(WORLD)
    changed = 0
    for (s, g), steps, tail in traces(0.4, 0.3, seed=1):
        out = para((s, g), steps)
        check = validate_trace(WORLD, s, g, flat(out) + tail)
        assert check.valid, check.error  # same path, so the original answer still matches it
        for before, after in zip(steps, out, strict=True):
            marked = any(m in before.split() for m in ("WAIT", "OK", "BAD"))
            assert ("WAIT" in after.split()) != marked
        changed += out != steps
    assert changed > 50
    problem, clean, _ = traces(0.0, 0.0)[0]
    once = para(problem, clean)
    assert all("WAIT" in s for s in once) and para(problem, once) == clean  # toggling twice is the identity


def test_organism_task_and_battery_end_to_end(tiny_zoo):
    from interp.models import Model, load_model
    from interp.organism.store import load_organism, load_world

    world, tok = load_world(tiny_zoo)
    module, _ = load_organism("base", tiny_zoo)
    model = load_model(module)  # a bare HookedTransformer: the tokenizer comes as an argument
    problems = world.split("test_id")[:16]
    task = organism_task(model, world, tok, problems)
    assert task.meta["n_generated"] == 16 and task.n_problems + task.meta["n_skipped"] == 16
    assert task.answer_cue == "A" and task.stop == "E" and task.filler == ";"
    assert all(p.startswith("Q ") and p.endswith(" T") for p in task.prompts)
    r = faithfulness_battery(Model(module, tok, "organism:base"), task, FaithfulnessConfig())
    assert r.early is not None and r.filler is not None and r.filler.n_problems == task.n_problems
    assert r.meta["task"]["n_generated"] == 16
    with pytest.raises(ValueError, match="outside 0"):
        organism_task(model, world, tok, [(0, 999)])
    with pytest.raises(ValueError, match="no problems"):
        organism_task(model, world, tok, [])
    with pytest.raises((ValueError, TypeError), match="on_bad_trace"):  # TypeError: the test-time type check
        organism_task(model, world, tok, problems, on_bad_trace="ignore")


def test_organism_task_reports_traces_without_an_answer(tiny_zoo):
    from interp.organism.store import load_organism, load_world

    world, tok = load_world(tiny_zoo)
    module, _ = load_organism("base", tiny_zoo)
    problems = world.split("test_id")[:4]
    # a budget of 2 tokens leaves no room for the answer marker
    with pytest.raises(ValueError, match="no usable trace"):
        organism_task(module, world, tok, problems, max_new_tokens=2)
    with pytest.raises(
        ValueError, match=r"problem 'Q n\d+ n\d+ T': trace (without the answer marker|has no chain)"
    ):
        organism_task(module, world, tok, problems, max_new_tokens=2, on_bad_trace="raise")
