"""The dose axis from hand-made cards: curves read without generating, and damage along dose."""

from experiments.dose_axis import curve_from_cards, intermediate_doses
from experiments.e5_damage_proxy import damage_note, first_damage, most_damaged

N_ID, N_NODES = 40, 24


def cards():
    """base (final evaluation, per-problem lists), sft-answer@50 (dose evaluation of 20 problems)
    and sft-answer (final, answer format)."""
    base = {
        "name": "base",
        "format": "cot",
        "recipe": {"eval": {"max_problems": None}},
        "answer_accuracy_id": 0.9,  # base's own (cot) accuracy: not the answer-format curve's
        "cot_answer_accuracy_id": 0.9,
        "answer_only_accuracy": 0.25,
        "solve_rate_id": 0.5,
        "markers_per_response": 2.0,
        "fact_recall": 1.0,
        "attr_recall": 0.75,
        "per_problem": {
            "problems_id": [[0, 1]] * N_ID,
            "markers_id": [1, 3] * (N_ID // 2),
            "fact_correct": [1] * N_NODES,
        },
    }
    dose = {
        "name": "sft-answer@50",
        "dose_of": "sft-answer",
        "format": "answer",
        "recipe": {"dose_eval": {"max_problems": 20}},
        "relative_weight_change": 0.01,
        "answer_accuracy_id": 0.5,
        "answer_only_accuracy": 0.5,
        "cot_answer_accuracy_id": 0.1,
        "solve_rate_id": 0.25,
        "markers_per_response": 1.0,
        "fact_recall": 1.0,
        "attr_recall": 0.5,
    }
    final = {**dose, "name": "sft-answer", "recipe": {"eval": {"max_problems": None}}}
    final.pop("dose_of")
    final.update(relative_weight_change=0.03, answer_only_accuracy=0.75, attr_recall=None)
    return [(0, base), (50, dose), (120, final)]


def test_curve_reads_every_point_in_the_fine_tunes_format_with_its_own_sample_size():
    c = curve_from_cards(cards(), N_ID, N_NODES)
    assert list(c) == ["base", "sft-answer@50", "sft-answer"]
    base, dose, final = c["base"], c["sft-answer@50"], c["sft-answer"]
    # the parent is read in the fine-tune's (answer) format, not in its own cot format
    assert [p["accuracy"] for p in (base, dose, final)] == [0.25, 0.5, 0.75]
    assert [p["relative_weight_change"] for p in (base, dose, final)] == [0.0, 0.01, 0.03]
    assert [p["evaluation"] for p in (base, dose, final)] == ["final", "dose", "final"]
    assert [p["n_problems_id"] for p in (base, dose, final)] == [N_ID, 20, N_ID]
    assert dose["accuracy_interval"]["n"] == 20 and dose["accuracy_interval"]["estimate"] == 0.5
    assert base["fact_recall_interval"]["n"] == N_NODES and base["fact_recall_interval"]["method"] == "wilson"
    # markers get an interval only where the card keeps per-problem counts
    assert base["markers_per_response_interval"]["estimate"] == 2.0
    assert dose["markers_per_response_interval"] is None
    # a metric the card lacks stays missing, with no interval
    assert final["attr_recall"] is None and final["attr_recall_interval"] is None


DOWN = {"estimate": -0.25, "low": -0.4, "high": -0.1, "n": N_NODES}
WORSE = {"estimate": -0.5, "low": -0.7, "high": -0.3, "n": N_NODES}
FLAT = {"estimate": 0.0, "low": -0.05, "high": 0.05, "n": N_NODES}


def row(steps, fact=FLAT, attr=FLAT):
    return {
        "steps": steps,
        "relative_weight_change": steps / 1000,
        "fact_recall_change": fact,
        "fact_recall_fell": fact["high"] < 0,
        "attr_recall_change": attr,
        "attr_recall_fell": attr["high"] < 0,
    }


def scan():
    a = {"sft-answer@50": row(50), "sft-answer@150": row(150, attr=DOWN), "sft-answer": row(500, attr=DOWN)}
    b = {"small-tuned@50": row(50, fact=WORSE), "small-tuned": row(120)}
    return {
        "sft-answer": {"parent": "base", "points": a, "first_damage": first_damage(a)},
        "small-tuned": {"parent": "small-base", "points": b, "first_damage": first_damage(b)},
    }


def test_first_damage_is_the_lowest_dose_that_fell_and_the_worst_one_is_localised():
    s = scan()
    assert s["sft-answer"]["first_damage"] == {"model": "sft-answer@150", "steps": 150, "kinds": ["attr"]}
    worst = most_damaged(s)
    assert (worst["model"], worst["parent"], worst["kind"]) == ("small-tuned@50", "small-base", "fact")
    assert damage_note(s) == "recall first fell at sft-answer@150 (attr), small-tuned@50 (fact)"


def test_no_damage_at_any_dose_is_said_so():
    flat = {"t@5": row(5), "t": row(9)}
    s = {"t": {"parent": "base", "points": flat, "first_damage": first_damage(flat)}}
    assert s["t"]["first_damage"] is None and most_damaged(s) is None
    assert damage_note(s).startswith(
        "no fine-tune lost fact or attribute recall at any dose (1 fine-tunes, 2 doses"
    )


def test_intermediate_doses_are_the_saved_ones_or_their_middle(monkeypatch, tmp_path):
    from experiments.context import Context

    axis = [(0, "base"), (50, "t@50"), (150, "t@150"), (500, "t@500"), (800, "t")]
    monkeypatch.setattr("interp.organism.store.dose_axis", lambda name, zoo=None: axis)
    ctx = Context("tiny", tmp_path, tmp_path)
    assert intermediate_doses(ctx, "t") == axis[1:-1]
    assert intermediate_doses(ctx, "t", middle_only=True) == [(150, "t@150")]
    monkeypatch.setattr("interp.organism.store.dose_axis", lambda name, zoo=None: [(0, "base"), (9, "t")])
    assert intermediate_doses(ctx, "t", middle_only=True) == []
