"""Finding 7 (Wang et al. 2025, "Beyond the 80/20 rule"): reasoning decisions live in a minority of
high-entropy forking tokens, and RL mostly moves the distributions at those tokens.

The organism knows where the genuine forks are: a node choice after ``>`` where two or more
neighbours lie on a shortest path (``World.good_moves``). On ``base``'s sampled traces (T=1) we
measure the entropy at every response token, the top-20% forking tokens, which token types they
fall on, and how many genuine forks they catch (against the share of tokens that are genuine
forks). Then the shift ``KL(tuned || base)`` of ``rl-answer`` and ``rl-fork`` at each token of
their own sampled traces, against base's entropy there; and the RL variants' answer accuracy.

Per response the shift is kept as two numbers (:func:`shift_arrays`): its mean KL per token, and
its *excess concentration*, the share of its KL on base's high-entropy tokens minus the share of
its tokens that are high-entropy (0 when the shift ignores entropy).

The verdict (:func:`claim`) needs a noise control: base with random noise of the same relative
norm as RL's weight change, its shift measured the same way, under ``noise_weight_change`` (a
float) and ``noise_shift`` (:func:`shift_arrays` of it), beside ``rl_weight_change`` (per RL
model, from its card). Preconditions: all three measured, and rl-answer's mean KL per token
above the noise's (interval over responses above zero: RL moved the model beyond noise). Then
two parts: RL's excess concentration minus the noise's must exclude zero upward; and, given that
rl-answer raised accuracy over its parent, rl-fork's accuracy minus base's (paired over
problems) must exclude zero upward without rl-fork falling significantly below rl-answer.
"""

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    Precondition,
    check_preconditions,
    combine,
    diff_interval,
    fmt_interval,
    holds,
    in_zoo,
    interval_verdict,
    model_details,
    paired_interval,
    parent_comparison,
    raised,
)
from interp.organism import respond
from probes.entropy import distribution_shift, entropy_profile

FINDING = 7
TITLE = "Reasoning decisions live in high-entropy forking tokens"
PAPER = "top-20% entropy updates match (8B) or beat (14B, 32B) full updates; RL moves high-entropy tokens"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
RL_MODELS = ("rl-answer", "rl-fork")
OPTIONAL = ("rl-bottom",)  # the bottom-80% arm, in zoos that have it


def shift_arrays(sh) -> dict[str, list]:
    """Per response of a :class:`probes.entropy.ShiftResult`: mean KL per token (``mean_kl``) and
    the share of its KL on base's high-entropy tokens minus the share of its tokens that are
    high-entropy (``excess``; ``None`` where the response's KL is 0)."""
    mean_kl, excess = [], []
    for h, d in zip(sh.base_entropy, sh.shift, strict=True):
        d = d.double()
        high, total = h >= sh.threshold, float(d.sum())
        mean_kl.append(total / len(d) if len(d) else None)
        excess.append(
            float(d[high].sum()) / total - float(high.double().mean()) if total > 0 and len(d) else None
        )
    return {"mean_kl": mean_kl, "excess": excess}


def _genuine_forks(world, start: int, goal: int, words: list[str]) -> list[bool]:
    """Per response word: is it a node choice (after ``>``) with two or more shortest-path moves?"""
    out, cur = [], start
    for i, w in enumerate(words):
        is_fork = False
        if i > 0 and words[i - 1] == ">":
            is_fork = len(world.good_moves(cur, goal)) >= 2
        out.append(is_fork)
        if w == ";" and i + 1 < len(words) and words[i + 1].startswith("n"):
            cur = int(words[i + 1][1:]) if words[i + 1][1:].isdigit() else cur
    return out


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    prompts = [f"Q n{s} n{g} T" for s, g in problems]
    gen = torch.Generator().manual_seed(0)
    sampled = respond(ctx.model("base").module, tok, prompts, ctx.budget.max_new_tokens, 1.0, False, gen)
    keep = [i for i, r in enumerate(sampled) if r]
    prof = entropy_profile(
        ctx.model("base"), [prompts[i] for i in keep], [" ".join(sampled[i]) for i in keep]
    )
    forks, hits, n_tok, n_fork_tokens = 0, 0, 0, 0
    for i, h in zip(keep, prof.entropy, strict=True):
        s, g = problems[i]
        flags = _genuine_forks(world, s, g, sampled[i])[: len(h)]
        high = (h >= prof.threshold).tolist()
        forks += sum(flags)
        hits += sum(f and x for f, x in zip(flags, high, strict=False))
        n_tok += len(flags)
        n_fork_tokens += sum(high[: len(flags)])
    result = {
        "forking_share": prof.forking_share,
        "entropy_threshold": prof.threshold,
        "mean_entropy": prof.mean_entropy,
        "by_type": prof.by_type,
        "genuine_fork_share_of_tokens": forks / n_tok if n_tok else float("nan"),
        "genuine_forks_caught_by_top20": hits / forks if forks else float("nan"),
        "share_of_forking_tokens_that_are_genuine_forks": hits / n_fork_tokens
        if n_fork_tokens
        else float("nan"),
        "n_responses": len(keep),
    }
    shifts = {}
    for name in (*RL_MODELS, *in_zoo(ctx, OPTIONAL)):
        g2 = torch.Generator().manual_seed(1)
        own = respond(ctx.model(name).module, tok, prompts, ctx.budget.max_new_tokens, 1.0, False, g2)
        idx = [i for i, r in enumerate(own) if r]
        sh = distribution_shift(
            ctx.model("base"), ctx.model(name), [prompts[i] for i in idx], [" ".join(own[i]) for i in idx]
        )
        ev = ctx.evaluate(name)
        shifts[name] = {
            **sh.summary(),
            "solve_rate_id": ev["solve_rate_id"],
            "solve_rate_ood": ev["solve_rate_ood"],
            "per_response": shift_arrays(sh),
            "per_problem": {"correct": model_details(ctx, name)["answer_correct_id"]},
        }
    result["rl"] = shifts
    result["base_solve_rate_id"] = ctx.evaluate("base")["solve_rate_id"]
    result["per_problem"] = {"base_correct": model_details(ctx, "base")["answer_correct_id"]}
    result["vs_parent"] = {"rl-answer": parent_comparison(ctx, "rl-answer")}
    result["rl_weight_change"] = {n: ctx.card(n).get("relative_weight_change") for n in shifts}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    types = sorted(prof.by_type, key=lambda t: -prof.by_type[t].get("mean_entropy", 0))
    a1.bar(types, [prof.by_type[t].get("forking_rate", 0) for t in types])
    a1.set_ylabel("share of tokens in the top 20% entropy")
    a1.tick_params(axis="x", rotation=45)
    names = list(shifts)
    a2.bar(names, [shifts[n]["share_of_shift_on_high_entropy"] for n in names], label="share of KL shift")
    a2.axhline(shifts[names[0]]["share_of_tokens_high_entropy"], color="k", ls="--", label="share of tokens")
    a2.set_ylabel("on base's top-20% entropy tokens")
    a2.legend(fontsize=8)
    ctx.figure(fig, "forking_tokens")
    return result


def claim(r: dict) -> Claim:
    """RL must have moved the model beyond same-norm noise (precondition); then its shift must
    concentrate on high-entropy tokens beyond the noise's, and top-20% updates must carry the gain."""
    rl = r["rl"]
    full, fork = rl["rl-answer"], rl["rl-fork"]
    change = (r.get("rl_weight_change") or {}).get("rl-answer")
    noise = r.get("noise_shift")
    beyond_noise = diff_interval(full["per_response"]["mean_kl"], noise["mean_kl"]) if noise else None
    concentration = diff_interval(full["per_response"]["excess"], noise["excess"]) if noise else None
    base_ok = r["per_problem"]["base_correct"]
    fork_gain = paired_interval(fork["per_problem"]["correct"], base_ok)
    fork_vs_full = paired_interval(fork["per_problem"]["correct"], full["per_problem"]["correct"])
    text = [
        f"{pct(r['forking_share'])} of tokens are forking; they catch "
        f"{pct(r['genuine_forks_caught_by_top20'])} of genuine forks",
        f"rl-answer puts {pct(full['share_of_shift_on_high_entropy'])} of its KL shift on the "
        f"{pct(full['share_of_tokens_high_entropy'])} high-entropy tokens; excess concentration - noise "
        f"{fmt_interval(concentration)}",
        f"accuracy rl-fork - base {fmt_interval(fork_gain)}, "
        f"rl-fork - rl-answer {fmt_interval(fork_vs_full)}",
    ]
    if "rl-bottom" in rl:
        bottom = paired_interval(fork["per_problem"]["correct"], rl["rl-bottom"]["per_problem"]["correct"])
        text.append(f"rl-fork - rl-bottom {fmt_interval(bottom)}")
    organism = "; ".join(text)
    pre = [
        Precondition(
            "RL's relative weight change measured",
            change is not None,
            "not measured" if change is None else f"rl-answer {change:.4g}",
        ),
        Precondition(
            "same-norm noise control measured",
            noise is not None and r.get("noise_weight_change") is not None,
            "not measured" if noise is None else f"noise of relative norm {r.get('noise_weight_change')}",
        ),
        holds(
            "RL moved the model beyond noise (mean KL per token, rl-answer - noise)",
            beyond_noise,
            +1,
            "responses",
        ),
    ]
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    shift = interval_verdict(concentration, +1)
    up = raised("rl-answer", (r.get("vs_parent") or {}).get("rl-answer"))
    pre.append(up)
    if not up.held:
        updates = "not testable"
    else:  # the top-20% arm must gain over base and not fall significantly below full updates
        fork_worse = fork_vs_full is not None and fork_vs_full["high"] < 0
        updates = "not reproduced" if fork_worse else interval_verdict(fork_gain, +1)
    why = (
        f"shift concentrates on high-entropy tokens beyond noise: {shift}; top-20% updates carry the "
        f"gain: {updates}" + ("" if up.held else f" ({up.name} failed: {up.detail})")
    )
    return HEAD.claim(organism, combine([shift, updates]), why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
