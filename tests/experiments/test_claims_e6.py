"""Finding 6's verdict from a hand-made result: the tune must raise accuracy, then pass@k crosses."""

from claim_fixtures import vs_parent

from experiments.e6_elicitation import claim

N, K = 40, 16
HALF = [1, 0] * 20


def passk(at_1, at_n, fmt="cot"):
    return {
        "format": fmt,
        "pass_at_k": {"1": sum(at_1) / N, str(K): sum(at_n) / N},
        "per_problem": {"pass_at_1": at_1, f"pass_at_{K}": at_n},
    }


def result(raised, tune_1, tune_n, base_1=None, base_n=None):
    return {
        "pass_at_k": {
            "base": passk(base_1 or [0.3] * N, base_n or [1.0] * N),
            "rl-answer": passk(tune_1, tune_n),
            "sft-answer": passk([0.5] * N, [0.5] * N, "answer"),
        },
        "cot_decoding": {"base": {"accuracy_greedy": 0.5, "accuracy_best": 0.6}},
        "steering": {"sweeps": {}},
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
