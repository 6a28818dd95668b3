"""Finding 6's verdict from a hand-made result: the tune must raise accuracy, then pass@k crosses."""

from claim_fixtures import vs_parent

from experiments.e6_elicitation import claim
from experiments.elicit_methods import _table

N, K = 40, 16
HALF = [1, 0] * 20


def passk(at_1, at_n, fmt="cot"):
    return {
        "format": fmt,
        "pass_at_k": {"1": sum(at_1) / N, str(K): sum(at_n) / N},
        "per_problem": {"pass_at_1": at_1, f"pass_at_{K}": at_n},
    }


def not_testable_steering():
    return {
        "target": "sft-clean",
        "n_problems": N,
        "testable": False,
        "precondition": {"name": "sft-clean has fewer markers than base", "held": False, "detail": "0.00"},
        "brings_back": [],
    }


def steering_with(targeted_recovered):
    def r(markers, recovered):
        return {
            "markers": markers,
            "solved": HALF,
            "answer": HALF,
            "flagged": [0] * N,
            "recovered": recovered,
            "facts": [1] * N,
        }

    results = {
        "base": r([6] * N, [1] * N),
        "unsteered": r([0] * N, [0] * N),
        "targeted": r([2] * N, targeted_recovered),
        "control": r([0] * N, [0] * N),
    }
    table = _table(results, {})
    return {
        "target": "sft-clean",
        "n_problems": N,
        "testable": True,
        "precondition": {"name": "sft-clean has fewer markers than base", "held": True, "detail": "-6"},
        "table": table,
        "brings_back": [row["setting"] for row in table if row["brings_back"]],
        "settings": {"control": {"copies": "targeted"}},
    }


def result(raised, tune_1, tune_n, base_1=None, base_n=None, steering=None):
    return {
        "pass_at_k": {
            "base": passk(base_1 or [0.3] * N, base_n or [1.0] * N),
            "rl-answer": passk(tune_1, tune_n),
            "sft-answer": passk([0.5] * N, [0.5] * N, "answer"),
        },
        "cot_decoding": {"base": {"accuracy_greedy": 0.5, "accuracy_best": 0.6}},
        "steering": steering or not_testable_steering(),
        "n_samples": K,
        "vs_parent": {"rl-answer": vs_parent(raised)},
    }


def test_a_tune_that_did_not_raise_accuracy_is_not_testable():
    c = claim(result(False, [0.9] * N, [0.5] * N))
    assert c.verdict == "not testable" and "rl-answer raised accuracy over base" in c.explanation


def test_no_crossover_beyond_the_intervals_does_not_reproduce():
    c = claim(result(True, [0.3] * N, [1.0] * N))
    assert c.verdict == "not reproduced" and "rl-answer wins pass@1: no" in c.explanation


def test_tune_wins_pass_at_1_and_base_wins_at_large_k_reproduces():
    assert claim(result(True, [0.9] * N, [0.5] * N)).verdict == "reproduced"
    c = claim(result(True, [0.9] * N, [1.0] * N))  # the tune never falls behind at large k
    assert c.verdict == "partly" and f"base wins pass@{K}: no" in c.explanation


def test_the_steering_comparison_is_told_beside_the_verdict_and_never_carries_it():
    c = claim(result(True, [0.3] * N, [1.0] * N, steering=steering_with([1] * N)))
    assert c.verdict == "not reproduced" and "brought back by targeted" in c.organism
    assert "markers 2.00 [2.00, 2.00], recovery 1.00 [1.00, 1.00]" in c.organism
    hollow = claim(result(True, [0.3] * N, [1.0] * N, steering=steering_with([0] * N)))
    assert hollow.verdict == c.verdict and "brought back by no method" in hollow.organism
    # the pass@k precondition fails: not testable, and the steering sentence still reported
    c = claim(result(False, [0.9] * N, [0.5] * N))
    assert c.verdict == "not testable"
    assert "not testable (sft-clean has fewer markers than base failed" in c.organism
