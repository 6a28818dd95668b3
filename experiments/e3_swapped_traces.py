"""Finding 3 (Stechly et al. 2025): irrelevant (swapped) traces train about as well as correct ones.

Three arms, each a model of the zoo: correct traces (``base``), traces swapped in from unrelated
problems (``swapped``), and no traces. The zoo has no model trained from scratch without traces;
the no-trace arm is ``base`` asked in the answer-only format (same weights, no trace at test
time) and ``sft-answer`` (``base`` fine-tuned on answers only). Solution accuracy (the final
answer is a shortest path) and trace validity (the formal validator) are reported separately, in
and out of distribution. Newer zoos add a matched no-trace model trained from scratch
(``no-trace``, base's recipe with the traces moved to answers) and a plausible-but-wrong control
(``corrupt``); where they exist, ``no-trace`` is the no-trace arm of the verdict.

The verdict (:func:`claim`), on answer accuracy in distribution, paired over problems: first,
correct traces must beat no trace (interval above zero; otherwise nothing is there to match);
then swapped traces must beat no trace too (interval above zero), and a swapped arm significantly
below correct traces (interval below zero) makes it "partly". A parity claim cannot be shown by
an interval that includes zero, so the directional content (irrelevant traces carry the gain) is
what is tested.
"""

from experiments.claims import Claim
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    check_preconditions,
    combine,
    fmt_interval,
    holds,
    in_zoo,
    interval_verdict,
    model_details,
    paired_interval,
)

FINDING = 3
TITLE = "Irrelevant (swapped) traces train about as well as correct ones"
PAPER = "swapped-trace models match correct-trace accuracy; validity and accuracy come apart"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
TRACE_ARMS = (("correct", "base"), ("swapped", "swapped"), ("corrupt", "corrupt"))
WRONG_TRACES = ("swapped", "corrupt")


def run(ctx: Context) -> dict:
    arms = {}
    for label, name in TRACE_ARMS:
        if name != "base" and not in_zoo(ctx, [name]):
            continue
        m, det = ctx.evaluate(name), model_details(ctx, name)
        arms[label] = {
            "model": name,
            "answer_accuracy_id": m["cot_answer_accuracy_id"],
            "answer_accuracy_ood": m["cot_answer_accuracy_ood"],
            "trace_validity_id": m["trace_validity"],
            "trace_validity_ood": m["trace_validity_ood"],
            "solve_rate_id": m["solve_rate_id"],
            "solve_rate_ood": m["solve_rate_ood"],
            "per_problem": {
                "correct_id": det["answer_correct_id"],
                "correct_ood": det["answer_correct_ood"],
                "trace_valid_id": det.get("trace_valid_id"),  # when evaluate_model lists it
            },
        }
    no_trace = [("no_trace_base", "base"), ("no_trace_sft", "sft-answer")]
    no_trace += [("no_trace_model", n) for n in in_zoo(ctx, ["no-trace"])]
    for label, name in no_trace:
        m, det = ctx.evaluate(name), model_details(ctx, name)
        arms[label] = {
            "model": name,
            "answer_accuracy_id": m["answer_only_accuracy"],
            "answer_accuracy_ood": m["answer_only_accuracy_ood"],
            "per_problem": {
                "correct_id": det["answer_only_correct_id"],
                "correct_ood": det["answer_only_correct_ood"],
            },
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
    """Correct traces must beat no trace (precondition); then each wrong-trace arm must beat no
    trace (interval above zero) without falling significantly below correct traces."""
    a = r["arms"]
    none_label = "no_trace_model" if "no_trace_model" in a else "no_trace_base"
    none = a[none_label]["per_problem"]
    correct = a["correct"]["per_problem"]

    def diff(x: dict, y: dict, split: str = "id"):
        return paired_interval(x[f"correct_{split}"], y[f"correct_{split}"])

    label = "matched no-trace model" if none_label == "no_trace_model" else "base asked without a trace"
    gain = diff(correct, none)
    pre = [holds(f"correct traces beat no trace ({label}), answer accuracy ID", gain, +1)]
    text = [f"answer acc. ID - no trace ({a[none_label]['model']}): correct {fmt_interval(gain)}"]
    parts = {}
    for arm in (w for w in WRONG_TRACES if w in a):
        mine = a[arm]["per_problem"]
        over_none, vs_correct = diff(mine, none), diff(mine, correct)
        text.append(
            f"{arm} {fmt_interval(over_none)}; {arm} - correct: ID {fmt_interval(vs_correct)}, "
            f"OOD {fmt_interval(diff(mine, correct, 'ood'))}"
        )
        valid = (
            paired_interval(mine["trace_valid_id"], correct["trace_valid_id"])
            if (mine.get("trace_valid_id") and correct.get("trace_valid_id"))
            else None
        )
        if valid is not None:
            text.append(f"{arm} - correct trace validity ID {fmt_interval(valid)}")
        if over_none is None or interval_verdict(over_none, +1) == "not reproduced":
            parts[arm] = "not reproduced"
        else:  # carries a gain; a significant shortfall against correct traces makes it partial
            parts[arm] = "partly" if vs_correct is not None and vs_correct["high"] < 0 else "reproduced"
    organism = "; ".join(text)
    failed = check_preconditions(HEAD, organism, *pre)
    if failed or not parts:
        return failed or HEAD.claim(organism, "not testable", "not testable: no wrong-trace arm", pre)
    verdict = combine(list(parts.values()))
    why = "; ".join(
        f"{arm}: "
        + {
            "reproduced": "beats no trace and is not significantly below correct traces",
            "partly": "beats no trace but stays significantly below correct traces",
            "not reproduced": "does not beat no trace (interval includes or is below zero)",
        }[v]
        for arm, v in parts.items()
    )
    return HEAD.claim(organism, verdict, why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
