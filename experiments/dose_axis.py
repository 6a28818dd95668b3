"""The organism zoo's dose axis (issue 12, item 2): each fine-tune's card metrics against its dose.

Every fine-tune is saved at several doses (``sft-answer@30`` ...); their cards hold the metrics
of a lighter evaluation and the relative weight change from the parent. These helpers read them
(nothing is generated) for the curves that findings 1, 2, 4 and 5 report against dose.
"""

import math
from collections.abc import Sequence
from typing import Any

from experiments.context import Context
from experiments.verdicts import Interval, mean_interval

CURVE_METRICS = ("accuracy", "solve_rate_id", "markers_per_response", "fact_recall", "attr_recall")
_LABELS = {
    "accuracy": "answer accuracy (own format, ID)",
    "solve_rate_id": "solve rate (ID)",
    "markers_per_response": "markers per response (ID)",
    "fact_recall": "path-fact recall",
    "attr_recall": "attribute recall",
    "ppl_info_gain": "IG, per-step PPL form (e1)",
    "info_gain": "IG, clean total in nats (e1)",
    "aoc": "early-answering AOC (e2)",
}


def accuracy_key(fmt: str) -> str:
    """The card metric of answer accuracy in format ``fmt`` (the same key on every card, so
    that a fine-tune's parent is read in the fine-tune's format)."""
    return "answer_only_accuracy" if fmt == "answer" else "cot_answer_accuracy_id"


def curve_from_cards(points: Sequence[tuple[int, dict]], n_problems: int, n_nodes: int) -> dict[str, dict]:
    """One fine-tune's card metrics along its dose axis, keyed by model name.

    Args:
        points: ``(steps, card)`` in dose order: the parent's card at 0, each dose's, the final
            model's last (:func:`interp.organism.dose_axis`).
        n_problems: problems in ``test_id`` (an evaluation with ``max_problems=None`` saw all).
        n_nodes: nodes of the world (fact and attribute recall are over every node).

    Returns:
        Per model: ``steps``, ``relative_weight_change`` (0 for the parent), ``evaluation``
        (``final`` or the lighter ``dose`` one), ``n_problems_id``, the metrics of
        :data:`CURVE_METRICS` (``accuracy`` in the fine-tune's own format), each with a 95%
        interval: Wilson for the rates, a bootstrap over problems for markers where the card keeps
        its per-problem counts (``None`` otherwise).

    Example:
        >>> parent = {"name": "base", "cot_answer_accuracy_id": 0.5,
        ...           "recipe": {"eval": {"max_problems": None}}}
        >>> dose = {"name": "t@5", "dose_of": "t", "format": "cot", "cot_answer_accuracy_id": 0.75,
        ...         "relative_weight_change": 0.01, "recipe": {"dose_eval": {"max_problems": 20}}}
        >>> c = curve_from_cards([(0, parent), (5, dose)], n_problems=40, n_nodes=24)
        >>> c["t@5"]["n_problems_id"], c["t@5"]["accuracy_interval"]["n"], c["base"]["relative_weight_change"]
        (20, 20, 0.0)
    """
    fmt = points[-1][1].get("format", "cot")
    key = accuracy_key(fmt)
    out = {}
    for steps, card in points:
        per = card.get("per_problem") or {}
        n = len(per["problems_id"]) if per.get("problems_id") else _evaluated(card, n_problems)
        nodes = len(per["fact_correct"]) if per.get("fact_correct") else n_nodes
        p: dict[str, Any] = {
            "steps": int(steps),
            "relative_weight_change": 0.0 if steps == 0 else card.get("relative_weight_change"),
            "evaluation": "dose" if card.get("dose_of") else "final",
            "n_problems_id": n,
            "accuracy": card.get(key),
            **{m: card.get(m) for m in CURVE_METRICS[1:]},
        }
        for m, count in (
            ("accuracy", n),
            ("solve_rate_id", n),
            ("fact_recall", nodes),
            ("attr_recall", nodes),
        ):
            p[f"{m}_interval"] = _rate_interval(p[m], count)
        markers = per.get("markers_id")
        p["markers_per_response_interval"] = mean_interval(markers) if markers else None
        out[card["name"]] = p
    return out


def _evaluated(card: dict, n_problems: int) -> int:
    """How many ``test_id`` problems the card's evaluation (final or dose) saw."""
    recipe = card.get("recipe") or {}
    cfg = recipe.get("dose_eval" if card.get("dose_of") else "eval") or {}
    most = cfg.get("max_problems")
    return n_problems if most is None else min(int(most), n_problems)


def _rate_interval(rate: float | None, n: int) -> Interval | None:
    """Wilson interval of a rate the card rounded to 4 decimals (the count is recovered exactly)."""
    if rate is None or n < 1 or not math.isfinite(rate):
        return None
    from experiments.real.common import proportion

    return proportion(min(n, max(0, round(rate * n))), n)


def dose_curves(ctx: Context) -> dict[str, dict]:
    """:func:`curve_from_cards` of every fine-tune the zoo saved at doses (read from the cards,
    nothing generated): per fine-tune its ``parent``, ``format`` and ``points``."""
    from interp.organism import available_doses, available_organisms, dose_axis

    world, _ = ctx.world
    n_id = len(world.split("test_id"))
    out = {}
    for name in available_organisms(ctx.zoo, doses=False):
        if not available_doses(name, ctx.zoo):
            continue
        axis = dose_axis(name, ctx.zoo)
        out[name] = {
            "parent": axis[0][1],
            "format": ctx.card(name).get("format", "cot"),
            "points": curve_from_cards([(s, ctx.card(m)) for s, m in axis], n_id, world.n_nodes),
        }
    return out


def intermediate_doses(ctx: Context, name: str, middle_only: bool = False) -> list[tuple[int, str]]:
    """``(steps, model)`` of the doses ``name`` saved between its parent and its final model (the
    doses its card lists); ``middle_only``: just the middle one of them."""
    from interp.organism import dose_axis

    doses = dose_axis(name, ctx.zoo)[1:-1]
    return doses[len(doses) // 2 : len(doses) // 2 + 1] if middle_only and doses else doses


def plot_dose_curves(ctx: Context, curves: dict[str, dict], metrics: Sequence[str], fig_name: str) -> None:
    """Each metric against dose steps (top row) and relative weight change (bottom row), one line
    per fine-tune, 95% intervals as error bars."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(metrics), figsize=(3.6 * len(metrics), 6.4), squeeze=False)
    for name, curve in curves.items():
        pts = sorted(curve["points"].values(), key=lambda p: p["steps"])
        for col, m in enumerate(metrics):
            for row, x in enumerate(("steps", "relative_weight_change")):
                kept = [p for p in pts if p.get(m) is not None and p.get(x) is not None]
                ys = [p[m] for p in kept]
                ivs = [p.get(f"{m}_interval") for p in kept]
                err = [
                    [max(0.0, y - iv["low"]) if iv else 0.0 for y, iv in zip(ys, ivs, strict=True)],
                    [max(0.0, iv["high"] - y) if iv else 0.0 for y, iv in zip(ys, ivs, strict=True)],
                ]
                axes[row][col].errorbar(
                    [p[x] for p in kept], ys, yerr=err, marker="o", ms=3, capsize=2, label=name
                )
    for col, m in enumerate(metrics):
        axes[0][col].set_title(_LABELS.get(m, m), fontsize=9)
        axes[0][col].set_xlabel("dose (training steps)")
        axes[1][col].set_xlabel("relative weight change")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    ctx.figure(fig, fig_name)
