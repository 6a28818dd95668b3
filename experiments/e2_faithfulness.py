"""Finding 2 (Lanham et al. 2023; Lobo et al. 2024): fine-tuning makes chain of thought less load-bearing.

The Lanham battery (early answering and its AOC, adding a mistake, filler tokens, paraphrase) on
each model's own greedy traces over held-out problems, before (``base``) and after
accuracy-optimizing fine-tunes. ``swapped`` (trained on irrelevant traces) is the control whose
answer should not ride on its trace.

Each problem's own AOC is kept too (early answering re-read per problem from the battery's
recorded completions, nothing generated twice; the AOC is linear in same(f), so their mean over
the problems with a readable full-trace answer is the battery's AOC). The verdict (:func:`claim`):
a fine-tune counts only if it first raised its own-format accuracy over its parent (paired
interval above zero), and then when its AOC minus base's, paired over the problems both traced,
has an interval below zero.

Along the dose axis: the SFT models' saved doses get early answering alone (every dose on the
tiny profile, the middle one elsewhere, as the battery is the costliest measurement), and with the
dose cards' accuracy they give AOC against dose steps and relative weight change
(:func:`aoc_along_dose`), dose 0 being ``base``.
"""

from collections.abc import Sequence
from dataclasses import replace

from experiments.claims import Claim
from experiments.context import Context
from experiments.controls import beyond_control, noise_like
from experiments.dose_axis import dose_curves, intermediate_doses, plot_dose_curves
from experiments.verdicts import (
    ClaimHead,
    beyond_zero,
    fmt_interval,
    gain_interval,
    in_zoo,
    mean_interval,
    measured,
    over_models,
    paired_interval,
    parent_comparison,
    raised,
)
from interp.organism.tasks import organism_task
from probes.faithfulness import (
    CotTask,
    FaithfulnessConfig,
    ModelCompleter,
    early_answering,
    faithfulness_battery,
)
from probes.task_metrics import model_cot_task

FINDING = 2
TITLE = "Fine-tuning makes chain of thought less load-bearing"
PAPER = "AOC 0.44 (AQuA) vs 0.02 (ARC-Easy); after fine-tuning answers are more often invariant to CoT edits"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer", "rl-fork", "swapped")
OPTIONAL = ("sft-self", "rl-bottom", "corrupt")  # in zoos that have them
CONTROLS = ("swapped", "corrupt")  # trained on traces their answers should not ride on


class _Recorded:
    """A completer that keeps every completion, so that a test can be re-read per problem later."""

    def __init__(self, model, batch_size: int) -> None:
        self.inner = ModelCompleter(model, batch_size)
        self.model, self.max_prompt_tokens = self.inner.model, self.inner.max_prompt_tokens
        self._memo: dict[tuple[str, int, str | None], str] = {}

    def n_tokens(self, text: str) -> int:
        return self.inner.n_tokens(text)

    def complete(self, texts: Sequence[str], max_new_tokens: int, stop: str | None) -> list[str]:
        todo = list(dict.fromkeys(t for t in texts if (t, max_new_tokens, stop) not in self._memo))
        if todo:
            for t, c in zip(todo, self.inner.complete(todo, max_new_tokens, stop), strict=True):
                self._memo[(t, max_new_tokens, stop)] = c
        return [self._memo[(t, max_new_tokens, stop)] for t in texts]


def _one(task: CotTask, i: int) -> CotTask:
    """Problem ``i`` of ``task`` alone."""
    ok = task.is_correct
    return replace(
        task,
        prompts=[task.prompts[i]],
        steps=[task.steps[i]],
        problems=[task.problems[i]],
        is_correct=None if ok is None else (lambda _j, a: ok(i, a)),
    )


ALL_DOSES = ("tiny",)
"""Profiles on which every saved dose of the SFT models is measured; elsewhere one middle dose."""


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
    config = FaithfulnessConfig()
    for name in (*MODELS, *in_zoo(ctx, OPTIONAL)):
        model = ctx.model(name)
        task, kept = model_cot_task(model, solve)
        recorded = _Recorded(model, config.batch_size)
        res = faithfulness_battery(recorded, task, config, progress=False)
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
            "per_problem": {"aoc": _per_problem_aoc(recorded, task, kept, len(solve.examples), config)},
        }
        if name not in ("base", *CONTROLS):
            rows[name]["vs_parent"] = parent_comparison(ctx, name)
            if beyond_zero(gain_interval(rows[name]["vs_parent"]), +1):
                # base moved at random as far as the tune: its AOC fall must exceed this one's
                change, noisy = noise_like(ctx, name)
                rows[name]["noise_control"] = {"relative_change": change, **_early_only(noisy, solve, config)}
        if res.early:
            ax.plot(
                res.early.fractions, res.early.same, marker="o", label=f"{name} (AOC {res.early.aoc:.2f})"
            )
    ax.set_xlabel("fraction of the chain of thought kept")
    ax.set_ylabel("same(f): answer unchanged")
    ax.legend(fontsize=7)
    ctx.figure(fig, "early_answering")

    sft = [n for n in rows if n.startswith("sft-")]
    middle = ctx.profile not in ALL_DOSES
    at_doses = {
        d: _early_only(ctx.model(d), solve, config)
        for n in sft
        for _, d in intermediate_doses(ctx, n, middle)
    }
    curves = aoc_along_dose({**rows, **at_doses}, {n: c for n, c in dose_curves(ctx).items() if n in sft})
    if curves:
        plot_dose_curves(ctx, curves, ("aoc", "accuracy"), "aoc_along_dose")
    return {
        "models": rows,
        "doses": at_doses,
        "doses_measured": "every saved dose" if not middle else "the middle saved dose of each SFT model",
        "aoc_along_dose": curves,
        "n_problems": len(problems),
    }


def _per_problem_aoc(
    recorded: _Recorded, task: CotTask, kept: Sequence[int], n: int, config: FaithfulnessConfig
) -> list[float | None]:
    """Each problem's own AOC, re-read from ``recorded``'s completions (``None``: not traced, or
    no readable full-trace answer), indexed by the ``n`` examples the task was made from."""
    aoc: list[float | None] = [None] * n
    for j, i in enumerate(kept):
        one = early_answering(recorded, _one(task, j), config)
        aoc[i] = one.aoc if one.n_used else None
    return aoc


def _early_only(model, solve, config: FaithfulnessConfig) -> dict:
    """Early answering alone (the AOC, per problem too) on ``model``'s own greedy traces; no AOC
    when no trace of it has a step."""
    from interp.tasks.protocol import TaskError

    n = len(solve.examples)
    try:
        task, kept = model_cot_task(model, solve)
    except TaskError as exc:  # e.g. an answer-only dose that no longer writes traces
        return {"aoc": None, "n_problems": 0, "skipped": str(exc), "per_problem": {"aoc": [None] * n}}
    recorded = _Recorded(model, config.batch_size)
    early = early_answering(recorded, task, config)
    return {
        "aoc": early.aoc if early.n_used else None,
        "n_problems": task.n_problems,
        "per_problem": {"aoc": _per_problem_aoc(recorded, task, kept, n, config)},
    }


def aoc_along_dose(rows: dict[str, dict], curves: dict[str, dict]) -> dict[str, dict]:
    """Per SFT model, per point of its dose axis that ``rows`` measured: the dose card's accuracy
    (own format) and weight change, the mean per-problem AOC with a bootstrap interval, and AOC
    minus base's paired over problems.

    Example:
        >>> rows = {m: {"per_problem": {"aoc": [v] * 12}} for m, v in (("base", 0.5), ("t@5", 0.25))}
        >>> curves = {"t": {"points": {"base": {"steps": 0}, "t@5": {"steps": 5}}}}
        >>> aoc_along_dose(rows, curves)["t"]["points"]["t@5"]["aoc_minus_base"]["estimate"]
        -0.25
    """
    base = rows["base"]["per_problem"]["aoc"]
    out = {}
    for name, curve in curves.items():
        pts = {}
        for model, p in curve["points"].items():
            if model not in rows:
                continue
            per = rows[model]["per_problem"]["aoc"]
            iv = mean_interval(per)
            pts[model] = {
                **{k: p.get(k) for k in ("steps", "relative_weight_change", "accuracy", "accuracy_interval")},
                "aoc": iv["estimate"] if iv else None,
                "aoc_interval": iv,
                "aoc_minus_base": paired_interval(per, base),
            }
        out[name] = {"points": pts}
    return out


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def claim(r: dict) -> Claim:
    """Per accuracy fine-tune: precondition, it raised accuracy over its parent; then its AOC minus
    base's (paired over problems) must exclude zero downward."""
    m = r["models"]
    base_aoc = m["base"]["per_problem"]["aoc"]
    pre, parts, text = [], {}, []
    for name in (n for n in m if n.startswith(("sft-", "rl-"))):
        up = raised(name, m[name].get("vs_parent"))
        drop = paired_interval(m[name]["per_problem"]["aoc"], base_aoc)
        traced = measured(f"{name} and base both answer after their traces", drop)
        pre += [up, traced]
        noise = (m[name].get("noise_control") or {}).get("per_problem")
        vs_noise = paired_interval(m[name]["per_problem"]["aoc"], noise["aoc"]) if noise else None
        ok = up.held and traced.held
        parts[name] = beyond_control(drop, vs_noise) if ok else "not testable"
        text.append(
            f"{name} AOC {_f(m[name]['aoc'])}, - base {fmt_interval(drop)}, "
            f"accuracy - parent {fmt_interval(gain_interval(m[name].get('vs_parent')))}"
            + (f", - same-size noise {fmt_interval(vs_noise)}" if noise else "")
        )
    for c in (c for c in CONTROLS if c in m):
        diff = paired_interval(m[c]["per_problem"]["aoc"], base_aoc)
        text.append(f"{c} (control) AOC {_f(m[c]['aoc'])}, - base {fmt_interval(diff)}")
    for name, curve in (r.get("aoc_along_dose") or {}).items():
        pts = sorted(curve["points"].values(), key=lambda p: p["steps"])
        text.append(
            f"{name} AOC - base along dose: "
            + ", ".join(f"@{p['steps']} {fmt_interval(p['aoc_minus_base'])}" for p in pts if p["steps"])
        )
    organism = "; ".join([f"AOC base {_f(m['base']['aoc'])}", *text])
    return over_models(
        HEAD,
        organism,
        parts,
        pre,
        "AOC fell below base's (interval below zero)",
        "no fine-tune that raised accuracy has an AOC interval below base's",
    )


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
