"""Finding 9's natural length: solve rate against steps and tokens within each distance."""

import pytest

from experiments.e9_cot_length import TOKEN_BINS, longer_minus_shorter, natural_by_distance

DIST = [2, 2, 2, 3, 3]
STEPS = [2, 2, 2, 3, 4]
TOKENS = [10, 20, 30, 15, 15]
SOLVED = [True, True, False, True, False]


def test_steps_and_tokens_are_binned_within_each_distance():
    out = natural_by_distance(DIST, STEPS, TOKENS, SOLVED)
    assert sorted(out) == ["2", "3"] and out["2"]["n"] == 3 and out["3"]["n"] == 2
    # distance 2: every valid-length trace has 2 steps, but the tokens differ
    assert out["2"]["steps"]["counts"] == [3] and out["2"]["steps"]["accuracy"] == [pytest.approx(2 / 3)]
    assert out["2"]["tokens"]["edges"] == [10.0, 20.0, 30.0, 31.0]
    assert out["2"]["tokens"]["accuracy"] == [1.0, 1.0, 0.0]
    assert out["3"]["steps"] == {"edges": [3.0, 4.0, 5.0], "counts": [1, 1], "accuracy": [1.0, 0.0]}
    assert out["3"]["tokens"] == {"edges": [15.0, 16.0], "counts": [2], "accuracy": [0.5]}


def test_many_token_lengths_fall_into_equal_width_bins():
    tokens = [10, 12, 14, 16, 18, 20, 30]
    out = natural_by_distance([1] * 7, [1] * 7, tokens, [1, 1, 1, 0, 0, 0, 1])
    b = out["1"]["tokens"]
    assert len(b["counts"]) == TOKEN_BINS and sum(b["counts"]) == 7
    assert b["edges"][0] == 10.0 and b["edges"][-1] == 30.0  # the last bin is closed: 30 is in it
    assert b["counts"][-1] == 1 and b["accuracy"][-1] == 1.0


def test_longer_minus_shorter_splits_at_each_distances_median():
    # distance 2: median 20, only the 30-token trace is longer (unsolved); distance 3: both 15
    # tokens, none longer. Longer [0] vs shorter [1, 1, 1, 0]: -0.75
    iv = longer_minus_shorter(DIST, TOKENS, SOLVED)
    assert iv["estimate"] == pytest.approx(-0.75)
    # an even count uses the mean of the two middle lengths
    iv = longer_minus_shorter([1] * 4, [10, 20, 30, 40], [0, 0, 1, 1])
    assert iv["estimate"] == pytest.approx(1.0)
    assert longer_minus_shorter([1, 1], [5, 5], [1, 0]) is None  # nothing is longer: no comparison


def test_check_places_against_the_trained_format():
    from experiments.e9_cot_length import check_places
    from interp.organism.world import World, WorldConfig

    # n0 -> n1 n2 n5, n1 -> n3 n4, n2 -> n3 n5, n3 -> n0 n4, n4 -> n0 n5, n5 -> n0 n1
    adj = [[1, 2, 5], [3, 4], [3, 5], [0, 4], [0, 5], [0, 1]]
    w = World(WorldConfig(n_nodes=6, max_id_dist=3, max_ood_dist=4), adj, {"test_id": []}, [0] * 6)
    assert w.uncertain(0, 3) and not w.uncertain(1, 3)  # n0: n5 is wrong; n1: one move away
    trained = "n0 : n1 n2 n5 > n5 WAIT CHECK n5 : n0 n1 D 2 BAD BACK > n1 ; n1 : n3 n4 > n3 ; A n0 n1 n3 E"
    assert check_places(w, 0, 3, trained.split()) == (1, 0)
    # forced in the trained format by closes_a_move: after BACK > n1, and onto the goal n3
    forced = (
        "n0 : n1 n2 n5 > n5 WAIT CHECK n5 : n0 n1 D 2 BAD BACK > n1 WAIT CHECK n1 : n3 n4 D 1 OK ; "
        "n1 : n3 n4 > n3 WAIT CHECK n3 : n0 n4 D X OK ; A n0 n1 n3 E"
    )
    assert check_places(w, 0, 3, forced.split()) == (1, 2)
    # the format-break control: a check after the last ";" (and one after the answer)
    broke = "n0 : n1 n2 n5 > n1 ; n1 : n3 n4 > n3 ; WAIT CHECK n3 ; A n0 n1 n3 E WAIT"
    assert check_places(w, 0, 3, broke.split()) == (0, 2)
    # a forced check of the first move where the model had none: where training places it
    assert check_places(w, 0, 3, "n0 : n1 n2 n5 > n1 WAIT CHECK n1 : n3 n4 D 1 OK ;".split()) == (1, 0)
