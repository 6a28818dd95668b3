"""Finding 3 (Stechly et al. 2025): irrelevant (swapped) traces train about as well as correct ones.

Three arms, each a model of the zoo: correct traces (``base``), traces swapped in from unrelated
problems (``swapped``), and no traces. The zoo has no model trained from scratch without traces;
the no-trace arm is ``base`` asked in the answer-only format (same weights, no trace at test
time) and ``sft-answer`` (``base`` fine-tuned on answers only). Solution accuracy (the final
answer is a shortest path) and trace validity (the formal validator) are reported separately, in
and out of distribution.
"""

from experiments.claims import Claim, pct
from experiments.context import Context

FINDING = 3
TITLE = "Irrelevant (swapped) traces train about as well as correct ones"
PAPER = "swapped-trace models match correct-trace accuracy; validity and accuracy come apart"


def run(ctx: Context) -> dict:
    arms = {}
    for label, name in (("correct", "base"), ("swapped", "swapped")):
        m = ctx.evaluate(name)
        arms[label] = {
            "model": name,
            "answer_accuracy_id": m["cot_answer_accuracy_id"],
            "answer_accuracy_ood": m["cot_answer_accuracy_ood"],
            "trace_validity_id": m["trace_validity"],
            "trace_validity_ood": m["trace_validity_ood"],
            "solve_rate_id": m["solve_rate_id"],
            "solve_rate_ood": m["solve_rate_ood"],
        }
    for label, name in (("no_trace_base", "base"), ("no_trace_sft", "sft-answer")):
        m = ctx.evaluate(name)
        arms[label] = {
            "model": name,
            "answer_accuracy_id": m["answer_only_accuracy"],
            "answer_accuracy_ood": m["answer_only_accuracy_ood"],
        }
    _plot(ctx, arms)
    n_id, n_ood = len(ctx.problems("test_id")), len(ctx.problems("test_ood"))
    return {"arms": arms, "n_problems_id": n_id, "n_problems_ood": n_ood}


def _plot(ctx: Context, arms: dict) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    labels = list(arms)
    for ax, split in zip(axes, ("id", "ood"), strict=True):
        acc = [arms[a]["answer_accuracy_" + split] for a in labels]
        val = [arms[a].get("trace_validity_" + split, float("nan")) for a in labels]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], acc, 0.4, label="answer accuracy")
        ax.bar([i + 0.2 for i in x], val, 0.4, label="trace validity")
        ax.set_xticks(list(x), labels, rotation=20)
        ax.set_title("in distribution" if split == "id" else "out of distribution (longer)")
    axes[0].set_ylabel("share of problems")
    axes[0].legend()
    ctx.figure(fig, "accuracy_validity")


def claim(r: dict) -> Claim:
    a = r["arms"]
    c, s, n = a["correct"], a["swapped"], a["no_trace_base"]
    organism = (
        f"answer acc. ID: correct {pct(c['answer_accuracy_id'])}, swapped {pct(s['answer_accuracy_id'])}, "
        f"no trace {pct(n['answer_accuracy_id'])}; validity ID {pct(c['trace_validity_id'])} vs "
        f"{pct(s['trace_validity_id'])}; OOD acc. {pct(c['answer_accuracy_ood'])} vs "
        f"{pct(s['answer_accuracy_ood'])}"
    )
    gap = c["answer_accuracy_id"] - s["answer_accuracy_id"]
    if gap <= 0.05 and s["trace_validity_id"] < c["trace_validity_id"] - 0.2:
        verdict, why = "reproduced", "swapped traces reach the correct-trace accuracy with invalid traces"
    elif s["answer_accuracy_id"] > n["answer_accuracy_id"] + 0.05:
        verdict = "partly"
        why = (
            f"swapped traces beat no traces but trail correct ones by {pct(gap)}; "
            "validity and accuracy come apart"
        )
    else:
        verdict = "not reproduced"
        why = f"swapped-trace accuracy is {pct(gap)} below correct traces and no better than no trace"
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
