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


GAINS = {"base": HALF, "tuned": [1] * N, "proxy": [1] * N}


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
