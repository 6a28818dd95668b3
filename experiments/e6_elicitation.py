"""Finding 6 (Yue et al. 2025; Wang & Zhou 2024; Galichin et al. 2025): base already holds the reasoning.

Three ways to get at a behaviour without a weight update, on held-out (``test_id``) problems:

1. pass@k (unbiased estimator) for k = 1..n with n = ``ctx.budget.samples`` samples at
   temperature 1: ``base`` and ``rl-answer`` asked for a trace (``Q s g T``), ``sft-answer`` in its
   own answer-only format (``Q s g A``). A sample passes when its final answer is a shortest path.
   Yue et al.: the tuned model wins at k=1, base at large k.
2. CoT-decoding: the prompt ``Q s g`` asks for neither a trace (``T``) nor a bare answer
   (``A``) -- the organism never saw it in training, as Wang & Zhou's models were asked without a
   chain-of-thought prompt; branch over the top-k first tokens, decode greedily, keep the branch
   whose answer tokens have the largest mean top-1 minus top-2 probability. Compared with greedy
   decoding for ``base``, ``sft-answer`` and ``rl-answer``: answer accuracy, and the share of
   branches that take at least one trace step (``>``) before the answer.
3. Steering the fine-tune whose markers vanished (of ``sft-clean`` and ``rl-answer``, the one
   with fewer markers per response) back toward checking, with issue 13's methods side by side
   (:func:`experiments.elicit_methods.compare`): base's matched-contrast vector added always, at
   committed moves only, or where a linear gate fires, and base's marker SAE feature (e4's SAE when
   e4 ran in this run folder, else one trained here) clamped at committed moves; each against the
   unsteered target and a random direction of the same norm, on markers, recovery after an
   injected wrong move, solve rate, answers and fact recall. Not testable unless the target has
   fewer markers than base.

The verdict (:func:`claim`) is on pass@k, per problem and paired: ``rl-answer`` must first have
raised its greedy own-format accuracy over its parent (interval above zero); then rl-answer minus
base at k=1 must exclude zero upward (the tune wins pass@1) and base minus rl-answer at k=n must
exclude zero upward (base wins at large k); one of the two: "partly". CoT-decoding and steering are
reported beside it.
"""

import math

from experiments.claims import Claim, pct
from experiments.context import Context
from experiments.elicit_methods import summary
from experiments.verdicts import (
    ClaimHead,
    check_preconditions,
    combine,
    fmt_interval,
    gain_interval,
    interval_verdict,
    paired_interval,
    parent_comparison,
    raised,
)

FINDING = 6
TITLE = "Base models already hold the reasoning; post-training selects it"
PAPER = "tuned wins pass@1, base wins at large k; CoT-decoding finds CoT paths; SAE steering +2.2% acc"
PASSK_MODELS = {"base": "cot", "rl-answer": "cot", "sft-answer": "answer"}
COT_MODELS = ("base", "sft-answer", "rl-answer")
STEER_CANDIDATES = ("sft-clean", "rl-answer")
COT_K = 5
HEAD = ClaimHead(FINDING, TITLE, PAPER)
TUNE = "rl-answer"  # the tune whose pass@k curve is set against base's


def run(ctx: Context) -> dict:
    problems = ctx.problems("test_id")
    passk = {name: _pass_at_k(ctx, name, fmt, problems) for name, fmt in PASSK_MODELS.items()}
    cot = {name: _cot_decoding(ctx, name, problems) for name in COT_MODELS}
    steer = steering(ctx)
    _plot_passk(ctx, passk)
    if steer["testable"]:
        _plot_steering(ctx, steer)
    n = ctx.budget.samples
    base_large, tuned_large = passk["base"]["pass_at_k"][str(n)], passk["rl-answer"]["pass_at_k"][str(n)]
    return {
        "pass_at_k": passk,
        "cot_decoding": cot,
        "steering": steer,
        "n_problems": len(problems),
        "n_samples": n,
        "base_minus_rl_at_1": passk["base"]["pass_at_k"]["1"] - passk["rl-answer"]["pass_at_k"]["1"],
        "base_minus_rl_at_n": base_large - tuned_large,
        "vs_parent": {TUNE: parent_comparison(ctx, TUNE)},
    }


def _answer_ok(world, start: int, goal: int, words: list[str]) -> bool:
    from interp.organism.validator import extract_answer

    ans = extract_answer(words if "A" in words else ["A", *words], world.n_nodes)
    return ans is not None and world.is_shortest_path(ans, start, goal)


def _pass_at_k(ctx: Context, name: str, fmt: str, problems: list[tuple[int, int]]) -> dict:
    from interp.organism.traces import answer_prompt, cot_prompt
    from probes.passk import pass_at_k, sample_pass_at_k

    world, tok = ctx.world
    make = cot_prompt if fmt == "cot" else answer_prompt
    prompts = [tok.encode(make(s, g)) for s, g in problems]

    def correct(i: int, ids: list[int]) -> bool:
        return _answer_ok(world, *problems[i], tok.words(ids))

    n = ctx.budget.samples
    res = sample_pass_at_k(
        ctx.model(name),
        prompts,
        correct,
        n=n,
        ks=list(range(1, n + 1)),
        max_new_tokens=ctx.budget.max_new_tokens,
        stop_id=tok.token_id("E"),
    )
    return {
        "format": fmt,
        "pass_at_k": {str(k): v for k, v in res.pass_at.items()},
        "correct": list(res.correct),
        "per_problem": {f"pass_at_{k}": [pass_at_k(n, c, k) for c in res.correct] for k in (1, n)},
    }


def _cot_decoding(ctx: Context, name: str, problems: list[tuple[int, int]]) -> dict:
    from interp.organism.traces import node_name
    from steering.decoding import CotConfig, cot_decode, organism_answer_span

    world, tok = ctx.world
    prompts = [tok.encode(f"Q {node_name(s)} {node_name(g)}") for s, g in problems]
    cfg = CotConfig(
        k=COT_K, max_new_tokens=ctx.budget.max_new_tokens, stop_id=tok.token_id("E"), pad_id=tok.pad_token_id
    )
    res = cot_decode(ctx.model(name), prompts, organism_answer_span(tok), cfg)

    def share(rows: list[list[int]], test) -> float:
        return sum(bool(test(i, r)) for i, r in enumerate(rows)) / len(rows) if rows else math.nan

    def ok(i: int, r: list[int]) -> bool:
        return _answer_ok(world, *problems[i], tok.words(r))

    def reasons(i: int, r: list[int]) -> bool:  # a trace step (``>``) before the final answer
        words = tok.words(r)
        return ">" in (words[: len(words) - words[::-1].index("A")] if "A" in words else words)

    return {
        "k": COT_K,
        "accuracy_greedy": share(res.greedy, ok),
        "accuracy_best": share(res.best, ok),
        "share_best_is_greedy": res.share_best_is_greedy,
        "trace_share_greedy": share(res.greedy, reasons),
        "trace_share_best": share(res.best, reasons),
    }


def _marker_material(ctx: Context):
    """base's cache over its sampled responses, and an SAE on it: e4's when found, else built here."""
    from experiments.e4_markers import SAE_DIR, marker_hook, sampled_rows
    from interp.cache import CacheConfig, build_cache, open_paired_cache
    from steering.sae import load_sae

    hook = marker_hook(ctx)
    e4 = ctx.out / "caches" / "e4_markers"
    if (e4 / "pair.json").is_file() and (e4 / SAE_DIR / "cfg.json").is_file():
        cache = open_paired_cache(e4)["base"]
        sae = load_sae(e4 / SAE_DIR)
        if hook in cache.hooks and getattr(sae.cfg.metadata, "interp_cache_id", None) == cache.id:
            return cache, sae, hook, "e4"
    cache = build_cache(
        ctx.model("base"),
        sampled_rows(ctx),
        ctx.out / "caches" / "e6_elicitation" / "base",
        CacheConfig(hooks=hook),
        progress=False,
    )
    return cache, None, hook, "e6"


def marker_feature(ctx: Context):
    """Base's marker SAE feature: the one that best picks out the positions before ``WAIT`` (AUROC)
    in base's cache (e4's SAE and cache when e4 ran in this run folder, else built here).

    Returns:
        The :class:`experiments.elicit_methods.MarkerFeature` (``None`` when base's texts hold no
        ``WAIT``) and a dict of what was found (hook, cache source, counts, feature, AUROC, its mean
        activation before ``WAIT``).
    """
    from experiments.elicit_methods import MarkerFeature
    from steering.features import feature_activations, marker_labels, rank_features

    _, tok = ctx.world
    cache, sae, hook, source = _marker_material(ctx)
    ctx.cite_cache("base_sampled", cache, f"base's residual stream at {hook}: the marker SAE feature")
    labels = marker_labels(cache, tok, "WAIT", offset=1)
    info = {
        "hook": hook,
        "cache_source": source,
        "n_before_wait": int(labels.sum()),
        "n_positions": len(labels),
    }
    if int(labels.sum()) in (0, len(labels)):
        return None, info  # no WAIT in base's texts (a degenerate tiny model): no feature to clamp
    if sae is None:
        from experiments.e4_markers import train_marker_sae

        sae = train_marker_sae(ctx, cache, hook).sae
    ranking = rank_features(sae, cache, hook, labels, max_positions=None)
    feature = ranking.top(1)[0]
    typical = float(feature_activations(sae, cache, hook)[labels, feature].mean())
    info.update(feature=feature, auroc=float(ranking.auroc[feature]), typical_activation=typical)
    return MarkerFeature(sae, hook, feature, typical), info


def steering(ctx: Context) -> dict:
    """Issue 13's steering methods side by side on the fine-tune with fewer markers (by its card):
    :func:`experiments.elicit_methods.compare`'s result, plus the target, the candidates' markers
    per response and the SAE feature found."""
    from experiments.elicit_methods import compare

    markers = {n: ctx.evaluate(n)["markers_per_response"] for n in STEER_CANDIDATES}
    target = min(STEER_CANDIDATES, key=lambda n: markers[n])
    feature, info = marker_feature(ctx)
    doc = compare(ctx, target, feature)
    doc.update(model=target, markers_per_response=markers, sae_feature=info)
    return doc


def _plot_passk(ctx: Context, passk: dict) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, r in passk.items():
        ks = [int(k) for k in r["pass_at_k"]]
        ax.plot(ks, list(r["pass_at_k"].values()), marker="o", ms=3, label=f"{name} ({r['format']})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples at T=1)")
    ax.set_ylabel("pass@k (answer is a shortest path)")
    ax.legend(fontsize=7)
    ctx.figure(fig, "pass_at_k")


def _plot_steering(ctx: Context, steer: dict) -> None:
    import matplotlib.pyplot as plt

    rows = [r for r in steer["table"] if r["setting"] not in ("base", "unsteered")]
    names = [r["setting"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in (
        (axes[0], "markers", "markers per response"),
        (axes[1], "recovered", "recovery rate"),
    ):
        ivs = [r[f"{key}_vs_unsteered"] or {"estimate": 0.0, "low": 0.0, "high": 0.0} for r in rows]
        est = [iv["estimate"] for iv in ivs]
        err = [
            [e - iv["low"] for e, iv in zip(est, ivs, strict=True)],
            [iv["high"] - e for e, iv in zip(est, ivs, strict=True)],
        ]
        colors = ["grey" if n == "control" else "tab:blue" for n in names]
        ax.bar(names, est, yerr=err, capsize=3, color=colors)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"{title}: steered - unsteered (95% CI)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle(
        f"steering {steer['target']} toward base's checking ({steer['settings']['hook']})", fontsize=9
    )
    ctx.figure(fig, "steering_methods")


def claim(r: dict) -> Claim:
    pk, n = r["pass_at_k"], r["n_samples"]
    at = {m: (pk[m]["pass_at_k"]["1"], pk[m]["pass_at_k"][str(n)]) for m in pk}
    organism = (
        "pass@1/pass@" + str(n) + ": " + ", ".join(f"{m} {pct(a)}/{pct(b)}" for m, (a, b) in at.items())
    )
    cot = r["cot_decoding"]
    organism += "; CoT-decoding acc greedy->best: " + ", ".join(
        f"{m} {pct(c['accuracy_greedy'])}->{pct(c['accuracy_best'])}" for m, c in cot.items()
    )
    organism += "; " + summary(r["steering"])
    base_pp, tune_pp = pk["base"]["per_problem"], pk[TUNE]["per_problem"]
    at_1 = paired_interval(tune_pp["pass_at_1"], base_pp["pass_at_1"])
    at_n = paired_interval(base_pp[f"pass_at_{n}"], tune_pp[f"pass_at_{n}"])
    organism += (
        f"; {TUNE} - base pass@1 {fmt_interval(at_1)}, base - {TUNE} pass@{n} {fmt_interval(at_n)}, "
        f"{TUNE} - parent greedy accuracy {fmt_interval(gain_interval(r['vs_parent'][TUNE]))}"
    )
    pre = [raised(TUNE, r["vs_parent"][TUNE])]
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    wins_1, wins_n = interval_verdict(at_1, +1), interval_verdict(at_n, +1)
    verdict = combine([wins_1, wins_n])
    why = (
        f"{TUNE} wins pass@1: {'yes' if wins_1 == 'reproduced' else 'no'} (interval {fmt_interval(at_1)}); "
        f"base wins pass@{n}: {'yes' if wins_n == 'reproduced' else 'no'} (interval {fmt_interval(at_n)})"
    )
    return HEAD.claim(organism, verdict, why, pre)


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
