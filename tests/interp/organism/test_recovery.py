"""interp.organism.recovery: injected moves, the flag rule, and rates against hand counts."""

import numpy as np
import pytest

import interp.organism.recovery as rec
from interp.organism.recovery import RecoveryError, flags_move, injected_problems, recovery
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.traces import sample_path
from interp.organism.train import ModelShape, build_model
from interp.organism.validator import validate_trace
from interp.organism.world import make_world, node_name


@pytest.fixture(scope="module")
def world():
    return make_world()


def test_injected_moves_sit_at_the_first_uncertain_step(world):
    problems = world.split("test_id") + world.split("train")
    wrong = injected_problems(world, problems, "wrong", seed=3)
    good = injected_problems(world, problems, "good", seed=3)
    assert wrong and len(wrong) == len(good)
    for w, g in zip(wrong, good, strict=True):
        assert (w.start, w.goal, w.step) == (g.start, g.goal, g.step)
        assert world.uncertain(w.step, w.goal)
        assert w.injected in world.neighbours(w.step) and w.injected not in world.good_moves(w.step, w.goal)
        assert g.injected in world.good_moves(g.step, g.goal)
        assert w.prompt.split()[-2:] == [">", node_name(w.injected)]


def test_a_good_prefix_completes_to_a_valid_trace(world):
    from interp.organism.traces import answer_words, trace_steps

    for p in injected_problems(world, world.split("train"), "good", seed=0)[:20]:
        words = p.prompt.split()
        rng = np.random.default_rng(0)
        rest = [p.injected] + sample_path(world, p.injected, p.goal, rng)[1:]
        tail, _ = trace_steps(world, [p.step, *rest], rng)
        # trace_steps restates the node and its neighbours first: drop what the prompt already has
        tail = tail[tail.index(">") + 2 :]
        full = words + tail + ["A", *answer_words(_path_from(words, world) + rest)]
        check = validate_trace(world, p.start, p.goal, full[len(("Q", "s", "g", "T")) :])
        assert check.valid, (p, full, check)


def _path_from(words, world):
    """The committed nodes of a clean prefix: start, then each node after '>' before the last one."""
    from interp.organism.validator import parse_node

    nodes = [parse_node(words[1], world.n_nodes)]
    nodes += [parse_node(words[i + 1], world.n_nodes) for i, w in enumerate(words[:-2]) if w == ">"]
    return nodes


def test_the_flag_rule():
    assert flags_move("WAIT CHECK n4 : n1 n2 D 3 BAD BACK > n7 ;".split())
    assert not flags_move("WAIT CHECK n4 : n1 n2 D 1 OK ;".split())
    assert not flags_move("; n4 : n1 n2 > n7 ; A n1 n4 n7 E".split())
    assert not flags_move("WAIT CHECK n4 ; BAD".split())  # the verdict must come before the ';'
    assert not flags_move([])


def test_rates_against_hand_counts(world, monkeypatch):
    items = injected_problems(world, world.split("test_id"), "wrong")[:3]
    s0, g0 = items[0].start, items[0].goal
    right = " ".join(node_name(v) for v in sample_path(world, s0, g0, np.random.default_rng(0)))
    scripted = [
        "WAIT CHECK x : D 3 BAD BACK > n1 ; A " + right + " E",
        "; A n0 n0 E",
        "WAIT CHECK x : D 2 OK ; A n0 E",
    ]
    monkeypatch.setattr(
        rec, "respond", lambda m, t, prompts, n: [s.split() for s in scripted[: len(prompts)]]
    )
    monkeypatch.setattr(rec, "injected_problems", lambda w, p, i, s: items)
    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    res = recovery(None, tok, world, [(p.start, p.goal) for p in items])
    assert res.flagged == [1, 0, 0] and res.flag_rate == pytest.approx(1 / 3)
    assert res.recovered == [1, 0, 0]
    assert res.to_dict()["n"] == 3


def test_refusals(world):
    with pytest.raises(RecoveryError, match="injected='bad'; expected 'wrong' or 'good'"):
        injected_problems(world, world.split("test_id"), "bad")
    one_move = [(s, g) for s, g in world.split("train") if world.dist(s, g) == 1][:3]
    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    model = build_model(ModelShape(1, 16, 2, 32, 64), len(tok), seed=0)
    with pytest.raises(RecoveryError, match="none of the 3 problems has an uncertain step"):
        recovery(model, tok, world, one_move)


def test_runs_end_to_end_on_a_tiny_model(world):
    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    model = build_model(ModelShape(1, 16, 2, 32, 160), len(tok), seed=0)
    res = recovery(model, tok, world, world.split("test_id")[:8], max_new_tokens=8)
    assert len(res.flagged) == len(res.recovered) == len(res.problems) > 0
    assert all(len(r) <= 8 for r in res.responses)
