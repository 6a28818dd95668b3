"""Finding 5 (Liu et al. 2024, plus the toolkit's hypothesis): proxy-tuning keeps knowledge that
weight fine-tuning damages, and the damage can be localised layer by layer.

(a) Damage localisation. For each fine-tune against its parent (``sft-answer`` and ``rl-answer``
against ``base``, ``small-tuned`` against ``small-base``), :func:`probes.damage.localise_damage`
with the organism's fact-recall scorer (greedy completion of every ``F x :`` fact), and, because
the organism's knowledge is its facts and its skill is solving, also with the solve rate on the
held-out problems. Patching (weight transplant, both directions) runs only where the scorer
lost something; weight change, residual-stream CKA (on the probe task's tokens) and probe
retention (is ``y`` a neighbour of ``x``?) are reported for every pair as descriptive evidence.
A positive control checks that the method finds a known damage: a copy of ``base`` with one
MLP re-randomised (seeded Gaussian with each parameter's own mean and standard deviation).
A paired cache of ``base`` and both large fine-tunes over ``base``'s own greedy traces of the
held-out problems gives a second CKA per layer, on reasoning tokens; its IDs are cited.

(b) Proxy-tuning (PAPERS.md §5): ``logits = base + (small-tuned - small-base)`` against the
directly tuned ``sft-answer``, in the answer-only format ``Q s g A`` that the small pair was
tuned on. Answer accuracy (the answer is a shortest path) on the held-out problems, gap closed
``(Acc_proxy - Acc_base) / (Acc_tuned - Acc_base)``, and fact recall under each decoding. The
organism maps to the paper as: ``base`` = the large pretrained model, ``sft-answer`` = its
direct fine-tune, ``small-*`` = the small expert / anti-expert pair, facts = knowledge.
"""

from experiments.claims import Claim, pct
from experiments.context import Context

FINDING = 5
TITLE = "Proxy-tuning keeps knowledge that weight fine-tuning damages"
PAPER = "proxy closes 88-91% of the gap to direct tuning; beats it on knowledge (TruthfulQA)"
PAIRS = (("sft-answer", "base"), ("rl-answer", "base"), ("small-tuned", "small-base"))
MIN_GAP_PROBLEMS = 3
"""Fewer held-out problems than this between tuned and base: the gap closed is not measurable."""


def run(ctx: Context) -> dict:
    from interp.cache import CacheConfig, build_paired_cache
    from interp.organism.damage import organism_probe_rows, organism_scorer
    from probes.cka import paired_cka
    from probes.damage import DamageConfig, ProbeTask, localise_damage

    world, tok = ctx.world
    problems = ctx.problems("test_id")
    b = ctx.budget
    fact = organism_scorer("fact_recall", ctx.zoo)
    solve = organism_scorer("solve_rate", ctx.zoo, "test_id", b.problems, b.max_new_tokens)
    probe_task = ProbeTask(*organism_probe_rows(ctx.zoo, max_problems=b.problems or 100))
    config = DamageConfig()

    reports, damage = {}, {}
    for tuned, parent in PAIRS:
        for label, scorer, kw in (
            ("fact_recall", fact, {"probe_task": probe_task}),
            ("solve_rate", solve, {}),
        ):
            rep = localise_damage(
                ctx.model(parent), ctx.model(tuned), scorer, config=config, progress=False, **kw
            )
            reports[(tuned, label)] = rep
            damage.setdefault(tuned, {"parent": parent})[label] = _summary(rep)
    control_model, control_site = _damaged_copy(ctx)
    rep = localise_damage(
        ctx.model("base"), control_model, fact, probe_task=probe_task, config=config, progress=False
    )
    reports[("control", "fact_recall")] = rep
    control = {"site": control_site, "fact_recall": _summary(rep)}

    rows = _base_traces(ctx, problems[: b.cache_rows])
    pair = build_paired_cache(
        {name: ctx.model(name) for name in ("base", "sft-answer", "rl-answer")},
        rows,
        ctx.out / "caches" / "e5_resid_base_traces",
        CacheConfig(hooks=("blocks.*.hook_resid_post",), batch_size=64),
        progress=False,
    )
    for label in pair.labels:
        ctx.cite_cache(f"resid_{label}", pair[label], "CKA per layer against base, on base's own traces")
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(ctx.model("base").n_layers)]
    cka_traces = {t: list(paired_cka(pair, hooks, ("base", t)).values()) for t in ("sft-answer", "rl-answer")}

    proxy = _proxy(ctx, problems)
    _plot_damage(ctx, reports)
    _plot_proxy(ctx, proxy)
    lost_fact = [t for t, d in damage.items() if d["fact_recall"]["gap"] > 0]
    lost_solve = [t for t, d in damage.items() if d["solve_rate"]["gap"] > 0]
    return {
        "damage": damage,
        "control": control,
        "cka_base_traces": cka_traces,
        "lost_fact_recall": lost_fact,
        "lost_solve_rate": lost_solve,
        "n_lost_fact_recall": len(lost_fact),
        "n_fine_tunes": len(damage),
        "proxy": proxy,
        "n_problems": len(problems),
        "n_facts": world.n_nodes,
        "n_probe_rows": len(probe_task.tokens),
        "n_cache_rows": len(rows),
        "n_cache_tokens": sum(map(len, rows)),
    }


def _base_traces(ctx: Context, problems: list[tuple[int, int]]) -> list[list[int]]:
    """Prompt plus ``base``'s own greedy chain of thought, as token rows (the reasoning tokens)."""
    from interp.generation import generate
    from interp.organism.traces import cot_prompt

    _, tok = ctx.world
    ids = [tok.encode(cot_prompt(s, g)) for s, g in problems]
    out = generate(
        ctx.model("base"), ids, ctx.budget.max_new_tokens, stop_id=tok.token_id("E"), pad_id=tok.pad_token_id
    )
    return [p + o for p, o in zip(ids, out, strict=True)]


def _summary(rep) -> dict:
    ev = rep.layer_evidence
    patched = [r for r in rep.rows if r.component in ("attn", "mlp") and r.restoration is not None]
    best = max(patched, key=lambda r: r.restoration) if patched else None
    return {
        "score_base": rep.score_base,
        "score_tuned": rep.score_tuned,
        "gap": rep.score_base - rep.score_tuned,
        "lead": rep.layer_evidence_lead,
        "damaged_layers": list(rep.damaged_layers),
        "top_restoration_layer": rep.top_layer("restoration"),
        "top_weight_change_layer": rep.top_layer("weight_change"),
        "restoration": _clean(ev["restoration"]),
        "weight_change": _clean(ev["weight_change"]),
        "cka_drop": _clean(ev["cka_drop"]),
        "probe_drop": _clean(ev["probe_drop"]),
        "cka_resid": [_clean([r.cka])[0] for r in rep.rows if r.component == "resid_post"],
        "sites": {
            r.site: {"restoration": _clean([r.restoration])[0], "damage": _clean([r.damage])[0]}
            for r in rep.rows
            if r.restoration is not None
        },
        "best_site": best.site if best else None,
        "best_restoration": _clean([best.restoration])[0] if best else None,
        "verdict": rep.verdict,
    }


def _clean(values) -> list:
    import math

    return [None if v is None or not math.isfinite(v) else float(v) for v in values]


def _damaged_copy(ctx: Context):
    """``base`` with the MLP of its middle block re-randomised: a damage whose place is known."""
    import torch

    from interp.models import Model, load_model

    fresh = load_model("organism:base")
    layer = fresh.n_layers // 2
    site = f"blocks.{layer}.mlp"
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in fresh.module.blocks[layer].mlp.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.copy_(noise * p.std().clamp_min(1e-3) + p.mean())
    return Model(fresh.module, fresh.tokenizer, f"base with {site} re-randomised"), site


def _proxy(ctx: Context, problems: list[tuple[int, int]]) -> dict:
    from interp.generation import generate
    from interp.organism.evaluate import answer_accuracy
    from interp.organism.traces import answer_prompt, fact_prompt
    from steering.decoding import ProxyConfig, proxy_tune

    world, tok = ctx.world
    stop, pad = tok.token_id("E"), tok.pad_token_id
    base, expert, anti = ctx.model("base"), ctx.model("small-tuned"), ctx.model("small-base")
    solo = {"base": base, "tuned": ctx.model("sft-answer"), "expert": expert, "antiexpert": anti}
    ask = [tok.encode(answer_prompt(s, g)) for s, g in problems]
    fact_ids = [tok.encode(fact_prompt(x)) for x in range(world.n_nodes)]
    truth = [[f"n{v}" for v in world.neighbours(x)] + ["E"] for x in range(world.n_nodes)]

    def decode(ids: list[list[int]], max_new: int) -> tuple[dict[str, list[list[str]]], float]:
        cfg = ProxyConfig(alpha=1.0, max_new_tokens=max_new, stop_id=stop, pad_id=pad)
        res = proxy_tune(base, expert, anti, ids, cfg)
        out = {"proxy": res.tokens}
        out.update({k: generate(m, ids, max_new, stop_id=stop, pad_id=pad) for k, m in solo.items()})
        return {k: [tok.words(o) for o in v] for k, v in out.items()}, res.changed_share

    answers, changed = decode(ask, 16)
    acc = {k: answer_accuracy(world, problems, v) for k, v in answers.items()}
    recalled, _ = decode(fact_ids, 8)
    recall = {k: sum(o == t for o, t in zip(v, truth, strict=True)) / len(truth) for k, v in recalled.items()}
    denom = acc["tuned"] - acc["base"]
    measurable = denom * len(problems) >= MIN_GAP_PROBLEMS - 1e-9
    return {
        "answer_accuracy": acc,
        "fact_recall": recall,
        "n_problems": len(problems),
        "gap": denom,
        "gap_problems": round(denom * len(problems)),
        "gap_closed": (acc["proxy"] - acc["base"]) / denom if denom else None,
        "gap_measurable": bool(measurable),
        "changed_share": changed,
        "format": "answer",
        "alpha": 1.0,
    }


def _plot_damage(ctx: Context, reports: dict) -> None:
    import matplotlib.pyplot as plt

    keys = [k for k in reports if k[1] == "fact_recall"] + [
        k for k in reports if k[1] == "solve_rate" and reports[k].layer_evidence_lead == "restoration"
    ]
    fig, axes = plt.subplots(len(keys), 4, figsize=(16, 2.9 * len(keys)), squeeze=False)
    for row, key in zip(axes, keys, strict=True):
        rep = reports[key]
        rep.plot(row)
        row[0].set_ylabel(f"{key[0]}\n{key[1]} {rep.score_base:.2f}->{rep.score_tuned:.2f}", fontsize=8)
    fig.suptitle("Damage evidence per layer (rows: fine-tune vs parent, and the re-randomised-MLP control)")
    fig.subplots_adjust(hspace=0.45, wspace=0.3, top=1 - 0.9 / (2.9 * len(keys)))
    ctx.figure(fig, "damage_layers")


def _plot_proxy(ctx: Context, proxy: dict) -> None:
    import matplotlib.pyplot as plt

    names = ["base", "proxy", "tuned", "expert", "antiexpert"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [proxy["answer_accuracy"][n] for n in names], 0.4, label="answer accuracy")
    ax.bar([i + 0.2 for i in x], [proxy["fact_recall"][n] for n in names], 0.4, label="fact recall")
    labels = ["base", "proxy", "tuned\n(sft-answer)", "expert\n(small-tuned)", "anti-expert\n(small-base)"]
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    gc = proxy["gap_closed"]
    ax.set_title(f"answer-only format; gap closed {'n/a' if gc is None else f'{gc:.2f}'}", fontsize=9)
    ax.legend(fontsize=8)
    ctx.figure(fig, "proxy_accuracy")


def claim(r: dict) -> Claim:
    p, c = r["proxy"], r["control"]["fact_recall"]
    acc, rec = p["answer_accuracy"], p["fact_recall"]
    gc = _f(p["gap_closed"])
    organism = (
        f"held-out answer acc. base {pct(acc['base'])}, proxy {pct(acc['proxy'])}, tuned {pct(acc['tuned'])} "
        f"(tuning gained {p['gap_problems']} of {r['n_problems']} problems; gap closed {gc}); "
        f"fact recall base {pct(rec['base'])}, proxy {pct(rec['proxy'])}, tuned {pct(rec['tuned'])}; "
        f"fine-tunes losing fact recall: "
        f"{r['n_lost_fact_recall']} of {r['n_fine_tunes']}; control (re-randomised {r['control']['site']}): "
        f"fact recall {c['score_base']:.2f}->{c['score_tuned']:.2f}, "
        f"localised to layers {c['damaged_layers']}"
    )
    kept = rec["tuned"] < rec["base"] and rec["proxy"] > rec["tuned"]
    closes = p["gap_measurable"] and p["gap_closed"] is not None and p["gap_closed"] >= 0.5
    if r["lost_fact_recall"]:
        knowledge = (
            f"the proxy kept fact recall ({pct(rec['proxy'])}) that tuning lost ({pct(rec['tuned'])})"
            if kept
            else f"tuning lost fact recall ({pct(rec['tuned'])}); the proxy: {pct(rec['proxy'])}"
        )
    else:
        knowledge = "no fine-tune lost fact recall, so there was no knowledge damage to keep or localise"
    if not p["gap_measurable"]:
        task = f"direct tuning gained only {p['gap_problems']} held-out problems: no gap closed to measure"
    elif acc["proxy"] < acc["base"]:
        task = (
            f"the proxy fell below base on held-out problems ({pct(acc['proxy'])} vs {pct(acc['base'])}; "
            f"gap closed {gc})"
        )
    else:
        task = f"the proxy closed {gc} of the held-out gap"
    verdict = "reproduced" if kept and closes else "partly" if kept or closes else "not reproduced"
    why = f"{knowledge}; {task}"
    for name in r["lost_solve_rate"]:
        d = r["damage"][name]["solve_rate"]
        if d["best_site"] is not None:
            why += (
                f"; the one skill lost, {name}'s solve rate "
                f"({pct(d['score_base'])}->{pct(d['score_tuned'])}), "
                f"is restored {pct(d['best_restoration'])} by patching {d['best_site']} from its parent"
            )
            break
    if c["gap"] > 0 and c["best_site"]:
        why += (
            f"; the localiser does find a known damage (patching {c['best_site']} back restores "
            f"{pct(c['best_restoration'])} in the control)"
        )
    return Claim(FINDING, TITLE, PAPER, organism, verdict, why)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
