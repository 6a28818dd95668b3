"""Finding 7 (Wang et al. 2025, "Beyond the 80/20 rule"): reasoning decisions live in a minority of
high-entropy forking tokens, and RL mostly moves the distributions at those tokens.

The organism knows where the genuine forks are: a node choice after ``>`` where two or more
neighbours lie on a shortest path (``World.good_moves``). On ``base``'s sampled traces (T=1) we
measure the entropy at every response token, the top-20% forking tokens, which token types they
fall on, and how many genuine forks they catch (against the share of tokens that are genuine
forks). Then the shift ``KL(tuned || base)`` of each RL arm (``rl-answer``, ``rl-fork`` updated
on the top-20% entropy tokens, ``rl-bottom`` on the bottom 80%) at each token of its own sampled
traces, against base's entropy there; each arm's answer accuracy and solve rate on ``test_id``
(per problem) and its reward curve (from its card).

Two controls of matched relative size, measured the same way: ``base`` plus seeded Gaussian noise,
every weight tensor moved by rl-answer's relative weight change times its own norm
(:func:`noisy_copy`), and the dose of an SFT model (``sft-clean``, ``sft-self``) whose relative
weight change is closest to rl-answer's (:func:`matched_sft_dose`), reported beside RL and noise.

Per response the shift is kept (:func:`shift_arrays`) as its mean KL per token, its KL on base's
high-entropy tokens and in all, and its counts of high-entropy and all tokens. The *excess
concentration* is the pooled share of the KL on high-entropy tokens minus the pooled share of
high-entropy tokens (0 when the shift ignores entropy): the quantity the report states, so that
its interval (:func:`pooled_excess_diff`, a bootstrap over responses of the pooled ratio) can
never disagree in sign with it.

The verdict (:func:`claim`) needs the noise control: its shift under ``noise_shift``
(:func:`shift_arrays` of it) and its measured relative weight change under ``noise_weight_change``,
beside ``rl_weight_change`` (per RL model, from its card). Preconditions: all three measured, and
rl-answer's mean KL per token above the noise's (interval over responses above zero: RL moved the
model beyond noise). Then two parts: RL's excess concentration minus the noise's must exclude
zero upward; and, given that rl-answer raised accuracy over its parent, rl-fork's accuracy minus
base's (paired over problems) must exclude zero upward without rl-fork falling significantly below
rl-answer.
"""

import math

import torch

from experiments.claims import Claim, pct
from experiments.context import Context
from experiments.controls import NOISE_SEED, noisy_copy
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
    mean_interval,
    model_details,
    paired_interval,
    parent_comparison,
    raised,
)
from interp.models import Model
from interp.organism import dose_axis, respond
from interp.organism.rl import relative_weight_change
from interp.organism.traces import cot_prompt
from probes.entropy import distribution_shift, entropy_profile

FINDING = 7
TITLE = "Reasoning decisions live in high-entropy forking tokens"
PAPER = "top-20% entropy updates match (8B) or beat (14B, 32B) full updates; RL moves high-entropy tokens"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
RL_MODELS = ("rl-answer", "rl-fork")
OPTIONAL = ("rl-bottom",)  # the bottom-80% arm, in zoos that have it
SFT_MODELS = ("sft-clean", "sft-self")  # candidates for the SFT shift of matched relative size


def shift_arrays(sh) -> dict[str, list]:
    """Per response of a :class:`probes.entropy.ShiftResult`: mean KL per token (``mean_kl``) and
    the share of its KL on base's high-entropy tokens minus the share of its tokens that are
    high-entropy (``excess``; ``None`` where the response's KL is 0)."""
    out: dict[str, list] = {k: [] for k in ("mean_kl", "excess", "kl_high", "kl_total", "n_high", "n_tokens")}
    for h, d in zip(sh.base_entropy, sh.shift, strict=True):
        d = d.double()
        high, total = h >= sh.threshold, float(d.sum())
        out["mean_kl"].append(total / len(d) if len(d) else None)
        out["excess"].append(
            float(d[high].sum()) / total - float(high.double().mean()) if total > 0 and len(d) else None
        )
        out["kl_high"].append(float(d[high].sum()))
        out["kl_total"].append(total)
        out["n_high"].append(int(high.sum()))
        out["n_tokens"].append(len(d))
    return out


def pooled_excess(arrays: dict[str, list], idx=None) -> float:
    """Pooled share of KL on high-entropy tokens minus pooled share of high-entropy tokens, over
    the responses ``idx`` (all by default) of :func:`shift_arrays`'s lists."""
    import numpy as np

    a = {k: np.asarray(arrays[k], dtype=float) for k in ("kl_high", "kl_total", "n_high", "n_tokens")}
    if idx is not None:
        a = {k: v[idx] for k, v in a.items()}
    total, tokens = a["kl_total"].sum(), a["n_tokens"].sum()
    if total <= 0 or tokens <= 0:
        return float("nan")
    return float(a["kl_high"].sum() / total - a["n_high"].sum() / tokens)


def pooled_excess_diff(a: dict[str, list], b: dict[str, list], resamples: int = 2000, seed: int = 0):
    """Bootstrap 95% interval of :func:`pooled_excess` of ``a`` minus that of ``b``, the responses
    of each resampled on their own (they are different samples); ``None`` without the lists.

    Example:
        >>> a = {"kl_high": [3.0, 1.0], "kl_total": [4.0, 2.0], "n_high": [1, 1], "n_tokens": [5, 5]}
        >>> b = {"kl_high": [1.0, 1.0], "kl_total": [4.0, 4.0], "n_high": [1, 1], "n_tokens": [5, 5]}
        >>> round(pooled_excess_diff(a, b)["estimate"], 4)
        0.4167
    """
    import numpy as np

    from experiments.real.common import interval
    from probes.stats import Interval

    if not a or not b or "kl_total" not in a or "kl_total" not in b:
        return None
    na, nb = len(a["kl_total"]), len(b["kl_total"])
    if na < 1 or nb < 1:
        return None
    rng = np.random.default_rng(seed)
    stats = np.array(
        [
            pooled_excess(a, rng.integers(0, na, na)) - pooled_excess(b, rng.integers(0, nb, nb))
            for _ in range(resamples)
        ]
    )
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None
    low, high = np.percentile(stats, [2.5, 97.5])
    est = pooled_excess(a) - pooled_excess(b)
    return interval(Interval(float(est), float(low), float(high), 0.95, na + nb, "percentile-bootstrap"))


def matched_sft_dose(ctx: Context, target: float) -> tuple[str, float] | None:
    """The dose of an SFT model (:data:`SFT_MODELS`, final models included) whose card's relative
    weight change is closest to ``target``, with that change; ``None`` when the zoo has none."""
    best: tuple[str, float] | None = None
    for name in in_zoo(ctx, SFT_MODELS):
        for steps, dose in dose_axis(name, ctx.zoo):
            change = ctx.card(dose).get("relative_weight_change") if steps > 0 else None
            if change is not None and (best is None or abs(change - target) < abs(best[1] - target)):
                best = (dose, float(change))
    return best


def _genuine_forks(world, start: int, goal: int, words: list[str]) -> list[bool]:
    """Per response word: is it a node choice (after ``>``) with two or more shortest-path moves?

    The current node is the one a step starts with (the node after ``;``, or ``start``); a check's
    look-ahead (``WAIT CHECK n17 : n4 n22 D 1 OK``) has no ``>``, and a retracted mistake's new
    choice (``BAD BACK > n17``) is a choice at the same node."""
    out, cur = [], start
    for i, w in enumerate(words):
        is_fork = False
        if i > 0 and words[i - 1] == ">":
            is_fork = len(world.good_moves(cur, goal)) >= 2
        out.append(is_fork)
        if w == ";" and i + 1 < len(words) and words[i + 1].startswith("n"):
            cur = int(words[i + 1][1:]) if words[i + 1][1:].isdigit() else cur
    return out


def _own_shift(ctx: Context, base: Model, tuned: Model, prompts: list[str]) -> dict:
    """``tuned``'s shift from base on its own sampled responses (T=1, seed 1): the summary and
    :func:`shift_arrays`."""
    _, tok = ctx.world
    gen = torch.Generator().manual_seed(1)
    own = respond(tuned.module, tok, prompts, ctx.budget.max_new_tokens, 1.0, False, gen)
    idx = [i for i, r in enumerate(own) if r]
    sh = distribution_shift(base, tuned, [prompts[i] for i in idx], [" ".join(own[i]) for i in idx])
    return {**sh.summary(), "per_response": shift_arrays(sh)}


def _mean(xs: list) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run(ctx: Context) -> dict:
    import matplotlib.pyplot as plt

    world, tok = ctx.world
    base = ctx.model("base")
    problems = ctx.problems("test_id")
    prompts = [cot_prompt(s, g) for s, g in problems]
    gen = torch.Generator().manual_seed(0)
    sampled = respond(base.module, tok, prompts, ctx.budget.max_new_tokens, 1.0, False, gen)
    keep = [i for i, r in enumerate(sampled) if r]
    prof = entropy_profile(base, [prompts[i] for i in keep], [" ".join(sampled[i]) for i in keep])
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
    shifts, curves = {}, {}
    for name in (*RL_MODELS, *in_zoo(ctx, OPTIONAL)):
        det = model_details(ctx, name)
        card = ctx.card(name)
        shifts[name] = {
            **_own_shift(ctx, base, ctx.model(name), prompts),
            "answer_accuracy_id": _mean(det["answer_correct_id"]),
            "solve_rate_id": _mean(det["solved_id"]),
            "per_problem": {"correct": det["answer_correct_id"], "solved": det["solved_id"]},
        }
        curves[name] = list((card.get("train_stats") or {}).get("reward_curve") or [])
    result["rl"] = shifts
    result["reward_curves"] = curves
    base_det = model_details(ctx, "base")
    result["base_answer_accuracy_id"] = _mean(base_det["answer_correct_id"])
    result["base_solve_rate_id"] = _mean(base_det["solved_id"])
    result["per_problem"] = {
        "base_correct": base_det["answer_correct_id"],
        "base_solved": base_det["solved_id"],
    }
    result["vs_parent"] = {"rl-answer": parent_comparison(ctx, "rl-answer")}
    result["rl_weight_change"] = {n: ctx.card(n).get("relative_weight_change") for n in shifts}
    change = result["rl_weight_change"].get("rl-answer")
    if change is not None:  # the controls of matched relative size
        noisy = noisy_copy(base, float(change))
        result["noise_weight_change"] = relative_weight_change(noisy.module, base.module)
        noise = _own_shift(ctx, base, noisy, prompts)
        result["noise_shift"] = noise.pop("per_response")
        result["noise"] = {**noise, "seed": NOISE_SEED}
        dose = matched_sft_dose(ctx, float(change))
        if dose is not None:
            result["sft_matched"] = {
                "model": dose[0],
                "relative_weight_change": dose[1],
                **_own_shift(ctx, base, ctx.model(dose[0]), prompts),
            }
    _figure(ctx, prof, result, plt)
    return result


def _figure(ctx: Context, prof, result: dict, plt) -> None:
    shifts = result["rl"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.5))
    types = sorted(prof.by_type, key=lambda t: -prof.by_type[t].get("mean_entropy", 0))
    a1.bar(types, [prof.by_type[t].get("forking_rate", 0) for t in types])
    a1.set_ylabel("share of tokens in the top 20% entropy")
    a1.tick_params(axis="x", rotation=45)
    bars = {n: v["share_of_shift_on_high_entropy"] for n, v in shifts.items()}
    if "noise" in result:
        bars["noise (matched)"] = result["noise"]["share_of_shift_on_high_entropy"]
    if "sft_matched" in result:
        bars[f"{result['sft_matched']['model']} (matched)"] = result["sft_matched"][
            "share_of_shift_on_high_entropy"
        ]
    a2.bar(list(bars), list(bars.values()), label="share of KL shift")
    a2.axhline(
        next(iter(shifts.values()))["share_of_tokens_high_entropy"],
        color="k",
        ls="--",
        label="share of tokens",
    )
    a2.set_ylabel("on base's top-20% entropy tokens")
    a2.tick_params(axis="x", rotation=30)
    a2.legend(fontsize=8)
    for name, curve in result["reward_curves"].items():
        a3.plot(range(1, len(curve) + 1), curve, label=name)
    a3.set_xlabel("RL step")
    a3.set_ylabel("mean reward (card's train_stats.reward_curve)")
    if a3.lines:
        a3.legend(fontsize=8)
    ctx.figure(fig, "forking_tokens")


def claim(r: dict) -> Claim:
    """RL must have moved the model beyond same-norm noise (precondition); then its shift must
    concentrate on high-entropy tokens beyond the noise's, and top-20% updates must carry the gain."""
    rl = r["rl"]
    full, fork = rl["rl-answer"], rl["rl-fork"]
    change = (r.get("rl_weight_change") or {}).get("rl-answer")
    noise = r.get("noise_shift")
    beyond_noise = diff_interval(full["per_response"]["mean_kl"], noise["mean_kl"]) if noise else None
    concentration = pooled_excess_diff(full["per_response"], noise) if noise else None
    base_ok = r["per_problem"]["base_correct"]
    fork_gain = paired_interval(fork["per_problem"]["correct"], base_ok)
    fork_vs_full = paired_interval(fork["per_problem"]["correct"], full["per_problem"]["correct"])
    text = [
        f"{pct(r['forking_share'])} of tokens are forking; they catch "
        f"{pct(r['genuine_forks_caught_by_top20'])} of genuine forks",
        f"rl-answer puts {_share(full['share_of_shift_on_high_entropy'])} of its KL shift on the "
        f"{pct(full['share_of_tokens_high_entropy'])} high-entropy tokens"
        + _controls_text(r)
        + f"; excess concentration - noise {fmt_interval(concentration)}",
        _arms_text(r),
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
            "not measured"
            if noise is None or r.get("noise_weight_change") is None
            else f"noise of relative norm {r['noise_weight_change']:.4g}",
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


def _controls_text(r: dict) -> str:
    """``, matched noise 95.0%, sft-self@150 (change 0.02) 97.0%`` (what is measured of them)."""
    out = ""
    if r.get("noise"):
        out += f", same-size noise {_share(r['noise']['share_of_shift_on_high_entropy'])}"
    sft = r.get("sft_matched")
    if sft:
        out += (
            f", {sft['model']} (SFT of change {sft['relative_weight_change']:.3g}) "
            f"{_share(sft['share_of_shift_on_high_entropy'])}"
        )
    return out


def _share(x: float | None) -> str:
    """A share as a percentage; ``n/a`` where it is undefined (a shift of zero everywhere)."""
    return "n/a" if x is None or math.isnan(x) else pct(x)


def _arms_text(r: dict) -> str:
    """Answer accuracy and solve rate on test_id of base and each RL arm."""

    def acc(correct: list, solved: list | None) -> str:
        iv = mean_interval(correct)
        solve = f", solve {pct(_mean([x for x in solved if x is not None]))}" if solved else ""
        return f"answer {fmt_interval(iv)}{solve}"

    pp = r["per_problem"]
    parts = [f"base {acc(pp['base_correct'], pp.get('base_solved'))}"]
    for name, v in r["rl"].items():
        parts.append(f"{name} {acc(v['per_problem']['correct'], v['per_problem'].get('solved'))}")
    return "test_id: " + ", ".join(parts)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
