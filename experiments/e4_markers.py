"""Finding 4 (Kim et al. 2026): post-training suppresses epistemic verbalization.

The paper counts epistemic markers per response ("wait", "hmm", "check", ...) and tracks them
with in- and out-of-distribution accuracy. The organism's markers are the words ``WAIT CHECK OK
BAD BACK`` in its traces; out of distribution means longer paths than any seen in training.
Across the zoo (``base`` and its fine-tunes) we read markers per greedy response and the solve
rates in and out of distribution from ``ctx.evaluate``.

Then the features: ``base`` samples responses at temperature 1 to held-out prompts (texts full
of markers); every model of the zoo is run over the same token rows (a paired activation cache
at one middle-layer residual hook); an SAE trained on ``base``'s activations gives features;
they are ranked by AUROC for the positions just before ``WAIT``; the top ones' firing rates are
compared, at those positions and over all positions, between ``base`` and each fine-tune. A
feature is "switched off" by a fine-tune when it fires at most 20% as often as in ``base``.
Beside the SAE, a crosscoder diff of ``base`` against each of its fine-tunes and against a
same-size noise control (:mod:`experiments.model_diff`, result key ``model_diff``): base-only
latents that survive latent scaling, named by pre-``WAIT`` AUROC and top tokens.

The verdict (:func:`claim`): base must first solve some out-of-distribution problems (Wilson
interval above zero), and each accuracy fine-tune must have raised its own-format accuracy over its
parent (paired interval above zero); then, paired over problems, markers per response (ID) minus
base's and the OOD solve rate minus base's must both have intervals below zero (markers alone:
"partly"). Beside it, whether the markers do work in this organism (issue 12, item 4):
forbidding them at decoding, paired over problems (base's solve rate with minus without them,
sampled at T=1 from the card's ``samples`` per problem, and greedy); markers per response against
problem difficulty (the shortest-path distance of each ``test_id`` problem: per distance a
bootstrap interval, and the longest distance minus the shortest); whether the self-distilled
``sft-self`` lost markers without anyone stripping them (paired over problems against base); and
markers, accuracy and solve rate along every fine-tune's dose axis (read from the dose cards with
:func:`experiments.dose_axis.dose_curves`).
"""

import math
from collections.abc import Sequence
from typing import Any

from experiments.claims import Claim
from experiments.context import Context
from experiments.controls import beyond_control, noise_like
from experiments.dose_axis import dose_curves, plot_dose_curves
from experiments.model_diff import model_diff, summary
from experiments.verdicts import (
    MIN_N,
    ClaimHead,
    Interval,
    beyond_zero,
    check_preconditions,
    diff_interval,
    enough,
    fmt_interval,
    gain_interval,
    holds,
    in_zoo,
    mean_interval,
    model_details,
    over_models,
    paired_interval,
    parent_comparison,
    per_problem_mean,
    proportion_interval,
    raised,
)

FINDING = 4
TITLE = "Post-training suppresses epistemic verbalization"
PAPER = "up to 40% OOD drops as markers vanish (~182 to ~9 markers per response, unconfirmed)"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
MODELS = ("base", "sft-answer", "sft-clean", "rl-answer", "rl-fork", "backward")
OPTIONAL = ("sft-self", "rl-bottom")  # in zoos that have them; cards and verdict only
TOP_FEATURES = 5
SAMPLES_PER_PROBLEM = 2
OFF_RATIO = 0.2  # a feature firing at most this share of its base rate counts as switched off
MIN_BASE_RATE = 0.05  # ... provided base fires it at least this often before WAIT
SAE_DIR = "sae_base"  # under caches/e4_markers, next to the paired cache (e6 reuses both)
CARD_KEYS = (
    "markers_per_response",
    "markers_per_response_ood",
    "markers_per_response_sampled",
    "solve_rate_id",
    "solve_rate_ood",
    "solve_rate_id_no_markers",
    "answer_accuracy_id",
    "answer_accuracy_ood",
)


OOD_TAGS = {
    "ood": "longer paths",
    "comp": "goals never trained as goals",
    "start": "starts never trained as starts",
}
PER_PROBLEM = (
    "problems_id",
    "markers_id",
    "solved_id",
    *(f"solved_{t}" for t in OOD_TAGS),
    "solved_id_no_markers",
)
SAMPLED = ("solved_id_sampled", "solved_id_sampled_no_markers")  # base's card: `samples` per problem


def run(ctx: Context) -> dict:
    world, _ = ctx.world
    zoo, difficulty = {}, {}
    for name in (*MODELS, *in_zoo(ctx, OPTIONAL)):
        det = model_details(ctx, name)
        zoo[name] = {k: ctx.evaluate(name).get(k, math.nan) for k in CARD_KEYS}
        zoo[name]["per_problem"] = {
            k: det.get(k) for k in (*PER_PROBLEM, *(SAMPLED if name == "base" else ()))
        }
        if name != "base":
            zoo[name]["vs_parent"] = parent_comparison(ctx, name)
            if beyond_zero(gain_interval(zoo[name]["vs_parent"]), +1):
                zoo[name]["noise_control"] = noise_control(ctx, name)
        distances = [world.dist(s, g) for s, g in det["problems_id"]]
        difficulty[name] = markers_by_difficulty(distances, det["markers_id"], det["solved_id"])
    paired = marker_pair(ctx)
    features = marker_features(ctx, paired)
    diff = model_diff(ctx, paired, marker_hook(ctx), list(zoo))
    curves = dose_curves(ctx)
    _plot_zoo(ctx, zoo)
    _plot_difficulty(ctx, difficulty)
    plot_dose_curves(ctx, curves, ("markers_per_response", "accuracy", "solve_rate_id"), "markers_along_dose")
    if features["top_features"]:
        _plot_rates(ctx, features)
    return {
        "models": zoo,
        "forbidding_markers": forbidding_markers(zoo["base"]["per_problem"]),
        "difficulty": difficulty,
        "dose_curves": curves,
        "features": features,
        "model_diff": diff,
        "n_problems_id": len(ctx.problems("test_id")),
        "n_problems_ood": len(ctx.problems("test_ood")),
    }


def noise_control(ctx: Context, name: str) -> dict:
    """``base`` moved at random as far as ``name`` (its card's relative weight change, per tensor,
    :func:`experiments.controls.noise_like`), measured like the models: per-problem markers and
    solve rates, greedy, on the same problems. A tune's markers and OOD solving must fall beyond it."""
    from interp.organism.evaluate import EvalConfig, evaluate_model

    change, noisy = noise_like(ctx, name)
    world, tok = ctx.world
    b = ctx.budget
    cfg = EvalConfig(
        b.problems,
        b.max_new_tokens,
        samples=0,
        marker_ablation=False,
        splits=("test_id", "test_ood", "test_comp", "test_start"),
    )
    det: dict[str, list] = {}
    evaluate_model(noisy.module, tok, world, "cot", cfg, details=det)
    return {"relative_change": change, "per_problem": {k: det.get(k) for k in PER_PROBLEM}}


def markers_by_difficulty(
    distances: Sequence[int], markers: Sequence[int], solved: Sequence[int] | None = None
) -> dict[str, Any]:
    """Markers per response (and solve rate) per problem distance, with bootstrap intervals, and
    the longest distance's markers minus distance 1's (independent samples).

    Example:
        >>> d = markers_by_difficulty([1] * 12 + [3] * 12, [0] * 12 + [2] * 12)
        >>> d["by_distance"]["3"]["markers"]["estimate"], d["longest_minus_shortest"]["estimate"]
        (2.0, 2.0)
    """
    if len(distances) != len(markers):
        raise ValueError(
            f"{len(distances)} distances but {len(markers)} marker counts; expected one per problem"
        )
    at = {d: [i for i, x in enumerate(distances) if x == d] for d in sorted(set(distances))}
    by = {
        str(d): {
            "n": len(idx),
            "markers": mean_interval([markers[i] for i in idx]),
            "solve_rate": proportion_interval([solved[i] for i in idx]) if solved else None,
        }
        for d, idx in at.items()
    }
    lo, hi = (min(at), max(at)) if at else (None, None)
    rise = None
    if lo is not None and hi != lo:
        rise = diff_interval([markers[i] for i in at[hi]], [markers[i] for i in at[lo]])
    return {"by_distance": by, "shortest": lo, "longest": hi, "longest_minus_shortest": rise}


def forbidding_markers(per: dict[str, Any]) -> dict[str, Interval | int | None]:
    """Base's solve rate with minus without markers, paired over problems: sampled at T=1 (the
    card's ``samples`` consecutive entries per problem, averaged per problem first) and greedy.

    Example:
        >>> per = {"problems_id": [[0, 1]] * 12, "solved_id": [1] * 12, "solved_id_no_markers": [0] * 12,
        ...        "solved_id_sampled": [1, 0] * 12, "solved_id_sampled_no_markers": [0, 0] * 12}
        >>> f = forbidding_markers(per)
        >>> f["samples_per_problem"], f["sampled"]["estimate"], f["greedy"]["estimate"]
        (2, 0.5, 1.0)
    """
    greedy = (
        paired_interval(per["solved_id"], per["solved_id_no_markers"])
        if per.get("solved_id") and per.get("solved_id_no_markers")
        else None
    )
    on, off, n = (
        per.get("solved_id_sampled"),
        per.get("solved_id_sampled_no_markers"),
        len(per.get("problems_id") or []),
    )
    k = len(on) // n if on and off and n else 0
    sampled = paired_interval(per_problem_mean(on, k), per_problem_mean(off, k)) if k else None
    return {"sampled": sampled, "greedy": greedy, "samples_per_problem": k or None}


def sampled_rows(ctx: Context, name: str = "base", samples: int = SAMPLES_PER_PROBLEM) -> list[list[int]]:
    """Token rows ``prompt + response`` of ``name``'s responses sampled at T=1 to test_id prompts."""
    import torch

    from interp.organism.evaluate import respond
    from interp.organism.traces import cot_prompt

    _, tok = ctx.world
    prompts = [cot_prompt(s, g) for s, g in ctx.problems("test_id") for _ in range(samples)]
    words = respond(
        ctx.model(name).module,
        tok,
        prompts,
        ctx.budget.max_new_tokens,
        temperature=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    rows = [tok.encode(p) + tok.encode(" ".join(w)) for p, w in zip(prompts, words, strict=True)]
    return rows[: ctx.budget.cache_rows]


def marker_hook(ctx: Context) -> str:
    """The middle layer's residual stream of the zoo's models."""
    return f"blocks.{ctx.model('base').n_layers // 2}.hook_resid_post"


def train_marker_sae(ctx: Context, cache, hook: str):
    """A small top-k SAE on ``cache`` (``base``'s activations), ``ctx.budget.sae_steps`` steps."""
    from steering.sae import SAETrainConfig, train_sae

    d_in = int(cache[hook].shape[-1])
    kept = int(SAETrainConfig().exclusion().keep_mask(cache).sum())  # the sink position is left out
    batch = max(1, min(256, kept))
    cfg = SAETrainConfig(
        architecture="topk",
        expansion_factor=4,
        k=min(16, 4 * d_in),
        lr=1e-3,
        training_tokens=batch * ctx.budget.sae_steps,
        batch_size=batch,
        seed=0,
        dead_feature_window=max(1, min(1000, ctx.budget.sae_steps // 2)),
    )
    return train_sae(cache, hook, cfg, progress=False)


def marker_pair(ctx: Context):
    """The paired cache of ``MODELS`` over base's sampled texts at :func:`marker_hook`, cited."""
    from interp.cache import CacheConfig, build_paired_cache

    hook = marker_hook(ctx)
    models = {name: ctx.model(name) for name in MODELS}
    paired = build_paired_cache(
        models, sampled_rows(ctx), ctx.out / "caches" / "e4_markers", CacheConfig(hooks=hook), progress=False
    )
    for name in MODELS:
        ctx.cite_cache(f"paired_{name}", paired[name], f"{name} over base's sampled responses at {hook}")
    return paired


def marker_features(ctx: Context, paired=None) -> dict:
    """SAE on base over the paired cache (:func:`marker_pair`), top pre-WAIT features, firing rates."""
    import torch

    from steering.features import feature_activations, firing_rates, marker_labels, rank_features
    from steering.sae import save_sae

    _, tok = ctx.world
    hook = marker_hook(ctx)
    paired = paired if paired is not None else marker_pair(ctx)
    labels = marker_labels(paired["base"], tok, "WAIT", offset=1)
    n_pos, n_all = int(labels.sum()), len(labels)
    out = {
        "hook": hook,
        "n_rows": paired["base"].n_rows,
        "n_positions": n_all,
        "n_before_wait": n_pos,
        "top_features": [],
        "sae": None,
        "rates_before_wait": {},
        "rates_all": {},
        "switched_off": {},
        "n_switched_off_all_features": {},
    }
    if n_pos == 0 or n_pos == n_all:
        return out  # no WAIT in base's texts (a degenerate tiny model): nothing to rank
    trained = train_marker_sae(ctx, paired["base"], hook)
    sae = trained.sae
    save_sae(sae, ctx.out / "caches" / "e4_markers" / SAE_DIR)
    ranking = rank_features(sae, paired["base"], hook, labels, max_positions=None)
    top = ranking.top(TOP_FEATURES)
    out["sae"] = {
        "d_sae": int(sae.cfg.d_sae),
        "steps": ctx.budget.sae_steps,
        "final_losses": trained.losses[-1] if trained.losses else {},
    }
    out["top_features"] = [
        {"feature": f, "auroc": float(ranking.auroc[f]), "mean_diff": float(ranking.mean_diff[f])}
        for f in top
    ]
    for name in MODELS:
        acts = feature_activations(sae, paired[name], hook)[:, top] > 0
        out["rates_before_wait"][name] = acts[labels].float().mean(0).tolist()
        out["rates_all"][name] = acts.float().mean(0).tolist()
    base_rates = torch.tensor(out["rates_before_wait"]["base"])
    for name in MODELS[1:]:
        rates = torch.tensor(out["rates_before_wait"][name])
        off = (base_rates >= MIN_BASE_RATE) & (rates <= OFF_RATIO * base_rates)
        out["switched_off"][name] = [f for f, o in zip(top, off.tolist(), strict=True) if o]
        fr = firing_rates(sae, paired, hook, labels=("base", name))
        out["n_switched_off_all_features"][name] = len(fr.switched_off(max_ratio=OFF_RATIO))
    return out


def _plot_zoo(ctx: Context, zoo: dict) -> None:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    names = list(zoo)
    x = list(range(len(names)))
    a1.bar(
        [i - 0.2 for i in x], [zoo[n]["markers_per_response"] for n in names], 0.4, label="in distribution"
    )
    a1.bar([i + 0.2 for i in x], [zoo[n]["markers_per_response_ood"] for n in names], 0.4, label="OOD")
    a1.set_xticks(x, names, rotation=20)
    a1.set_ylabel("markers per greedy response")
    a1.legend(fontsize=7)
    for key, label in (("solve_rate_id", "ID"), ("solve_rate_ood", "OOD")):
        a2.scatter([zoo[n]["markers_per_response"] for n in names], [zoo[n][key] for n in names], label=label)
    for n in names:
        a2.annotate(n, (zoo[n]["markers_per_response"], zoo[n]["solve_rate_id"]), fontsize=7)
    a2.set_xlabel("markers per response (ID)")
    a2.set_ylabel("solve rate")
    a2.set_ylim(-0.05, 1.05)
    a2.legend(fontsize=7)
    ctx.figure(fig, "markers_vs_solve")


def _plot_difficulty(ctx: Context, difficulty: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, d in difficulty.items():
        pts = [(int(k), v["markers"]) for k, v in d["by_distance"].items() if v["markers"]]
        xs, ivs = [x for x, _ in pts], [iv for _, iv in pts]
        ys = [iv["estimate"] for iv in ivs]
        err = [
            [max(0.0, y - iv["low"]) for y, iv in zip(ys, ivs, strict=True)],
            [max(0.0, iv["high"] - y) for y, iv in zip(ys, ivs, strict=True)],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, capsize=2, label=name)
    ax.set_xlabel("problem distance (shortest path length, test_id)")
    ax.set_ylabel("markers per greedy response")
    ax.legend(fontsize=6)
    ctx.figure(fig, "markers_vs_difficulty")


def _plot_rates(ctx: Context, features: dict) -> None:
    import matplotlib.pyplot as plt

    top = [t["feature"] for t in features["top_features"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(MODELS)
    for j, name in enumerate(MODELS):
        rates = features["rates_before_wait"][name]
        ax.bar([i + (j - len(MODELS) / 2 + 0.5) * width for i in range(len(top))], rates, width, label=name)
    ax.set_xticks(range(len(top)), [f"f{f}" for f in top])
    ax.set_xlabel(f"top features for 'just before WAIT' (SAE on base, {features['hook']})")
    ax.set_ylabel("firing rate before WAIT")
    ax.legend(fontsize=7, ncol=3)
    ctx.figure(fig, "feature_firing_rates")


def claim(r: dict) -> Claim:
    """Base must solve OOD; per accuracy fine-tune that raised accuracy over its parent, markers and
    OOD solve rate must both fall below base's (paired intervals below zero)."""
    m, f = r["models"], r["features"]
    base = m["base"]["per_problem"]
    # the out-of-distribution split base solves best (the finding needs OOD solving to lose)
    tags = [t for t in OOD_TAGS if base.get(f"solved_{t}")]
    tag = max(tags, key=lambda t: sum(base[f"solved_{t}"]) / len(base[f"solved_{t}"]))
    key = f"solved_{tag}"
    ood = holds(
        f"base solves out of distribution (best split: test_{tag}, {OOD_TAGS[tag]})",
        proportion_interval(base[key]),
        +1,
        "OOD problems",
    )
    forbid = r.get("forbidding_markers") or forbidding_markers(base)
    text = [
        f"base: {m['base']['markers_per_response']:.2f} markers per response, OOD (test_{tag}) solve "
        f"{fmt_interval(proportion_interval(base[key]))}, solve with - without markers "
        f"{fmt_interval(forbid['greedy'])} greedy, {fmt_interval(forbid['sampled'])} sampled"
    ]
    rise = (r.get("difficulty") or {}).get("base", {})
    if rise.get("longest_minus_shortest"):
        text.append(
            f"base markers at distance {rise['longest']} - distance {rise['shortest']} "
            f"{fmt_interval(rise['longest_minus_shortest'])}"
        )
    if "sft-self" in m:
        lost = paired_interval(m["sft-self"]["per_problem"]["markers_id"], base["markers_id"])
        said = (
            "lost markers"
            if beyond_zero(lost, -1)
            else "did not lose markers"
            if enough(lost)
            else f"too few problems to say (fewer than {MIN_N})"
        )
        curve = (r.get("dose_curves") or {}).get("sft-self", {}).get("points", {})
        along = ", ".join(
            f"@{p['steps']} {p['markers_per_response']:.2f}"
            for p in sorted(curve.values(), key=lambda p: p["steps"])
            if p.get("markers_per_response") is not None
        )
        text.append(
            f"sft-self (no marker stripped) {said}: - base {fmt_interval(lost)}"
            + (f"; its markers along dose {along}" if along else "")
        )
    pre, parts = [ood], {}
    for name in (n for n in m if n.startswith(("sft-", "rl-"))):
        mine = m[name]["per_problem"]
        up = raised(name, m[name].get("vs_parent"))
        markers = paired_interval(mine["markers_id"], base["markers_id"])
        solve = paired_interval(mine[key], base[key])
        noise = (m[name].get("noise_control") or {}).get("per_problem")
        markers_vs_noise = paired_interval(mine["markers_id"], noise["markers_id"]) if noise else None
        solve_vs_noise = paired_interval(mine[key], noise[key]) if noise else None
        pre.append(up)
        text.append(
            f"{name} - base: markers {fmt_interval(markers)}, OOD solve {fmt_interval(solve)}, "
            f"accuracy - parent {fmt_interval(gain_interval(m[name].get('vs_parent')))}"
            + (
                f", top pre-WAIT features off {len(f['switched_off'].get(name, []))}/{len(f['top_features'])}"
                if f["top_features"]
                else ""
            )
        )
        if noise:
            text[-1] += (
                f", beyond same-size noise: markers {fmt_interval(markers_vs_noise)}, "
                f"OOD solve {fmt_interval(solve_vs_noise)}"
            )
        if not up.held or markers is None or solve is None:
            parts[name] = "not testable"
        elif (lost := beyond_control(markers, markers_vs_noise)) != "reproduced":
            parts[name] = lost  # markers did not fall, or not beyond same-size random change
        else:  # markers fell beyond noise; the OOD drop (beyond noise too) decides all or part
            parts[name] = "reproduced" if beyond_control(solve, solve_vs_noise) == "reproduced" else "partly"
    diff = summary(r.get("model_diff"))
    if diff:
        text.append(diff)  # beside the verdict: it does not change it
    organism = "; ".join(text)
    if not ood.held:
        return check_preconditions(HEAD, organism, *pre)
    return over_models(
        HEAD,
        organism,
        parts,
        pre,
        "markers and OOD solve rate both fell below base's (intervals below zero)",
        "no fine-tune that raised accuracy lost both markers and OOD solving beyond its interval",
    )


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
