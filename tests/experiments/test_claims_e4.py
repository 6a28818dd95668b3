"""Finding 4's verdict from a hand-made result: base must solve OOD and tunes must raise accuracy."""

from claim_fixtures import vs_parent

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
        "vs_parent": vs_parent(raised),
    }


def noise(markers=(2,) * N, solved_ood=HALF):
    """The same-size noise control: by default base moved at random and unchanged."""
    per = {"markers_id": list(markers), "solved_ood": list(solved_ood), "solved_start": list(solved_ood)}
    return {"relative_change": 0.03, "per_problem": per}


def result(base_ood, tuned_markers, tuned_ood, raised=True, control=None):
    models = {"base": model([2] * N, base_ood)}
    for name in ("sft-answer", "sft-clean", "rl-answer", "rl-fork"):
        models[name] = model(tuned_markers, tuned_ood, raised)
        models[name]["noise_control"] = control or noise(solved_ood=base_ood)
    models["backward"] = model([2] * N, base_ood)  # not an accuracy tune: left out of the verdict
    return {"models": models, "features": {"top_features": [], "switched_off": {}}}


def test_base_that_solves_nothing_out_of_distribution_makes_it_not_testable():
    c = claim(result([0] * N, [0] * N, [0] * N))
    assert c.verdict == "not testable"
    assert c.explanation.startswith(
        "not testable: base solves out of distribution (best split: test_ood, longer paths) "
        "failed (0.00 [0.00, 0.09]"
    )


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


def test_a_fall_that_same_size_noise_also_causes_does_not_reproduce():
    """Random change of the tune's size removes the markers and the OOD solving as well: the
    tune's fall is not beyond noise, so it is no evidence (a hollow 'reproduced' before)."""
    c = claim(result(HALF, [0] * N, [0] * N, control=noise([0] * N, [0] * N)))
    assert c.verdict == "not reproduced"
    assert "beyond same-size noise: markers 0.00 [0.00, 0.00]" in c.organism
    # without the control measured, a fall cannot be credited
    r = result(HALF, [0] * N, [0] * N)
    for m in r["models"].values():
        m.pop("noise_control", None)
    assert claim(r).verdict == "not testable"


def test_base_that_solves_none_of_300_ood_problems_is_not_testable():
    # Wilson's lower bound of 0 of 300 once rounded to 8.7e-19, above zero: that alone held the
    # precondition (probes.stats.wilson now returns exactly 0)
    r = result([0] * N, [0] * N, [0] * N)
    for m in r["models"].values():
        m["per_problem"]["solved_ood"] = [0] * 300
        if "noise_control" in m:
            m["noise_control"] = noise(solved_ood=[0] * 300)
            m["noise_control"]["per_problem"]["markers_id"] = [2] * N
    c = claim(r)
    assert c.verdict == "not testable"
    assert "failed (0.00 [0.00, 0.01] over 300 OOD problems)" in c.explanation


def test_the_ood_split_base_solves_best_is_the_one_compared_and_named():
    r = result([0] * N, [0] * N, [0] * N)
    for name, m in r["models"].items():  # base solves half of the new-start split, tunes none
        m["per_problem"]["solved_start"] = HALF if name in ("base", "backward") else [0] * N
    c = claim(r)
    assert "best split: test_start" in c.precondition and "OOD (test_start) solve" in c.organism
    assert c.verdict != "not testable" or "raised accuracy" in c.explanation


def test_the_self_distilled_model_losing_markers_is_reported_with_its_interval():
    r = result(HALF, [0] * N, [0] * N)
    r["models"]["sft-self"] = model([0] * N, [0] * N)
    assert "sft-self (no marker stripped) lost markers: - base -2.00 [-2.00, -2.00]" in claim(r).organism
    r["dose_curves"] = {
        "sft-self": {
            "points": {
                "sft-self": {"steps": 500, "markers_per_response": 0.0},
                "base": {"steps": 0, "markers_per_response": 2.0},
                "sft-self@150": {"steps": 150, "markers_per_response": 0.5},
            }
        }
    }
    assert "its markers along dose @0 2.00, @150 0.50, @500 0.00" in claim(r).organism
    r["models"]["sft-self"] = model([2] * N, [0] * N)
    assert "sft-self (no marker stripped) did not lose markers: - base 0.00 [" in claim(r).organism
    few = model([0] * N, [0] * N)
    few["per_problem"]["markers_id"] = [0] * 5 + [None] * (N - 5)  # traced on 5 problems only
    r["models"]["sft-self"] = few
    assert "sft-self (no marker stripped) too few problems to say (fewer than 10)" in claim(r).organism


def test_forbidding_markers_and_difficulty_are_reported_beside_the_verdict():
    from experiments.e4_markers import markers_by_difficulty

    r = result(HALF, [0] * N, [0] * N)
    r["forbidding_markers"] = {
        "greedy": {"estimate": 0.1, "low": 0.05, "high": 0.15, "n": N},
        "sampled": {"estimate": 0.2, "low": 0.1, "high": 0.3, "n": N},
        "samples_per_problem": 4,
    }
    r["difficulty"] = {"base": markers_by_difficulty([1] * 20 + [4] * 20, [1] * 20 + [3] * 20)}
    c = claim(r)
    assert "solve with - without markers 0.10 [0.05, 0.15] greedy, 0.20 [0.10, 0.30] sampled" in c.organism
    assert "base markers at distance 4 - distance 1 2.00 [2.00, 2.00]" in c.organism


def test_the_crosscoder_diff_is_one_sentence_beside_the_verdict_and_does_not_change_it():
    r = result(HALF, [0] * N, [0] * N)
    before = claim(r)
    best = {"latent": 3, "kind": "shared", "ratio": 0.35, "auroc": 0.97, "survives_scaling": True}
    r["model_diff"] = {
        "marker": "WAIT",
        "tunes": {
            "sft-clean": {
                "base_only_surviving": 4,
                "best_marker_latent": best,
                "control": {"base_only_surviving": 1},
            },
        },
    }
    c = claim(r)
    assert (c.verdict, c.explanation, c.precondition) == (
        before.verdict,
        before.explanation,
        before.precondition,
    )
    assert c.organism.endswith(
        "; crosscoder diffs (base-only latents surviving latent scaling, tune vs same-size noise): "
        "sft-clean 4 vs 1; best pre-WAIT latent in sft-clean: shared (decoder-norm ratio 0.35; AUROC 0.97)"
    )
