"""Finding 1's verdict from a hand-made result: preconditions first, then an interval below zero."""

from experiments.e1_info_gain import claim

N = 40
BASE_IG = [1.0 + 0.1 * (i % 5) for i in range(N)]


def result(tuned_correct, tuned_ig, noise_ig=BASE_IG):
    """SFT tunes with the given correctness and IG; their same-size noise control has ``noise_ig``
    (by default base's own: random change that leaves IG as it was)."""

    def row(correct, ig):
        return {
            "per_problem": {"info_gain": ig, "ppl_info_gain": ig},
            "noise_control": {
                "relative_change": 0.03,
                "per_problem": {"info_gain": list(noise_ig), "ppl_info_gain": list(noise_ig)},
            },
            "vs_parent": {
                "parent": "base",
                "format": "cot",
                "correct": correct,
                "parent_correct": [1, 0] * 20,
            },
        }

    return {
        "models": {
            "base": {"ppl_info_gain": 1.2, "per_problem": {"info_gain": BASE_IG, "ppl_info_gain": BASE_IG}},
            "sft-answer": row(tuned_correct, tuned_ig),
            "sft-clean": row(tuned_correct, tuned_ig),
            "rl-answer": row([0] * N, BASE_IG),  # not an SFT model: not part of this finding
        }
    }


def test_a_tune_that_did_not_raise_accuracy_is_not_testable():
    c = claim(result([1, 0] * 20, [x - 0.5 for x in BASE_IG]))
    assert c.verdict == "not testable"
    assert "sft-answer raised accuracy over base (cot format) failed" in c.explanation
    assert "sft-clean raised accuracy over base (cot format): failed" in c.precondition


def test_an_ig_interval_that_includes_zero_does_not_reproduce():
    noisy = [x + (0.3 if i % 2 else -0.3) for i, x in enumerate(BASE_IG)]
    c = claim(result([1] * N, noisy))
    assert c.verdict == "not reproduced"
    assert "held" in c.precondition and "IG (paper form) - base 0.00 [" in c.organism


def test_ig_below_base_with_accuracy_up_reproduces():
    c = claim(result([1] * N, [x - 0.5 for x in BASE_IG]))
    assert c.verdict == "reproduced" and "-0.50 [-0.50, -0.50]" in c.organism
    # a missing trace on one side drops that problem from the pairing
    ig = [x - 0.5 for x in BASE_IG]
    ig[0] = None
    assert claim(result([1] * N, ig)).verdict == "reproduced"


def test_an_ig_fall_that_same_size_noise_also_causes_does_not_reproduce():
    fall = [x - 0.5 for x in BASE_IG]
    c = claim(result([1] * N, fall, noise_ig=fall))
    assert c.verdict == "not reproduced"
    assert "IG (paper form) - same-size noise 0.00 [0.00, 0.00]" in c.organism
    r = result([1] * N, fall)
    for m in r["models"].values():
        m.pop("noise_control", None)
    assert claim(r).verdict == "not testable"  # a fall with no control measured is no evidence


def test_ig_along_dose_pairs_each_dose_with_base_and_the_claim_names_the_scorer():
    from experiments.e1_info_gain import ig_along_dose

    r = result([1] * N, [x - 0.5 for x in BASE_IG])
    r["scorer"] = "small-base"
    rows = {
        **r["models"],
        "sft-clean@50": {
            "per_problem": {k: [x - 0.25 for x in BASE_IG] for k in ("info_gain", "ppl_info_gain")}
        },
    }
    acc = {"estimate": 0.5, "low": 0.4, "high": 0.6, "n": N}
    curves = {
        "sft-clean": {
            "points": {
                "base": {
                    "steps": 0,
                    "relative_weight_change": 0.0,
                    "accuracy": 0.5,
                    "accuracy_interval": acc,
                },
                "sft-clean@50": {"steps": 50, "relative_weight_change": 0.01, "accuracy": 0.6},
                "sft-clean@150": {
                    "steps": 150,
                    "relative_weight_change": 0.02,
                    "accuracy": 0.7,
                },  # not traced
                "sft-clean": {"steps": 500, "relative_weight_change": 0.05, "accuracy": 0.8},
            }
        }
    }
    along = ig_along_dose(rows, curves)
    pts = along["sft-clean"]["points"]
    assert list(pts) == ["base", "sft-clean@50", "sft-clean"]  # only the doses that were traced
    assert pts["base"]["ig_minus_base"]["estimate"] == 0.0 and pts["base"]["accuracy_interval"] == acc
    assert pts["sft-clean@50"]["ig_minus_base"]["estimate"] == -0.25 and pts["sft-clean@50"]["steps"] == 50
    assert abs(pts["sft-clean"]["ppl_info_gain"] - (sum(BASE_IG) / N - 0.5)) < 1e-9
    assert pts["sft-clean"]["ppl_info_gain_interval"]["n"] == N
    r["ig_along_dose"] = along
    c = claim(r)
    assert c.organism.startswith("scorer small-base; ")
    assert "sft-clean IG - base along dose: @50 -0.25 [-0.25, -0.25], @500 -0.50 [-0.50, -0.50]" in c.organism
