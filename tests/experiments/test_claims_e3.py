"""Finding 3's verdict from a hand-made result: correct traces must help first, then swapped ones."""

from experiments.e3_swapped_traces import claim

N = 40
HALF = [1, 0] * 20


def arm(model, correct_id, correct_ood=None):
    return {
        "model": model,
        "answer_accuracy_id": sum(correct_id) / N,
        "per_problem": {"correct_id": correct_id, "correct_ood": correct_ood or correct_id},
    }


def result(correct, swapped, none):
    return {
        "arms": {
            "correct": arm("base", correct),
            "swapped": arm("swapped", swapped),
            "no_trace_base": arm("base", none),
            "no_trace_sft": arm("sft-answer", none),
        }
    }


def test_correct_traces_that_do_not_beat_no_trace_make_it_not_testable():
    c = claim(result(HALF, HALF, HALF))
    assert c.verdict == "not testable"
    assert "correct traces beat no trace (base asked without a trace)" in c.explanation


def test_swapped_traces_no_better_than_no_trace_do_not_reproduce():
    c = claim(result([1] * N, HALF, HALF))
    assert c.verdict == "not reproduced" and "swapped: does not beat no trace" in c.explanation


def test_swapped_traces_that_beat_no_trace_and_match_correct_ones_reproduce():
    assert claim(result([1] * N, [1] * N, [0] * N)).verdict == "reproduced"
    # beating no trace but significantly below correct traces is only part of the finding
    c = claim(result([1] * N, HALF, [0] * N))
    assert c.verdict == "partly" and "significantly below correct traces" in c.explanation


def test_the_matched_no_trace_model_is_the_no_trace_arm_when_the_zoo_has_it():
    r = result([1] * N, [1] * N, [0] * N)
    r["arms"]["no_trace_model"] = arm("no-trace", [1] * N)  # as good as correct traces
    c = claim(r)
    assert c.verdict == "not testable" and "matched no-trace model" in c.explanation
