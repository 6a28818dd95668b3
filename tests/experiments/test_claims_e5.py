"""Finding 5's verdict from a hand-made result: some fine-tune must have lost knowledge first."""

from experiments.e5_damage_proxy import claim

ITEMS, N = 24, 40
HALF = [1, 0] * 20
ALL = [1] * ITEMS


def result(tuned_attr, proxy_attr, correct):
    recall = {m: ALL for m in ("base", "tuned", "proxy", "expert", "antiexpert", "rl-answer")}
    attr = {**recall, "tuned": tuned_attr, "proxy": proxy_attr}
    return {
        "proxy": {
            "per_item": {"fact": recall, "attr": attr},
            "per_problem": {"correct": correct},
            "gap_closed": 0.5,
        },
        "control": {
            "site": "blocks.1.mlp",
            "fact_recall": {
                "score_base": 1.0,
                "score_tuned": 0.2,
                "gap": 0.8,
                "damaged_layers": [1],
                "best_site": "blocks.1.mlp",
                "best_restoration": 0.9,
            },
        },
        "lost_solve_rate": [],
        "damage": {},
    }


GAINS = {"base": HALF, "tuned": [1] * N, "proxy": [1] * N, "proxy_noise": HALF}


def test_no_knowledge_lost_makes_it_not_testable():
    c = claim(result(ALL, ALL, GAINS))
    assert c.verdict == "not testable"
    assert "some fine-tune lost knowledge" in c.explanation and "none did" in c.explanation


def test_a_proxy_that_keeps_nothing_and_gains_nothing_does_not_reproduce():
    c = claim(result([0] * ITEMS, [0] * ITEMS, {**GAINS, "proxy": HALF}))
    assert c.verdict == "not reproduced"
    assert (
        "sft-answer attr -1.00 [-1.00, -1.00]" in c.organism and "knowledge: not reproduced" in c.explanation
    )


def test_a_proxy_that_keeps_lost_knowledge_and_beats_base_reproduces():
    c = claim(result([0] * ITEMS, ALL, GAINS))
    assert c.verdict == "reproduced" and "localiser finds the control's damage" in c.explanation
    # without a tuning gain, the task part is not testable and the finding holds only in part
    c = claim(result([0] * ITEMS, ALL, {**GAINS, "tuned": HALF}))
    assert c.verdict == "partly" and "tuning raised answer accuracy over base failed" in c.explanation


def test_a_proxy_gain_that_the_noise_expert_matches_does_not_reproduce():
    # the small pair moved at random as far gives the same gain: the task part is hollow
    c = claim(result([0] * ITEMS, ALL, {**GAINS, "proxy_noise": [1] * N}))
    assert "task: not reproduced" in c.explanation and c.verdict == "partly"
    assert "proxy - noise-expert proxy" in c.organism and "0.00 [0.00, 0.00]" in c.organism
    # without the control measured, a gain over base is no evidence either way
    c = claim(result([0] * ITEMS, ALL, {k: v for k, v in GAINS.items() if k != "proxy_noise"}))
    assert "task: not testable" in c.explanation


def along_dose(attr_fell: bool):
    down = {"estimate": -0.25, "low": -0.4, "high": -0.1, "n": ITEMS}
    flat = {"estimate": 0.0, "low": -0.05, "high": 0.05, "n": ITEMS}
    points = {
        "sft-answer@150": {
            "steps": 150,
            "fact_recall_change": flat,
            "fact_recall_fell": False,
            "attr_recall_change": down if attr_fell else flat,
            "attr_recall_fell": attr_fell,
        }
    }
    first = {"model": "sft-answer@150", "steps": 150, "kinds": ["attr"]} if attr_fell else None
    return {"sft-answer": {"parent": "base", "points": points, "first_damage": first}}


def test_knowledge_lost_only_at_a_middle_dose_meets_the_precondition():
    r = result(ALL, ALL, GAINS)  # the final models lost nothing: the old precondition failed here
    r["damage_along_dose"] = along_dose(attr_fell=True)
    r["localised_most_damaged"] = {
        "model": "sft-answer@150",
        "parent": "base",
        "kind": "attr",
        "change": {"estimate": -0.25, "low": -0.4, "high": -0.1},
        "damaged_layers": [1],
        "best_site": "blocks.1.mlp",
        "best_restoration": 0.8,
    }
    c = claim(r)
    assert "some fine-tune lost knowledge at some dose" in c.precondition
    assert "held (sft-answer@150 attr)" in c.precondition
    assert "along dose: recall first fell at sft-answer@150 (attr)" in c.organism
    # the proxy's knowledge part compares the final sft-answer, which lost nothing; the task part holds
    assert c.verdict == "partly" and "(sft-answer lost none)" in c.explanation
    assert "most damaged: sft-answer@150 (attr recall -0.25 [-0.40, -0.10] vs base)" in c.explanation


def test_no_loss_at_any_dose_is_not_testable_and_says_so():
    r = result(ALL, ALL, GAINS)
    r["damage_along_dose"] = along_dose(attr_fell=False)
    c = claim(r)
    assert c.verdict == "not testable" and c.explanation.endswith("failed (none did at any dose)")
    assert "no fine-tune lost fact or attribute recall at any dose (1 fine-tunes, 1 doses" in c.organism
