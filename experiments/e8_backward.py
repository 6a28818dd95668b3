"""Finding 8 (Chen et al. 2024): backward reasoning as an extra objective improves forward reasoning.

``backward`` is ``base`` trained further on forward traces plus the backward question and the
backward reasoning (three cross-entropy terms, as in the paper's loss). The fair control is the
same further training without the backward terms: ``sft-clean`` is the closest model of the
zoo (``base`` trained further on forward traces only, markers stripped), and ``base`` itself.
Newer zoos hold the matched control, ``forward-only``: same parent, steps and data mix as
``backward`` minus the backward part.

The verdict (:func:`claim`) needs that matched control (``sft-clean`` differs in data and steps,
so a difference from it is not the backward objective's): backward minus forward-only, forward
solve rate in distribution paired over problems, must exclude zero upward.
"""

from experiments.claims import Claim, pct, rel_change
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    Precondition,
    check_preconditions,
    fmt_interval,
    in_zoo,
    interval_verdict,
    measured,
    model_details,
    paired_interval,
)

FINDING = 8
TITLE = "Backward reasoning as an extra objective helps forward reasoning"
PAPER = "+13.53% over zero-shot, averaged over 12 data sets"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
MODELS = ("base", "sft-clean", "backward")
CONTROL = "forward-only"  # the matched control, in zoos that have it


def run(ctx: Context) -> dict:
    rows = {}
    models = (*MODELS, *in_zoo(ctx, [CONTROL]))
    for name in models:
        m, det = ctx.evaluate(name), model_details(ctx, name)
        rows[name] = {
            "solve_rate_id": m["solve_rate_id"],
            "solve_rate_ood": m["solve_rate_ood"],
            "answer_accuracy_id": m["cot_answer_accuracy_id"],
            "fact_recall": m["fact_recall"],
            "per_problem": {"solved_id": det["solved_id"], "solved_ood": det["solved_ood"]},
        }
    rows["backward"]["relative_gain_vs_base"] = rel_change(
        rows["backward"]["solve_rate_id"], rows["base"]["solve_rate_id"]
    )
    rows["backward"]["relative_gain_vs_forward_only"] = rel_change(
        rows["backward"]["solve_rate_id"], rows["sft-clean"]["solve_rate_id"]
    )
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    x = range(len(models))
    for shift, key, label in ((-0.2, "solve_rate_id", "in distribution"), (0.2, "solve_rate_ood", "OOD")):
        ax.bar([i + shift for i in x], [rows[n][key] for n in models], 0.4, label=label)
    ax.set_xticks(list(x), models)
    ax.set_ylabel("forward solve rate")
    ax.legend()
    ctx.figure(fig, "solve_rate")
    return {"models": rows}


def claim(r: dict) -> Claim:
    """The matched forward-only control must exist (precondition); then backward minus it (forward
    solve rate ID, paired over problems) must exclude zero upward."""
    m = r["models"]
    back = m["backward"]["per_problem"]

    def minus(other: str, split: str = "id"):
        return paired_interval(back[f"solved_{split}"], m[other]["per_problem"][f"solved_{split}"])

    text = [f"forward solve rate ID: backward {pct(m['backward']['solve_rate_id'])}"]
    text += [f"backward - {n} {fmt_interval(minus(n))}" for n in m if n != "backward"]
    organism = "; ".join(text)
    gain = minus(CONTROL) if CONTROL in m else None
    pre = [
        Precondition(
            "a matched forward-only control (same steps and mix minus the backward part)",
            CONTROL in m,
            f"{CONTROL} in the zoo"
            if CONTROL in m
            else f"no {CONTROL} in the zoo; sft-clean differs in data and steps",
        ),
        measured(f"backward and {CONTROL} solve the same problems", gain),
    ]
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    verdict = interval_verdict(gain, +1)
    why = f"backward minus {CONTROL} {fmt_interval(gain)} (OOD {fmt_interval(minus(CONTROL, 'ood'))}): " + (
        "the interval lies above zero" if verdict == "reproduced" else "the interval does not lie above 0"
    )
    return HEAD.claim(organism, verdict, why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
