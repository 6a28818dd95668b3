"""Finding 9 (Ghosal et al. 2025; Wu et al. 2025): more thinking is not always better.

Natural length: ``base``'s sampled traces (T=1) binned by their number of steps, solve rate per
bin, for in-distribution problems of each distance (the organism's difficulty). Forced length:
each time ``base`` (and ``rl-answer``) starts its answer (``A``), the answer is replaced ``k`` times
by an extra ``WAIT CHECK`` and the model continues (the paper appends "Wait"); answer accuracy per
``k``. An inverted U, or a fall with forced length, reproduces the finding.
"""

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from interp.organism import respond, validate_trace
from interp.organism.probing import organism_is_correct
from probes.cot_length import (
    ForceConfig,
    accuracy_by_length,
    forced_accuracy,
    organism_steps,
)

FINDING = 9
TITLE = "More thinking is not always better"
PAPER = "forcing longer thinking cut accuracy 87.3% -> 70.3%; accuracy is an inverted U in CoT length"
FORCED = (0, 1, 2, 4)


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    prompts = [f"Q n{s} n{g} T" for s, g in problems]
    gen = torch.Generator().manual_seed(0)
    reps = max(1, min(4, ctx.budget.samples // 4))
    sampled = respond(
        ctx.model("base").module, tok, prompts * reps, ctx.budget.max_new_tokens, 1.0, False, gen
    )
    probs = problems * reps
    correct = []
    for (s, g), words in zip(probs, sampled, strict=True):
        correct.append(validate_trace(world, s, g, words).valid)
    lengths = [organism_steps(w) for w in sampled]
    natural = accuracy_by_length(lengths, correct)
    by_dist = {}
    for d in sorted({world.dist(s, g) for s, g in probs}):
        idx = [i for i, (s, g) in enumerate(probs) if world.dist(s, g) == d]
        la = accuracy_by_length([lengths[i] for i in idx], [correct[i] for i in idx])
        by_dist[str(d)] = {"edges": list(la.edges), "counts": list(la.counts), "accuracy": list(la.accuracy)}
    forced = {}
    cfg = ForceConfig(ks=FORCED, max_new_tokens=ctx.budget.max_new_tokens)
    for name in ("base", "rl-answer"):
        res = forced_accuracy(ctx.model(name), prompts, organism_is_correct(world, problems, tok), cfg)
        forced[name] = {
            "ks": list(res.ks),
            "accuracy": list(res.accuracy),
            "mean_length": list(res.mean_length),
        }
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for d, v in by_dist.items():
        xs = [e for e, c in zip(v["edges"], v["counts"], strict=False) if c >= 3]
        ys = [a for a, c in zip(v["accuracy"], v["counts"], strict=False) if c >= 3]
        a1.plot(xs, ys, marker="o", label=f"distance {d}")
    a1.set_xlabel("steps in the trace (natural)")
    a1.set_ylabel("solve rate (bins with >= 3 traces)")
    a1.legend(fontsize=7)
    for name, v in forced.items():
        a2.plot(v["ks"], v["accuracy"], marker="o", label=name)
    a2.set_xlabel("forced extra WAIT CHECK")
    a2.set_ylabel("answer accuracy")
    a2.legend(fontsize=8)
    ctx.figure(fig, "length")
    return {
        "natural": {
            "edges": list(natural.edges),
            "counts": list(natural.counts),
            "accuracy": list(natural.accuracy),
        },
        "natural_by_distance": by_dist,
        "forced": forced,
        "n_responses": len(sampled),
    }


def claim(r: dict) -> Claim:
    f = r["forced"]["base"]
    acc0, acc_max = f["accuracy"][0], f["accuracy"][-1]
    rl = r["forced"]["rl-answer"]["accuracy"]
    organism = (
        f"base answer accuracy {pct(acc0)} unforced -> {pct(acc_max)} with {f['ks'][-1]} forced WAIT CHECKs "
        f"(rl-answer {pct(rl[0])} -> {pct(rl[-1])})"
    )
    if acc_max < acc0 - 0.05:
        verdict = "reproduced"
        why = (
            "forcing longer thinking lowers accuracy; caveat: the forced check follows a ';' where the "
            "trained checks follow a move, so part of the fall is a format shift, not length alone"
        )
    elif acc_max <= acc0 + 0.02:
        verdict, why = "partly", "forcing longer thinking does not help (nor clearly hurt)"
    else:
        verdict, why = "not reproduced", "forced extra checks raise accuracy on the organism"
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
