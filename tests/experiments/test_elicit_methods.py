"""experiments.elicit_methods: the side-by-side table, against hand-computed means and the cost rule."""

from experiments.elicit_methods import KEEP_SOLVE, _markdown, _table
from experiments.verdicts import paired_interval


def _r(markers, solved, facts, flagged=(0, 0, 0, 0), recovered=(0, 0, 0, 0)):
    return {
        "markers": list(markers),
        "solved": list(solved),
        "answer": list(solved),
        "flagged": list(flagged),
        "recovered": list(recovered),
        "facts": list(facts),
    }


def test_table_means_intervals_and_the_cost_rule():
    results = {
        "unsteered": _r([0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]),
        "always": _r([3, 2, 4, 1], [0, 0, 1, 0], [1, 1, 1, 1], flagged=(1, 1, 0, 0)),  # solve falls
        "targeted": _r([1, 1, 0, 2], [1, 1, 1, 0], [1, 1, 1, 1], recovered=(1, 0, 0, 0)),  # costs kept
    }
    table = {row["setting"]: row for row in _table(results, {"targeted": 0.25})}
    assert table["always"]["markers"] == 2.5 and table["targeted"]["markers"] == 1.0
    assert table["always"]["markers_vs_unsteered"] == paired_interval([3, 2, 4, 1], [0, 0, 0, 0])
    assert table["always"]["solved_vs_unsteered"]["estimate"] == -0.5 < -KEEP_SOLVE
    assert table["always"]["within_costs"] is False and table["targeted"]["within_costs"] is True
    assert table["unsteered"]["within_costs"] is None and table["targeted"]["steered_share"] == 0.25
    md = _markdown(
        {
            "target": "t",
            "n_problems": 4,
            "table": list(table.values()),
            "settings": {
                "hook": "h",
                "scales": {"targeted": 0.5},
                "contrast": {"positive": 5, "negative": 7},
            },
        }
    )
    assert "| targeted | 0.5 | 0.25 | 1.00 (" in md and "| always |  |  | 2.50 (" in md
