"""Finding 1 (Wu et al. 2025): SFT raises accuracy but cuts the Information Gain of reasoning steps.

Each model answers the held-out problems greedily in the chain-of-thought format; its traces are
split into steps (``;``-terminated) and scored by ONE fixed scorer that none of the compared
models is: ``small-base`` (base's recipe, another seed and size), so that every model's traces are
measured on the same scale and no model scores itself (the paper scores every model with one 7B
model). IG is ReasoningEval's per-step perplexity form (the verdict's: it penalises verbose
steps) and the clean form (drop in the answer's summed NLL after each step; total and
normalised by ``NLL(a | q)``, which telescopes and nearly maxes out on every valid trace).
``base`` as the scorer is kept as a labelled secondary number (``scored_by_base``). The reference
answer is the model's own answer when it is a shortest path, else the canonical shortest path.
Accuracy is each model's own-format answer accuracy, compared with ``base`` in the SAME format
(``sft-answer`` answers without a trace, so its baseline is ``base``'s answer-only accuracy;
``sft-clean`` and ``rl-answer`` answer after a trace, so theirs is ``base``'s chain-of-thought
accuracy). Traces that never reach an answer, or that with the answer exceed a scorer's context,
are skipped and counted.

Along the dose axis: every SFT model's saved doses (``sft-answer@50``, ...) are traced and scored
the same way; with the dose cards' accuracy (no generation) they give IG and accuracy against
dose steps and relative weight change (:func:`ig_along_dose`), dose 0 being ``base``.

The verdict (:func:`claim`): each SFT model must first have raised its own-format accuracy over
its parent (paired interval over problems above zero); only then is its IG compared with base's,
paired over the problems both traced, and it counts when that interval lies below zero.
"""

import math
from typing import Any

from experiments.claims import Claim, rel_change
from experiments.context import Context
from experiments.controls import beyond_control, noise_like
from experiments.dose_axis import accuracy_key, dose_curves, intermediate_doses, plot_dose_curves
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
from interp.organism import respond
from interp.organism.probing import organism_reference
from interp.organism.traces import cot_prompt
from probes.info_gain import info_gain, split_organism_trace

FINDING = 1
TITLE = "SFT raises accuracy but cuts Information Gain"
PAPER = "SFT models: InfoGain -38.9% on average while accuracy rises"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer")
OPTIONAL = ("sft-self",)  # in zoos that have it
SCORER = "small-base"
"""Scores every model's traces: base's recipe with another seed and size, so none of the compared
models scores itself (the paper scores every model with one model outside the comparison)."""
SECONDARY_SCORER = "base"  # kept as a labelled secondary number (a compared model: not the verdict)
IG_FORM = "ppl_info_gain"
"""The verdict's form of IG: the paper's per-step perplexity form (the clean total telescopes to
NLL(a|q) - NLL(a|q,trace), which every valid trace nearly maxes out); the clean total is shown too."""


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    problems = ctx.problems("test_id")
    models = (*MODELS, *in_zoo(ctx, OPTIONAL))
    primary = SCORER if in_zoo(ctx, [SCORER]) else SECONDARY_SCORER  # an older zoo has no small-base
    scorers = {"primary": ctx.model(primary), "secondary": ctx.model(SECONDARY_SCORER)}
    rows = {name: _measure(ctx, ctx.model(name), problems, scorers) for name in models}
    for name in models:
        fmt = ctx.card(name).get("format", "cot")
        rows[name].update(
            format=fmt,
            base_accuracy_same_format=ctx.evaluate("base")[accuracy_key(fmt)],
            answer_accuracy_own_format=ctx.evaluate(name)["answer_accuracy_id"],
            cot_answer_accuracy=ctx.evaluate(name)["cot_answer_accuracy_id"],
        )
        if name != "base":
            rows[name]["vs_parent"] = parent_comparison(ctx, name)
            if name.startswith("sft-") and beyond_zero(gain_interval(rows[name]["vs_parent"]), +1):
                # base moved at random as far as the tune: the tune's IG fall must exceed this one's
                change, noisy = noise_like(ctx, name)
                control = _measure(ctx, noisy, problems, {"primary": scorers["primary"]})
                rows[name]["noise_control"] = {"relative_change": change, **control}
    for name in models[1:]:
        for form in ("info_gain", IG_FORM):
            rows[name][f"{form}_change_vs_base"] = rel_change(
                rows[name].get(form, math.nan), rows["base"].get(form, math.nan)
            )
    sft = [n for n in models if n.startswith("sft-")]
    at_doses = {
        d: _measure(ctx, ctx.model(d), problems, scorers) for n in sft for _, d in intermediate_doses(ctx, n)
    }
    curves = ig_along_dose({**rows, **at_doses}, {n: c for n, c in dose_curves(ctx).items() if n in sft})

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in models:
        r = rows[name]
        if IG_FORM in r:
            ax.scatter(r[IG_FORM], r["answer_accuracy_own_format"], s=40)
            ax.annotate(name, (r[IG_FORM], r["answer_accuracy_own_format"]), fontsize=8)
    ax.set_xlabel(f"mean IG, per-step PPL form (scorer = {primary})")
    ax.set_ylabel("answer accuracy (own format)")
    ctx.figure(fig, "accuracy_vs_ig")
    if curves:
        plot_dose_curves(ctx, curves, (IG_FORM, "info_gain", "accuracy"), "ig_along_dose")
    return {
        "scorer": primary,
        "scorer_note": (
            f"{primary}: base's recipe with another seed and size, none of the compared models"
            if primary == SCORER
            else f"{primary}: the zoo has no {SCORER}, so one of the compared models scores"
        ),
        "scorer_fingerprint": scorers["primary"].fingerprint,
        "secondary_scorer": SECONDARY_SCORER,
        "models": rows,
        "doses": at_doses,
        "ig_along_dose": curves,
        "n_problems": len(problems),
    }


def _measure(ctx: Context, model, problems: list[tuple[int, int]], scorers: dict) -> dict:
    """``model``'s greedy traces on ``problems``, scored by each scorer: means and per-problem IG
    (``None`` where the trace was skipped), the secondary scorer's under ``scored_by_<name>``."""
    world, tok = ctx.world
    prompts = [cot_prompt(s, g) for s, g in problems]
    responses = respond(model.module, tok, prompts, ctx.budget.max_new_tokens)
    n_ctx = min(m.n_ctx for m in scorers.values())
    qs, traces, answers, scored, too_long, unanswered = [], [], [], [], 0, 0
    for i, ((s, g), prompt, words) in enumerate(zip(problems, prompts, responses, strict=True)):
        steps, own = split_organism_trace(words)
        if not steps or own is None:  # no trace, or no answer: the trace never finished
            unanswered += 1
            continue
        ref = organism_reference(world, s, g, words)
        if len(tok.encode(" ".join([prompt, *steps, "A", ref]))) > n_ctx:
            too_long += 1  # a scorer cannot read the whole trace plus answer
            continue
        qs.append(prompt)
        traces.append(steps)
        answers.append(ref)
        scored.append(i)
    entry: dict[str, Any] = {
        "traces_skipped_unfinished": unanswered,
        "traces_skipped_too_long": too_long,
        "traces_scored": len(traces),
    }
    for role, scorer in scorers.items():
        per: dict[str, list] = {form: [None] * len(problems) for form in ("info_gain", IG_FORM)}
        means: dict[str, Any] = {}
        if traces:
            res = info_gain(scorer, qs, traces, answers)
            means = res.means()
            for i, total, ppl in zip(scored, res.totals, res.ppl_info_gain, strict=True):
                per["info_gain"][i], per[IG_FORM][i] = total, ppl
        if role == "primary":
            entry.update(means, per_problem=per)
        else:
            entry[f"scored_by_{SECONDARY_SCORER}"] = {**means, "per_problem": per}
    return entry


def ig_along_dose(rows: dict[str, dict], curves: dict[str, dict]) -> dict[str, dict]:
    """Per SFT model, per point of its dose axis that ``rows`` measured: the dose card's accuracy
    (own format) and weight change, mean IG in both forms with bootstrap intervals, and IG (paper
    form) minus base's paired over problems.

    Example:
        >>> rows = {m: {"per_problem": {"info_gain": [1.0] * 12, IG_FORM: [v] * 12}}
        ...         for m, v in (("base", 0.5), ("t@5", 0.25))}
        >>> curves = {"t": {"points": {"base": {"steps": 0, "relative_weight_change": 0.0},
        ...                            "t@5": {"steps": 5, "relative_weight_change": 0.01}}}}
        >>> ig_along_dose(rows, curves)["t"]["points"]["t@5"]["ig_minus_base"]["estimate"]
        -0.25
    """
    base = rows["base"]["per_problem"][IG_FORM]
    out = {}
    for name, curve in curves.items():
        pts = {}
        for model, p in curve["points"].items():
            if model not in rows:
                continue
            per = rows[model]["per_problem"]
            pts[model] = {
                **{k: p.get(k) for k in ("steps", "relative_weight_change", "accuracy", "accuracy_interval")},
                **{f"{form}_interval": mean_interval(per[form]) for form in (IG_FORM, "info_gain")},
                "ig_minus_base": paired_interval(per[IG_FORM], base),
            }
            for form in (IG_FORM, "info_gain"):
                iv = pts[model][f"{form}_interval"]
                pts[model][form] = iv["estimate"] if iv else None
        out[name] = {"points": pts}
    return out


def claim(r: dict) -> Claim:
    """Per SFT model: precondition, it raised accuracy over its parent (paired interval > 0); then
    its IG minus base's over the problems both traced (paired) must exclude zero downward."""
    m = r["models"]
    pre, parts, text = [], {}, []
    for name in (n for n in m if n.startswith("sft-")):
        up = raised(name, m[name].get("vs_parent"))
        ig = {
            form: paired_interval(m[name]["per_problem"][form], m["base"]["per_problem"][form])
            for form in (IG_FORM, "info_gain")
        }
        traced = measured(f"{name} and base both traced", ig[IG_FORM])
        pre += [up, traced]
        noise = (m[name].get("noise_control") or {}).get("per_problem")
        vs_noise = paired_interval(m[name]["per_problem"][IG_FORM], noise[IG_FORM]) if noise else None
        ok = up.held and traced.held
        parts[name] = beyond_control(ig[IG_FORM], vs_noise) if ok else "not testable"
        text.append(
            f"{name}: IG (paper form) - base {fmt_interval(ig[IG_FORM])}, clean total - base "
            f"{fmt_interval(ig['info_gain'])} nats; accuracy - parent "
            f"{fmt_interval(gain_interval(m[name].get('vs_parent')))}"
            + (f"; IG (paper form) - same-size noise {fmt_interval(vs_noise)}" if noise else "")
        )
    for name, curve in (r.get("ig_along_dose") or {}).items():
        pts = sorted(curve["points"].values(), key=lambda p: p["steps"])
        text.append(
            f"{name} IG - base along dose: "
            + ", ".join(f"@{p['steps']} {fmt_interval(p['ig_minus_base'])}" for p in pts if p["steps"])
        )
    organism = (
        f"scorer {r.get('scorer', 'base')}; base IG (paper form) {m['base'].get(IG_FORM, math.nan):.3f}; "
        + "; ".join(text)
    )
    return over_models(
        HEAD,
        organism,
        parts,
        pre,
        "IG (paper form) fell below base's (interval below zero)",
        "no SFT model that raised accuracy has an IG interval below base's",
    )


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
