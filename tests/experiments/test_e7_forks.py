"""Finding 7's genuine forks, read from responses in the current trace format (look-ahead checks
with ``:`` and ``D k``, retracted mistakes followed by ``BACK > node ;``)."""

from experiments.e7_forking import _genuine_forks
from interp.organism.validator import validate_trace
from interp.organism.world import World, WorldConfig

# n0 -> n1 n2 n5, n1 -> n3 n4, n2 -> n3 n5, n3 -> n0 n4, n4 -> n0 n5, n5 -> n0 n1
ADJ = [[1, 2, 5], [3, 4], [3, 5], [0, 4], [0, 5], [0, 1]]


def world() -> World:
    return World(WorldConfig(n_nodes=6, max_id_dist=3, max_ood_dist=4), ADJ, {"test_id": []}, [0] * 6)


def flagged(w: World, start: int, goal: int, text: str) -> list[int]:
    words = text.split()
    assert validate_trace(w, start, goal, words).valid  # the hand-written response is well-formed
    return [i for i, f in enumerate(_genuine_forks(w, start, goal, words)) if f]


def test_a_retracted_mistake_and_its_correction_are_choices_at_the_same_node():
    w = world()
    # from n0 to n3, n1 and n2 both lie on a shortest path (a genuine fork), n5 does not
    assert w.good_moves(0, 3) == [1, 2] and w.good_moves(1, 3) == [3]
    text = (
        "n0 : n1 n2 n5 > n5 WAIT CHECK n5 : n0 n1 D 2 BAD BACK > n1 WAIT CHECK n1 : n3 n4 D 1 OK ; "
        "n1 : n3 n4 > n3 ; A n0 n1 n3 E"
    )
    # word 6 (the mistake n5) and word 18 (n1 after BACK >) are choices at n0; the check's
    # look-ahead (n5 : n0 n1 D 2) holds no choice; word 34 (n3) is the only move from n1
    assert flagged(w, 0, 3, text) == [6, 18]


def test_the_current_node_follows_the_steps_past_a_check():
    w = world()
    # from n4 to n3: n0 and n5 are both 2 moves away (a fork without a wrong neighbour: no
    # check); then n0 is a fork again (n1, n2; n5 is wrong: a check); n2 has one good move
    assert w.good_moves(4, 3) == [0, 5] and w.good_moves(2, 3) == [3]
    text = (
        "n4 : n0 n5 > n0 ; n0 : n1 n2 n5 > n2 WAIT CHECK n2 : n3 n5 D 1 OK ; n2 : n3 n5 > n3 ; "
        "A n4 n0 n2 n3 E"
    )
    assert flagged(w, 4, 3, text) == [5, 13]
