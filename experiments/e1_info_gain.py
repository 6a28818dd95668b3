"""Finding 1 (Wu et al. 2025): SFT raises accuracy but cuts the Information Gain of reasoning steps.

Each model answers the held-out problems greedily in the chain-of-thought format; its traces are
split into steps (``;``-terminated) and scored by ONE fixed scorer, ``base``, so that every model's
traces are measured on the same scale (the paper scores every model with one 7B model). IG is
the clean form (drop in the answer's summed NLL after each step; total and normalised by
``NLL(a | q)``) and the paper's PPL form. The reference answer is the model's own answer when it
is a shortest path, else the canonical shortest path. Accuracy is each model's own-format answer
accuracy, compared with ``base`` in the SAME format (``sft-answer`` answers without a trace, so
its baseline is ``base``'s answer-only accuracy; ``sft-clean`` and ``rl-answer`` answer after a
trace, so theirs is ``base``'s chain-of-thought accuracy). Traces that never reach an answer, or
that with the answer exceed the scorer's context, are skipped and counted.

The verdict (:func:`claim`): each SFT model must first have raised its own-format accuracy over
its parent (paired interval over problems above zero); only then is its IG compared with base's,
paired over the problems both traced, and it counts when that interval lies below zero.
"""

from experiments.claims import Claim, rel_change
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    fmt_interval,
    gain_interval,
    in_zoo,
    interval_verdict,
    measured,
    over_models,
    paired_interval,
    parent_comparison,
    raised,
)
from interp.organism import respond
from interp.organism.probing import organism_reference
from probes.info_gain import info_gain, split_organism_trace

FINDING = 1
TITLE = "SFT raises accuracy but cuts Information Gain"
PAPER = "SFT models: InfoGain -38.9% on average while accuracy rises"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer")
OPTIONAL = ("sft-self",)  # in zoos that have it
IG_FORM = "ppl_info_gain"
"""The verdict's form of IG: the paper's per-step perplexity form (the clean total telescopes to
NLL(a|q) - NLL(a|q,trace), which every valid trace nearly maxes out); the clean total is shown too."""


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    prompts = [f"Q n{s} n{g} T" for s, g in problems]
    scorer = ctx.model("base")
    models = (*MODELS, *in_zoo(ctx, OPTIONAL))
    rows, curves = {}, {}
    for name in models:
        responses = respond(ctx.model(name).module, tok, prompts, ctx.budget.max_new_tokens)
        qs, traces, answers, scored, too_long, unanswered = [], [], [], [], 0, 0
        for i, ((s, g), prompt, words) in enumerate(zip(problems, prompts, responses, strict=True)):
            steps, own = split_organism_trace(words)
            if not steps or own is None:  # no trace, or no answer: the trace never finished
                unanswered += 1
                continue
            ref = organism_reference(world, s, g, words)
            if len(tok.encode(" ".join([prompt, *steps, "A", ref]))) > scorer.n_ctx:
                too_long += 1  # the scorer cannot read the whole trace plus answer
                continue
            qs.append(prompt)
            traces.append(steps)
            answers.append(ref)
            scored.append(i)
        fmt = ctx.card(name).get("format", "cot")
        key = "answer_only_accuracy" if fmt == "answer" else "cot_answer_accuracy_id"
        entry = {
            "format": fmt,
            "base_accuracy_same_format": ctx.evaluate("base")[key],
            "traces_skipped_unfinished": unanswered,
            "traces_skipped_too_long": too_long,
            "answer_accuracy_own_format": ctx.evaluate(name)["answer_accuracy_id"],
            "cot_answer_accuracy": ctx.evaluate(name)["cot_answer_accuracy_id"],
            "traces_scored": len(traces),
        }
        per_problem: dict[str, list] = {form: [None] * len(problems) for form in ("info_gain", IG_FORM)}
        if traces:
            res = info_gain(scorer, qs, traces, answers)
            entry.update(res.means())
            curves[name] = res
            for i, total, ppl in zip(scored, res.totals, res.ppl_info_gain, strict=True):
                per_problem["info_gain"][i], per_problem["ppl_info_gain"][i] = total, ppl
        entry["per_problem"] = per_problem
        if name != "base":
            entry["vs_parent"] = parent_comparison(ctx, name)
        rows[name] = entry
    base_ig = rows["base"].get("info_gain", float("nan"))
    for name in models[1:]:
        rows[name]["info_gain_change_vs_base"] = rel_change(
            rows[name].get("info_gain", float("nan")), base_ig
        )
        rows[name]["ppl_info_gain_change_vs_base"] = rel_change(
            rows[name].get("ppl_info_gain", float("nan")), rows["base"].get("ppl_info_gain", float("nan"))
        )
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in models:
        r = rows[name]
        if "info_gain" in r:
            ax.scatter(r["info_gain"], r["answer_accuracy_own_format"], s=40)
            ax.annotate(name, (r["info_gain"], r["answer_accuracy_own_format"]), fontsize=8)
    ax.set_xlabel("mean total Information Gain (nats, scorer = base)")
    ax.set_ylabel("answer accuracy (own format)")
    ctx.figure(fig, "accuracy_vs_ig")
    return {
        "scorer": "base",
        "scorer_fingerprint": scorer.fingerprint,
        "models": rows,
        "n_problems": len(problems),
    }


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
        parts[name] = interval_verdict(ig[IG_FORM], -1) if up.held and traced.held else "not testable"
        text.append(
            f"{name}: IG (paper form) - base {fmt_interval(ig[IG_FORM])}, clean total - base "
            f"{fmt_interval(ig['info_gain'])} nats; accuracy - parent "
            f"{fmt_interval(gain_interval(m[name].get('vs_parent')))}"
        )
    organism = f"base IG (paper form) {m['base'].get(IG_FORM, float('nan')):.3f}; " + "; ".join(text)
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
