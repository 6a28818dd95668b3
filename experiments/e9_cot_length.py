"""Finding 9 (Ghosal et al. 2025; Wu et al. 2025): more thinking is not always better.

Natural length: ``base``'s sampled traces (T=1) binned by their number of steps, solve rate per
bin, for in-distribution problems of each distance (the organism's difficulty). Forced length:
each time ``base`` (and ``rl-answer``) starts its answer (``A``), the answer is replaced ``k`` times
by an extra ``WAIT CHECK`` and the model continues (the paper appends "Wait"); answer accuracy per
``k``, and each problem's outcome per ``k`` (for paired intervals).

That forcing puts a check after the final ``;``, where training never puts one: a format break,
kept as a labelled control (``forced``). The verdict (:func:`claim`) needs forcing in the trained
format (checks after moves), under ``forced_in_format`` in the same form (:func:`forced_run` with
that forcing); without it the finding is not testable. With it: base's answer accuracy at the
largest ``k`` minus at ``k = 0``, paired over problems, must exclude zero downward.
"""

from collections.abc import Callable

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    Precondition,
    check_preconditions,
    fmt_interval,
    interval_verdict,
    measured,
    paired_interval,
)
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
HEAD = ClaimHead(FINDING, TITLE, PAPER)


def forced_run(model, prompts: list[str], is_correct: Callable, cfg: ForceConfig) -> dict:
    """:func:`probes.cot_length.forced_accuracy` with each problem's outcome per ``k`` kept
    (``per_problem[str(k)]``: 1 or 0 per prompt; absent if the outcomes could not be matched to ``k``)."""
    seen: list[list[int]] = [[] for _ in prompts]

    def recording(i: int, ids: list[int]) -> bool:
        ok = bool(is_correct(i, ids))
        seen[i].append(int(ok))
        return ok

    res = forced_accuracy(model, prompts, recording, cfg)
    out = {"ks": list(res.ks), "accuracy": list(res.accuracy), "mean_length": list(res.mean_length)}
    if all(len(s) == len(res.ks) for s in seen):  # one call per problem per k, in the order of ks
        out["per_problem"] = {str(k): [s[j] for s in seen] for j, k in enumerate(res.ks)}
    return out


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
        forced[name] = forced_run(ctx.model(name), prompts, organism_is_correct(world, problems, tok), cfg)
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


def _fall(f: dict) -> dict | None:
    """Accuracy at the largest forced ``k`` minus at ``k = 0``, paired over problems."""
    pp, ks = f.get("per_problem"), f["ks"]
    return paired_interval(pp[str(ks[-1])], pp[str(ks[0])]) if pp else None


def claim(r: dict) -> Claim:
    """Forcing must be measured in the trained format (precondition); then base's accuracy with
    the most forced checks minus without (paired over problems) must exclude zero downward."""
    control = r["forced"]["base"]
    text = [
        f"format-break control (check after the final ';'): base {pct(control['accuracy'][0])} -> "
        f"{pct(control['accuracy'][-1])} with {control['ks'][-1]} forced WAIT CHECKs, "
        f"change {fmt_interval(_fall(control))}"
        + "".join(f", {n} {fmt_interval(_fall(f))}" for n, f in r["forced"].items() if n != "base")
    ]
    in_format = (r.get("forced_in_format") or {}).get("base")
    fall = _fall(in_format) if in_format else None
    if in_format:
        text.insert(
            0,
            f"in the trained format: base {pct(in_format['accuracy'][0])} -> "
            f"{pct(in_format['accuracy'][-1])} with {in_format['ks'][-1]} forced checks, "
            f"change {fmt_interval(fall)}",
        )
    organism = "; ".join(text)
    pre = [
        Precondition(
            "forcing measured in the trained format (checks after moves)",
            in_format is not None,
            "measured" if in_format else "not measured: only the format-break control ran",
        ),
        measured("per-problem outcomes of the forcing", fall),
    ]
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    verdict = interval_verdict(fall, -1)
    why = (
        "forcing longer thinking in the trained format lowers accuracy (interval below zero)"
        if verdict == "reproduced"
        else "forcing longer thinking in the trained format does not lower accuracy beyond its interval"
    )
    return HEAD.claim(organism, verdict, why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
