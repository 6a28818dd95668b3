"""Finding 8 (Chen et al. 2024): backward reasoning as an extra objective improves forward reasoning.

``backward`` is ``base`` trained further on forward traces plus the backward question and the
backward reasoning (three cross-entropy terms, as in the paper's loss). The fair control is the
same further training without the backward terms: ``sft-clean`` is the closest model of the
zoo (``base`` trained further on forward traces only, markers stripped), and ``base`` itself.
"""

from experiments.claims import Claim, pct, rel_change
from experiments.context import Context

FINDING = 8
TITLE = "Backward reasoning as an extra objective helps forward reasoning"
PAPER = "+13.53% over zero-shot, averaged over 12 data sets"
MODELS = ("base", "sft-clean", "backward")


def run(ctx: Context) -> dict:
    rows = {}
    for name in MODELS:
        m = ctx.evaluate(name)
        rows[name] = {
            "solve_rate_id": m["solve_rate_id"],
            "solve_rate_ood": m["solve_rate_ood"],
            "answer_accuracy_id": m["cot_answer_accuracy_id"],
            "fact_recall": m["fact_recall"],
        }
    rows["backward"]["relative_gain_vs_base"] = rel_change(
        rows["backward"]["solve_rate_id"], rows["base"]["solve_rate_id"]
    )
    rows["backward"]["relative_gain_vs_forward_only"] = rel_change(
        rows["backward"]["solve_rate_id"], rows["sft-clean"]["solve_rate_id"]
    )
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    x = range(len(MODELS))
    for shift, key, label in ((-0.2, "solve_rate_id", "in distribution"), (0.2, "solve_rate_ood", "OOD")):
        ax.bar([i + shift for i in x], [rows[n][key] for n in MODELS], 0.4, label=label)
    ax.set_xticks(list(x), MODELS)
    ax.set_ylabel("forward solve rate")
    ax.legend()
    ctx.figure(fig, "solve_rate")
    return {"models": rows}


def claim(r: dict) -> Claim:
    m = r["models"]
    b, f, k = m["base"]["solve_rate_id"], m["sft-clean"]["solve_rate_id"], m["backward"]["solve_rate_id"]
    organism = f"forward solve rate ID: base {pct(b)}, forward-only training {pct(f)}, backward {pct(k)}"
    gain = m["backward"]["relative_gain_vs_forward_only"]
    if k > max(b, f) + 0.02:
        verdict, why = "reproduced", f"the backward objective adds {pct(gain)} over forward-only training"
    elif k >= max(b, f) - 0.02:
        verdict, why = "partly", "the backward objective does not hurt, but gains nothing measurable"
    else:
        verdict = "not reproduced"
        why = f"the backward objective lowers forward solving ({pct(gain)} vs forward-only)"
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
