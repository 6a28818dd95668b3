"""Finding 7 (Wang et al. 2025, "Beyond the 80/20 rule"): reasoning decisions live in a minority of
high-entropy forking tokens, and RL mostly moves the distributions at those tokens.

The organism knows where the genuine forks are: a node choice after ``>`` where two or more
neighbours lie on a shortest path (``World.good_moves``). On ``base``'s sampled traces (T=1) we
measure the entropy at every response token, the top-20% forking tokens, which token types they
fall on, and how many genuine forks they catch (against the share of tokens that are genuine
forks). Then the shift ``KL(tuned || base)`` of ``rl-answer`` and ``rl-fork`` at each token of
their own sampled traces, against base's entropy there; and the two RL variants' solve rates.
"""

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from interp.organism import respond
from probes.entropy import distribution_shift, entropy_profile

FINDING = 7
TITLE = "Reasoning decisions live in high-entropy forking tokens"
PAPER = "top-20% entropy updates match (8B) or beat (14B, 32B) full updates; RL moves high-entropy tokens"


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
    for name in ("rl-answer", "rl-fork"):
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
        }
    result["rl"] = shifts
    result["base_solve_rate_id"] = ctx.evaluate("base")["solve_rate_id"]
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
    rl = r["rl"]
    on_high = rl["rl-answer"]["share_of_shift_on_high_entropy"]
    tok_high = rl["rl-answer"]["share_of_tokens_high_entropy"]
    fork_sr, full_sr = rl["rl-fork"]["solve_rate_id"], rl["rl-answer"]["solve_rate_id"]
    organism = (
        f"{pct(r['forking_share'])} of tokens are forking; they catch "
        f"{pct(r['genuine_forks_caught_by_top20'])} of genuine forks (which are "
        f"{pct(r['share_of_forking_tokens_that_are_genuine_forks'])} of them); rl-answer puts "
        f"{pct(on_high)} of its KL shift on the {pct(tok_high)} high-entropy tokens; "
        f"solve rate rl-fork {pct(fork_sr)} vs rl-answer {pct(full_sr)}"
    )
    moved = on_high > 2 * tok_high
    matched = fork_sr >= full_sr - 0.02
    if moved and matched:
        verdict, why = (
            "reproduced",
            "RL's shift concentrates on high-entropy tokens, and top-20% updates match full ones",
        )
    elif moved or matched:
        what = "the shift concentrates on high-entropy tokens" if moved else "top-20% updates match full ones"
        verdict, why = "partly", f"only one half holds: {what}"
    else:
        verdict, why = "not reproduced", "neither the shift concentration nor the top-20% parity holds"
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
