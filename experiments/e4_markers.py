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

The verdict (:func:`claim`): base must first solve some out-of-distribution problems (Wilson
interval above zero), and each accuracy fine-tune must have raised its own-format accuracy over its
parent (paired interval above zero); then, paired over problems, markers per response (ID) minus
base's and the OOD solve rate minus base's must both have intervals below zero (markers alone:
"partly"). Forbidding markers at decoding (base's solve rate with and without them) is reported
beside it.
"""

import math

from experiments.claims import Claim
from experiments.context import Context
from experiments.verdicts import (
    ClaimHead,
    check_preconditions,
    fmt_interval,
    gain_interval,
    holds,
    in_zoo,
    interval_verdict,
    model_details,
    over_models,
    paired_interval,
    parent_comparison,
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


def run(ctx: Context) -> dict:
    zoo = {}
    for name in (*MODELS, *in_zoo(ctx, OPTIONAL)):
        det = model_details(ctx, name)
        zoo[name] = {k: ctx.evaluate(name).get(k, math.nan) for k in CARD_KEYS}
        zoo[name]["per_problem"] = {
            k: det.get(k) for k in ("markers_id", "solved_id", "solved_ood", "solved_id_no_markers")
        }
        if name != "base":
            zoo[name]["vs_parent"] = parent_comparison(ctx, name)
    features = marker_features(ctx)
    _plot_zoo(ctx, zoo)
    if features["top_features"]:
        _plot_rates(ctx, features)
    return {
        "models": zoo,
        "features": features,
        "n_problems_id": len(ctx.problems("test_id")),
        "n_problems_ood": len(ctx.problems("test_ood")),
    }


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


def marker_features(ctx: Context) -> dict:
    """Paired cache over base's sampled texts, SAE on base, top pre-WAIT features, firing rates."""
    import torch

    from interp.cache import CacheConfig, build_paired_cache
    from steering.features import feature_activations, firing_rates, marker_labels, rank_features
    from steering.sae import save_sae

    _, tok = ctx.world
    hook = marker_hook(ctx)
    rows = sampled_rows(ctx)
    models = {name: ctx.model(name) for name in MODELS}
    paired = build_paired_cache(
        models, rows, ctx.out / "caches" / "e4_markers", CacheConfig(hooks=hook), progress=False
    )
    for name in MODELS:
        ctx.cite_cache(f"paired_{name}", paired[name], f"{name} over base's sampled responses at {hook}")
    labels = marker_labels(paired["base"], tok, "WAIT", offset=1)
    n_pos, n_all = int(labels.sum()), len(labels)
    out = {
        "hook": hook,
        "n_rows": len(rows),
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
    ood = holds(
        "base solves out of distribution", proportion_interval(base["solved_ood"]), +1, "OOD problems"
    )
    plain = base["solved_id_no_markers"]  # absent when the evaluation ran without marker ablation
    forbid = paired_interval(base["solved_id"], plain) if plain else None
    text = [
        f"base: {m['base']['markers_per_response']:.2f} markers per response, OOD solve "
        f"{fmt_interval(proportion_interval(base['solved_ood']))}, solve with - without markers "
        f"{fmt_interval(forbid)}"
    ]
    pre, parts = [ood], {}
    for name in (n for n in m if n.startswith(("sft-", "rl-"))):
        mine = m[name]["per_problem"]
        up = raised(name, m[name].get("vs_parent"))
        markers = paired_interval(mine["markers_id"], base["markers_id"])
        solve = paired_interval(mine["solved_ood"], base["solved_ood"])
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
        if not up.held or markers is None or solve is None:
            parts[name] = "not testable"
        elif interval_verdict(markers, -1) == "not reproduced":
            parts[name] = "not reproduced"
        else:  # markers fell; the OOD drop decides between all and part of the finding
            parts[name] = "reproduced" if interval_verdict(solve, -1) == "reproduced" else "partly"
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
