"""Finding 8's verdict from a hand-made result: only against the matched forward-only control."""

from experiments.e8_backward import claim

N = 40
HALF = [1, 0] * 20


def row(solved):
    return {"solve_rate_id": sum(solved) / N, "per_problem": {"solved_id": solved, "solved_ood": solved}}


def result(backward, control=None):
    models = {"base": row(HALF), "sft-clean": row([0] * N), "backward": row(backward)}
    if control is not None:
        models["forward-only"] = row(control)
    return {"models": models}


def test_without_the_matched_control_it_is_not_testable():
    c = claim(result([1] * N))  # far above the unmatched sft-clean, which does not count
    assert c.verdict == "not testable"
    assert "no forward-only in the zoo; sft-clean differs in data and steps" in c.explanation
    assert "backward - sft-clean 1.00 [1.00, 1.00]" in c.organism


def test_no_gain_over_the_matched_control_does_not_reproduce():
    c = claim(result(HALF, HALF))
    assert c.verdict == "not reproduced" and "a matched forward-only control" in c.precondition


def test_a_gain_over_the_matched_control_reproduces():
    c = claim(result([1] * N, HALF))
    assert c.verdict == "reproduced" and "backward minus forward-only 0.50 [" in c.explanation
