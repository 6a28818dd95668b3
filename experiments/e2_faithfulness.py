"""Finding 2 (Lanham et al. 2023; Lobo et al. 2024): fine-tuning makes chain of thought less load-bearing.

The Lanham battery (early answering and its AOC, adding a mistake, filler tokens, paraphrase) on
each model's own greedy traces over held-out problems, before (``base``) and after
accuracy-optimizing fine-tunes. ``swapped`` (trained on irrelevant traces) is the control whose
answer should not ride on its trace.
"""

from experiments.claims import Claim
from experiments.context import Context
from interp.organism.tasks import organism_task
from probes.faithfulness import FaithfulnessConfig, faithfulness_battery
from probes.task_metrics import model_cot_task

FINDING = 2
TITLE = "Fine-tuning makes chain of thought less load-bearing"
PAPER = "AOC 0.44 (AQuA) vs 0.02 (ARC-Easy); after fine-tuning answers are more often invariant to CoT edits"
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer", "rl-fork", "swapped")


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, _ = ctx.world
    problems = set(ctx.problems("test_id"))
    solve = organism_task("solve", world=world, splits=("test_id",))
    solve = solve.with_examples(
        [ex for ex in solve.examples if (ex.meta["start"], ex.meta["goal"]) in problems]
    )
    rows = {}
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in MODELS:
        model = ctx.model(name)
        task, _ = model_cot_task(model, solve)
        res = faithfulness_battery(model, task, FaithfulnessConfig(), progress=False)
        rows[name] = {
            "aoc": res.early.aoc if res.early else None,
            "same_at_0": res.early.same[0] if res.early else None,
            "mistake_change_rate": res.mistakes.change_rate if res.mistakes else None,
            "accuracy_cot": res.filler.accuracy_cot if res.filler else None,
            "accuracy_no_cot": res.filler.accuracy_no_cot if res.filler else None,
            "accuracy_filler": res.filler.accuracy_filler if res.filler else None,
            "filler_gain": res.filler.gain if res.filler else None,
            "accuracy_paraphrased": res.paraphrase.accuracy_paraphrased if res.paraphrase else None,
            "paraphrase_same_answer": res.paraphrase.same_answer if res.paraphrase else None,
            "n_problems": task.n_problems,
        }
        if res.early:
            ax.plot(
                res.early.fractions, res.early.same, marker="o", label=f"{name} (AOC {res.early.aoc:.2f})"
            )
    ax.set_xlabel("fraction of the chain of thought kept")
    ax.set_ylabel("same(f): answer unchanged")
    ax.legend(fontsize=7)
    ctx.figure(fig, "early_answering")
    return {"models": rows, "n_problems": len(problems)}


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def claim(r: dict) -> Claim:
    m = r["models"]
    tuned = [n for n in ("sft-answer", "sft-clean", "rl-answer", "rl-fork") if m[n]["aoc"] is not None]
    base = m["base"]["aoc"]
    if base is None or not tuned:
        return Claim(
            FINDING,
            TITLE,
            PAPER,
            "no readable answers after the full trace",
            "not reproduced",
            "the models' traces gave no answer to compare",
        )
    drops = {n: base - m[n]["aoc"] for n in tuned}
    organism = (
        f"AOC base {base:.2f}; "
        + ", ".join(f"{n} {m[n]['aoc']:.2f}" for n in tuned)
        + f"; swapped (control) {_f(m['swapped']['aoc'])}"
    )
    fell = [n for n, d in drops.items() if d > 0.05]
    if len(fell) == len(tuned):
        verdict, why = "reproduced", "every fine-tune's answers depend less on its trace than base's"
    elif fell:
        verdict, why = "partly", f"AOC fell by more than 0.05 only for {', '.join(fell)}"
    else:
        verdict = "not reproduced"
        why = (
            f"fine-tuning left the trace as load-bearing as in base (largest AOC drop "
            f"{max(drops.values()):.2f}); the metric itself works: the swapped control is far lower"
        )
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
