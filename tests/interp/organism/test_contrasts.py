"""Matched contrasts on organism traces: exact positions on hand-written sequences, refusals."""

import pytest

from interp.organism.contrasts import (
    ContrastError,
    EmptyContrastError,
    check_vs_commit,
    encode_words,
    model_traces,
    parse_moves,
    reflection_vs_execution,
    training_traces,
    wrong_vs_good,
)
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.world import World, WorldConfig

# A hand-made world, goal n5: from n0 (3 moves away) only n1 is good (n2 is a detour); from n1
# (2 away) only n3 is good (n4 goes back); from n3 the goal is one move away (a certain step);
# from n2 (4 away) both neighbours are good.
ADJ = [[1, 2], [3, 4], [0, 4], [0, 5], [0, 1], [0, 1]]

# Word indices are written beside each sequence; each test also checks the word found there.
CHECKED = (  # n1 checked OK (9), n4 checked BAD (25), correction n3 (37), certain move n5 (44)
    "Q n0 n5 T n0 : n1 n2 > n1 WAIT CHECK n1 : n3 n4 D 2 OK ; "
    "n1 : n3 n4 > n4 WAIT CHECK n4 : n0 n1 D 3 BAD BACK > n3 ; n3 : n0 n5 > n5 ; A n0 n1 n3 n5 E"
)
PLAIN = "Q n0 n5 T n0 : n1 n2 > n1 ; n1 : n3 n4 > n3 ; n3 : n0 n5 > n5 ; A n0 n1 n3 n5 E"  # 9, 16, 23
# a wrong move n2, unchecked (9), then n4 at a step with no wrong neighbour (16)
DETOUR = "Q n0 n5 T n0 : n1 n2 > n2 ; n2 : n0 n4 > n4 ;"


@pytest.fixture(scope="module")
def small_world() -> World:
    cfg = WorldConfig(n_nodes=6, out_degree=2, max_id_dist=4, max_ood_dist=5)
    return World(cfg, ADJ, {"train": [(0, 5)]}, [0] * 6)


def words_at(seq: str, positions) -> list[str]:
    ws = seq.split()
    return [ws[p] for p in positions]


def test_parse_moves_reads_verdicts_and_corrections():
    moves = parse_moves(CHECKED.split())
    assert [(m.index, m.head, m.node, m.next_word, m.verdict, m.correction) for m in moves] == [
        (9, 0, 1, "WAIT", "OK", False),
        (25, 1, 4, "WAIT", "BAD", False),
        (37, 1, 3, ";", None, True),
        (44, 3, 5, ";", None, False),
    ]
    assert {m.goal for m in moves} == {5}


def test_check_vs_commit_exact_positions_without_world():
    c = check_vs_commit([CHECKED, PLAIN, DETOUR])
    assert c.positive == ((9,), (), ())
    assert c.negative == ((44,), (9, 16, 23), (9, 16))  # the correction (37) is never used
    assert (c.n_positive, c.n_negative) == (1, 6)
    assert words_at(CHECKED, c.positive[0]) == ["n1"]
    assert words_at(PLAIN, c.negative[1]) == ["n1", "n3", "n5"]


def test_check_vs_commit_with_world_keeps_good_moves_at_uncertain_steps(small_world):
    c = check_vs_commit([CHECKED, PLAIN, DETOUR], world=small_world)
    # n5 from n3 is a certain step, n2 from n0 a wrong move, n4 from n2 a step with no wrong neighbour
    assert c.positive == ((9,), (), ())
    assert c.negative == ((), (9, 16), ())
    assert c.meta["filter"] == "good moves at uncertain steps" and c.meta["n_negative"] == 2


def test_wrong_vs_good_by_verdict_and_by_world(small_world):
    c = wrong_vs_good([CHECKED, PLAIN, DETOUR])
    assert c.positive == ((25,), (), ()) and c.negative == ((9,), (), ())
    assert words_at(CHECKED, [25, 9]) == ["n4", "n1"]
    w = wrong_vs_good([CHECKED, PLAIN, DETOUR], world=small_world, by="world")
    assert w.positive == ((25,), (), (9,))  # n4 from n1 (caught), n2 from n0 (not caught)
    assert w.negative == ((9,), (9, 16), ())  # good moves at uncertain steps; correction excluded


def test_reflection_vs_execution_exact_positions_without_world():
    c = reflection_vs_execution([CHECKED, PLAIN, DETOUR])
    # a check that ends BAD BACK (25) is a positive too (a reflection turning into a transition);
    # the correction after it (37) is never used
    assert c.positive == ((9, 25), (), ())
    assert c.negative == ((44,), (9, 16, 23), (9, 16))
    assert c.meta["n_transition"] == 1 and c.name == "reflection_vs_execution"
    assert words_at(CHECKED, c.positive[0]) == ["n1", "n4"]
    assert [CHECKED.split()[p + 1] for p in c.positive[0]] == ["WAIT", "WAIT"]
    assert [PLAIN.split()[p + 1] for p in c.negative[1]] == [";", ";", ";"]


def test_reflection_vs_execution_with_world_keeps_uncertain_steps(small_world):
    c = reflection_vs_execution([CHECKED, PLAIN, DETOUR], world=small_world)
    # dropped: the certain steps from n3 (44, 23), the step from n2 with no wrong neighbour (16 of
    # DETOUR); kept unlike check_vs_commit: the move checked BAD (25) and the unchecked wrong move (9)
    assert c.positive == ((9, 25), (), ())
    assert c.negative == ((), (9, 16), (9,))
    assert c.meta["filter"] == "moves at uncertain steps" and c.meta["n_transition"] == 1
    ref = check_vs_commit([CHECKED, PLAIN, DETOUR], world=small_world)
    assert ref.positive == ((9,), (), ()) and ref.negative == ((), (9, 16), ())  # unchanged


def test_reflection_vs_execution_on_a_hand_written_trace():
    # 0 Q 1 n0 2 n5 3 T | 4 n0 5 : 6 n1 7 n2 8 > 9 n2 10 WAIT ... 16 3 17 BAD 18 BACK 19 > 20 n1
    # 21 ; 22 n1 23 : 24 n3 25 n4 26 > 27 n3 28 WAIT ... 35 OK 36 ; 37 n3 38 : 39 n5 40 > 41 n5
    # 42 ; 43 A ...
    seq = (
        "Q n0 n5 T n0 : n1 n2 > n2 WAIT CHECK n2 : n4 D 3 BAD BACK > n1 ; "
        "n1 : n3 n4 > n3 WAIT CHECK n3 : n5 D 1 OK ; n3 : n5 > n5 ; A n0 n1 n3 n5 E"
    )
    c = reflection_vs_execution([seq])
    assert c.positive == ((9, 27),) and c.negative == ((41,),)
    tok = WordTokenizer(organism_vocab(6))
    ids = reflection_vs_execution(encode_words([seq], tok), tokenizer=tok, offset=-1)
    assert ids.positive == ((8, 26),) and ids.negative == ((40,),)  # the '>' before each node
    with pytest.raises(
        EmptyContrastError, match="has no positive position .node token of a move followed by WAIT"
    ):
        reflection_vs_execution([PLAIN])


def test_ids_with_tokenizer_and_offset_give_the_same_positions():
    tok = WordTokenizer(organism_vocab(6))
    rows = encode_words([CHECKED, PLAIN], tok)
    assert check_vs_commit(rows, tokenizer=tok).positive == check_vs_commit([CHECKED, PLAIN]).positive
    before = check_vs_commit([CHECKED, PLAIN], offset=-1)
    assert words_at(CHECKED, before.positive[0]) == [">"]
    assert before.negative[1] == (8, 15, 22)


def test_empty_side_is_refused():
    with pytest.raises(EmptyContrastError, match="has no positive position .moves followed by WAIT"):
        check_vs_commit([PLAIN, DETOUR])
    with pytest.raises(EmptyContrastError, match="has no positive position .moves checked BAD"):
        wrong_vs_good([PLAIN])
    with pytest.raises(EmptyContrastError, match="got no sequences"):
        check_vs_commit([])


def test_bad_settings_are_refused(small_world):
    tok = WordTokenizer(organism_vocab(6))
    with pytest.raises(ContrastError, match="needs world="):
        wrong_vs_good([CHECKED], by="world")
    with pytest.raises(ContrastError, match="need tokenizer="):
        check_vs_commit(encode_words([CHECKED], tok))
    # under the test-time type checker a bad Literal or int is a TypeCheckError (a TypeError)
    # first; the function's own check is run unwrapped below
    with pytest.raises((ContrastError, TypeError), match="path"):
        wrong_vs_good([CHECKED], world=small_world, by="path")
    raw_wrong = getattr(wrong_vs_good, "__wrapped__", wrong_vs_good)
    raw_check = getattr(check_vs_commit, "__wrapped__", check_vs_commit)
    with pytest.raises(ContrastError, match="by='path'; expected 'verdict' or 'world'") as err:
        raw_wrong([CHECKED], world=small_world, by="path")
    assert "\n" not in str(err.value)
    with pytest.raises(ContrastError, match="offset=0.5; expected an int"):
        raw_check([CHECKED], offset=0.5)


def test_training_traces_contrast_positions_hold_the_described_tokens(world):
    traces = training_traces(world, 60, seed=1)
    assert training_traces(world, 60, seed=1) == traces  # seeded
    c = check_vs_commit(traces, world=world)
    assert c.n_positive > 0 and c.n_negative > 0
    for ws, pos, neg in zip(traces, c.positive, c.negative, strict=True):
        assert all(ws[p - 1] == ">" and ws[p + 1] == "WAIT" for p in pos)
        assert all(ws[p - 1] == ">" and ws[p + 1] == ";" and ws[p - 2] != "BACK" for p in neg)
    r = reflection_vs_execution(traces, world=world)
    for ws, pos, neg, checked in zip(traces, r.positive, r.negative, c.positive, strict=True):
        assert all(ws[p - 1] == ">" and ws[p + 1] == "WAIT" and ws[p - 2] != "BACK" for p in pos)
        assert all(ws[p - 1] == ">" and ws[p + 1] == ";" and ws[p - 2] != "BACK" for p in neg)
        assert set(checked) <= set(pos)  # every check that passes, and those ending BAD BACK
    assert r.meta["n_transition"] == r.n_positive - c.n_positive > 0
    w = wrong_vs_good(traces, world=world, by="world")
    v = wrong_vs_good(traces)
    assert w.n_positive == v.n_positive  # training's mistakes are exactly the moves its checks mark BAD
    with pytest.raises(ContrastError, match="n=0"):
        training_traces(world, 0)


def test_model_traces_prefix_the_prompt(world):
    from interp.organism.train import ModelShape, build_model

    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    model = build_model(ModelShape(1, 16, 2, 32, 32), len(tok), seed=0)
    problems = world.split("test_id")[:2]
    out = model_traces(model, tok, problems, max_new_tokens=4)
    assert [o[:4] for o in out] == [f"Q n{s} n{g} T".split() for s, g in problems]
    assert all(4 < len(o) <= 8 for o in out)
