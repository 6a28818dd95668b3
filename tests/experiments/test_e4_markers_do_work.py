"""Do the organism's markers do work? Forbidding them, difficulty, from hand-made per-problem lists."""

import pytest

from experiments.e4_markers import forbidding_markers, markers_by_difficulty


def test_markers_by_distance_and_the_rise_from_the_shortest_to_the_longest():
    distances = [1] * 12 + [2] * 12 + [4] * 12
    markers = [0] * 12 + [1] * 12 + [3, 5] * 6
    solved = [1] * 12 + [1, 0] * 6 + [0] * 12
    d = markers_by_difficulty(distances, markers, solved)
    assert list(d["by_distance"]) == ["1", "2", "4"] and (d["shortest"], d["longest"]) == (1, 4)
    assert d["by_distance"]["2"]["n"] == 12 and d["by_distance"]["2"]["markers"]["estimate"] == 1.0
    assert d["by_distance"]["2"]["solve_rate"]["estimate"] == 0.5
    rise = d["longest_minus_shortest"]
    assert rise["estimate"] == 4.0 and rise["low"] > 0 and rise["n"] == 24
    # one distance only: nothing to compare
    assert markers_by_difficulty([3] * 12, [1] * 12)["longest_minus_shortest"] is None
    with pytest.raises(ValueError, match="12 distances but 11 marker counts"):
        markers_by_difficulty([1] * 12, [0] * 11)


def test_forbidding_markers_pairs_problems_after_averaging_their_samples():
    n, k = 12, 4
    per = {
        "problems_id": [[0, 1]] * n,
        "solved_id": [1, 0] * (n // 2),
        "solved_id_no_markers": [0] * n,
        # per problem: 3 of 4 samples solved with markers, 1 of 4 without
        "solved_id_sampled": [1, 1, 1, 0] * n,
        "solved_id_sampled_no_markers": [0, 1, 0, 0] * n,
    }
    f = forbidding_markers(per)
    assert f["samples_per_problem"] == k
    assert f["sampled"]["n"] == n and f["sampled"]["estimate"] == 0.5  # paired over problems, not samples
    assert f["greedy"]["estimate"] == 0.5 and f["greedy"]["n"] == n
    # a card without sampled lists (samples=0): only the greedy pair
    none = forbidding_markers({k: v for k, v in per.items() if "sampled" not in k})
    assert none["sampled"] is None and none["samples_per_problem"] is None and none["greedy"] is not None
    # sampled lists that do not split into whole problems are refused
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        forbidding_markers(
            {**per, "solved_id_sampled": [1] * (n * k + 1), "solved_id_sampled_no_markers": [1] * (n * k + 1)}
        )
