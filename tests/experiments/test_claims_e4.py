"""Finding 4's verdict from a hand-made result: base must solve OOD and tunes must raise accuracy."""

from experiments.e4_markers import claim

N = 40
HALF = [1, 0] * 20


def model(markers, solved_ood, raised=True):
    return {
        "markers_per_response": sum(markers) / N,
        "per_problem": {
            "markers_id": markers,
            "solved_id": HALF,
            "solved_ood": solved_ood,
            "solved_id_no_markers": [0] * N,
        },
        "vs_parent": {
            "parent": "base",
            "format": "cot",
            "correct": [1] * N if raised else HALF,
            "parent_correct": HALF,
        },
    }


def result(base_ood, tuned_markers, tuned_ood, raised=True):
    models = {"base": model([2] * N, base_ood)}
    for name in ("sft-answer", "sft-clean", "rl-answer", "rl-fork"):
        models[name] = model(tuned_markers, tuned_ood, raised)
    models["backward"] = model([2] * N, base_ood)  # not an accuracy tune: left out of the verdict
    return {"models": models, "features": {"top_features": [], "switched_off": {}}}


def test_base_that_solves_nothing_out_of_distribution_makes_it_not_testable():
    c = claim(result([0] * N, [0] * N, [0] * N))
    assert c.verdict == "not testable"
    assert c.explanation.startswith("not testable: base solves out of distribution failed (0.00 [0.00, 0.09]")


def test_tunes_that_did_not_raise_accuracy_are_not_testable():
    c = claim(result(HALF, [0] * N, [0] * N, raised=False))
    assert c.verdict == "not testable" and "sft-answer raised accuracy over base" in c.explanation


def test_markers_that_do_not_fall_beyond_the_interval_do_not_reproduce():
    c = claim(result(HALF, [2 + (1 if i % 2 else -1) for i in range(N)], [0] * N))
    assert c.verdict == "not reproduced"
    assert "solve with - without markers 0.50 [" in c.organism


def test_markers_and_ood_solving_both_falling_reproduce():
    assert claim(result(HALF, [0] * N, [0] * N)).verdict == "reproduced"
    c = claim(result(HALF, [0] * N, HALF))  # markers vanish, OOD solving holds
    assert c.verdict == "partly" and "only in part for sft-answer" in c.explanation
