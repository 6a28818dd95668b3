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
"""

from experiments.claims import Claim, pct, rel_change
from experiments.context import Context
from interp.organism import respond
from interp.organism.probing import organism_reference
from probes.info_gain import info_gain, split_organism_trace

FINDING = 1
TITLE = "SFT raises accuracy but cuts Information Gain"
PAPER = "SFT models: InfoGain -38.9% on average while accuracy rises"
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer")


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    prompts = [f"Q n{s} n{g} T" for s, g in problems]
    scorer = ctx.model("base")
    rows, curves = {}, {}
    for name in MODELS:
        responses = respond(ctx.model(name).module, tok, prompts, ctx.budget.max_new_tokens)
        qs, traces, answers, too_long, unanswered = [], [], [], 0, 0
        for (s, g), prompt, words in zip(problems, prompts, responses, strict=True):
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
        if traces:
            res = info_gain(scorer, qs, traces, answers)
            entry.update(res.means())
            curves[name] = res
        rows[name] = entry
    base_ig = rows["base"].get("info_gain", float("nan"))
    for name in MODELS[1:]:
        rows[name]["info_gain_change_vs_base"] = rel_change(
            rows[name].get("info_gain", float("nan")), base_ig
        )
        rows[name]["ppl_info_gain_change_vs_base"] = rel_change(
            rows[name].get("ppl_info_gain", float("nan")), rows["base"].get("ppl_info_gain", float("nan"))
        )
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name in MODELS:
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
    m = r["models"]
    base = m["base"]
    ig = base.get("info_gain", float("nan"))
    parts = [f"base IG {ig:.2f} nats, acc. {pct(base['answer_accuracy_own_format'])}"]
    sft_rows = []
    for name in ("sft-answer", "sft-clean"):
        x = m[name]
        change, acc = pct(x["info_gain_change_vs_base"]), pct(x["answer_accuracy_own_format"])
        parts.append(f"{name} IG {change} vs base, acc. {acc} (base {pct(x['base_accuracy_same_format'])})")
        sft_rows.append(x)
    organism = "; ".join(parts)
    acc_up = [x["answer_accuracy_own_format"] > x["base_accuracy_same_format"] for x in sft_rows]
    ig_down = [x["info_gain_change_vs_base"] < -0.05 for x in sft_rows]
    if all(acc_up) and all(ig_down):
        verdict, why = "reproduced", "both SFT models answer more accurately with less informative steps"
    elif any(a and d for a, d in zip(acc_up, ig_down, strict=True)):
        verdict, why = "partly", "one SFT model shows the accuracy-up, IG-down pattern; the other does not"
    elif any(ig_down):
        verdict, why = "partly", "IG falls after SFT, but accuracy does not rise with it"
    else:
        verdict, why = "not reproduced", "SFT did not lower the steps' Information Gain by more than 5%"
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
