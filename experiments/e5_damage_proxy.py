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
direct fine-tune, ``small-*`` = the small expert / anti-expert pair, facts = knowledge. Knowledge
is recalled per item under every decoding, of two kinds: the path facts (``F x :`` | neighbours,
rehearsed by every trace) and the node attributes (``F x C`` | colour, which only base's data
holds, so fine-tuning can forget them).

The verdict (:func:`claim`): first, some fine-tune must have lost knowledge at some dose (recall
minus its parent's, paired over items, with an interval below zero), else there is nothing to keep. Then two
parts: knowledge (for each kind that ``sft-answer`` lost, proxy minus tuned recall, paired over
items, must exclude zero upward) and task (given that tuning raised answer accuracy over base,
paired over problems, proxy minus base accuracy must exclude zero upward, and so must proxy minus
a noise proxy whose expert is ``small-base`` moved at random as far as ``small-tuned`` moved,
tensor by tensor: a gain that any same-size change of the small model would give is not the
tune's); the gap closed is shown beside it.

(c) Damage along the dose axis. Every fine-tune saved at doses (``sft-answer@50``, ...) is read
from its cards (:func:`dose_curves`: accuracy in its own format, solve rate, markers, fact and
attribute recall against dose steps and relative weight change, no generation; e4 shares it).
Then, per dose, fact and attribute recall per node against the parent's, paired over nodes
(:func:`damage_along_dose`): the first dose whose interval lies below zero is where knowledge
started to fall, and the localisation runs on the most damaged model and dose with that kind's
recall as its scorer. When no dose of any fine-tune lost recall, the result says so.
"""

import math
from typing import Any

from experiments.claims import Claim
from experiments.context import Context
from experiments.controls import beyond_control
from experiments.dose_axis import dose_curves, plot_dose_curves
from experiments.verdicts import (
    ClaimHead,
    Precondition,
    beyond_zero,
    check_preconditions,
    combine,
    fmt_interval,
    holds,
    interval_verdict,
    paired_interval,
)

FINDING = 5
TITLE = "Proxy-tuning keeps knowledge that weight fine-tuning damages"
PAPER = "proxy closes 88-91% of the gap to direct tuning; beats it on knowledge (TruthfulQA)"
HEAD = ClaimHead(FINDING, TITLE, PAPER)
PAIRS = (("sft-answer", "base"), ("rl-answer", "base"), ("small-tuned", "small-base"))
KINDS = ("fact", "attr")  # path facts (rehearsed by traces), node attributes (base's data only)


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
    curves = dose_curves(ctx)
    scan = damage_along_dose(ctx, curves)
    worst = most_damaged(scan)
    localised = None
    if worst is not None:  # the localisation where knowledge really fell, with that kind's scorer
        rep = localise_damage(
            ctx.model(worst["parent"]),
            ctx.model(worst["model"]),
            _recall_scorer(ctx, worst["kind"]),
            probe_task=probe_task,
            config=config,
            progress=False,
        )
        reports[(worst["model"], f"{worst['kind']}_recall")] = rep
        localised = {**worst, **_summary(rep)}
    plot_dose_curves(ctx, curves, ("accuracy", "fact_recall", "attr_recall"), "dose_curves")

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

    proxy = _proxy(ctx, problems, [t for pair in PAIRS for t in pair])
    _plot_damage(ctx, reports)
    _plot_proxy(ctx, proxy)
    lost_fact = [t for t, d in damage.items() if d["fact_recall"]["gap"] > 0]
    lost_solve = [t for t, d in damage.items() if d["solve_rate"]["gap"] > 0]
    return {
        "damage": damage,
        "dose_curves": curves,
        "damage_along_dose": scan,
        "most_damaged": worst,
        "localised_most_damaged": localised,
        "damage_note": damage_note(scan),
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


def _knowledge(world) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Per kind, the recall prompts of every node and the words that must follow each."""
    from interp.organism.traces import attr_prompt, fact_prompt
    from interp.organism.world import colour_name

    nodes = range(world.n_nodes)
    facts = [[f"n{v}" for v in world.neighbours(x)] + ["E"] for x in nodes]
    return {
        "fact": ([fact_prompt(x) for x in nodes], facts),
        "attr": ([attr_prompt(x) for x in nodes], [[colour_name(world.colour(x)), "E"] for x in nodes]),
    }


def _proxy(ctx: Context, problems: list[tuple[int, int]], models: list[str]) -> dict:
    """Answer accuracy and per-item knowledge recall under proxy decoding and under each of
    ``models`` (with ``tuned`` = sft-answer, ``expert``/``antiexpert`` = the small pair) decoded alone."""
    from interp.generation import generate
    from interp.organism.evaluate import answers_correct
    from interp.organism.traces import answer_prompt
    from probes.damage.noise import matched_noise
    from steering.decoding import ProxyConfig, proxy_tune

    world, tok = ctx.world
    stop, pad = tok.token_id("E"), tok.pad_token_id
    base, expert, anti = ctx.model("base"), ctx.model("small-tuned"), ctx.model("small-base")
    noise_expert = matched_noise(anti, expert)  # the task part's control
    solo = {"base": base, "tuned": ctx.model("sft-answer"), "expert": expert, "antiexpert": anti}
    solo.update({m: ctx.model(m) for m in models if _model_key(m) == m and m != "base"})
    ask = [tok.encode(answer_prompt(s, g)) for s, g in problems]

    def decode(ids: list[list[int]], max_new: int) -> tuple[dict[str, list[list[str]]], float]:
        cfg = ProxyConfig(alpha=1.0, max_new_tokens=max_new, stop_id=stop, pad_id=pad)
        res = proxy_tune(base, expert, anti, ids, cfg)
        out = {"proxy": res.tokens, "proxy_noise": proxy_tune(base, noise_expert, anti, ids, cfg).tokens}
        out.update({k: generate(m, ids, max_new, stop_id=stop, pad_id=pad) for k, m in solo.items()})
        return {k: [tok.words(o) for o in v] for k, v in out.items()}, res.changed_share

    answers, changed = decode(ask, 16)
    correct = {k: [int(x) for x in answers_correct(world, problems, v)] for k, v in answers.items()}
    acc = {k: sum(v) / len(v) for k, v in correct.items()}
    recall_items: dict[str, dict[str, list[int]]] = {}
    for kind, (prompts, truth) in _knowledge(world).items():
        recalled, _ = decode([tok.encode(p) for p in prompts], 8)
        recall_items[kind] = {
            k: [int(o == t) for o, t in zip(v, truth, strict=True)] for k, v in recalled.items()
        }
    recall = {k: sum(v) / len(v) for k, v in recall_items["fact"].items()}
    denom = acc["tuned"] - acc["base"]
    return {
        "answer_accuracy": acc,
        "fact_recall": recall,
        "attr_recall": {k: sum(v) / len(v) for k, v in recall_items["attr"].items()},
        "n_problems": len(problems),
        "gap": denom,
        "gap_problems": round(denom * len(problems)),
        "gap_closed": (acc["proxy"] - acc["base"]) / denom if denom else None,
        "changed_share": changed,
        "format": "answer",
        "alpha": 1.0,
        "per_problem": {"correct": correct},
        "per_item": recall_items,
    }


# Damage along the dose axis (the curves themselves: experiments/dose_axis.py).


def knowledge_items(ctx: Context, name: str) -> dict[str, list[int]]:
    """Per node, whether ``name`` recalls its path fact and its attribute, greedily: the card's
    lists when they are of these weights, else measured now (one short generation per kind)."""
    from interp.organism.evaluate import attrs_correct, facts_correct

    card, model = ctx.card(name), ctx.model(name)
    per = card.get("per_problem") or {}
    if card.get("fingerprint") == model.fingerprint and all(f"{k}_correct" in per for k in KINDS):
        return {k: list(per[f"{k}_correct"]) for k in KINDS}
    world, tok = ctx.world
    return {
        "fact": [int(x) for x in facts_correct(model.module, tok, world)],
        "attr": [int(x) for x in attrs_correct(model.module, tok, world)],
    }


def damage_along_dose(ctx: Context, curves: dict[str, dict]) -> dict[str, dict]:
    """Per fine-tune and dose: fact and attribute recall minus the parent's, paired over nodes,
    whether each fell (interval below zero), and the first dose where one did."""
    out = {}
    for name, curve in curves.items():
        ref = knowledge_items(ctx, curve["parent"])
        rows = {}
        for model, p in sorted(curve["points"].items(), key=lambda kv: kv[1]["steps"]):
            if p["steps"] == 0:
                continue
            mine = knowledge_items(ctx, model)
            row: dict[str, Any] = {"steps": p["steps"], "relative_weight_change": p["relative_weight_change"]}
            for kind in KINDS:
                iv = paired_interval(mine[kind], ref[kind])
                row[f"{kind}_recall_change"] = iv
                row[f"{kind}_recall_fell"] = beyond_zero(iv, -1)
            rows[model] = row
        out[name] = {"parent": curve["parent"], "points": rows, "first_damage": first_damage(rows)}
    return out


def first_damage(rows: dict[str, dict]) -> dict[str, Any] | None:
    """The lowest dose whose fact or attribute recall fell (:func:`damage_along_dose`'s rows), or
    ``None`` when none did.

    Example:
        >>> down = {"estimate": -0.2, "low": -0.3, "high": -0.1, "n": 24}
        >>> rows = {"t@9": {"steps": 9, "fact_recall_fell": False, "attr_recall_fell": True,
        ...                 "attr_recall_change": down},
        ...         "t@3": {"steps": 3, "fact_recall_fell": False, "attr_recall_fell": False}}
        >>> first_damage(rows)["model"], first_damage({"t@3": rows["t@3"]})
        ('t@9', None)
    """
    for model, row in sorted(rows.items(), key=lambda kv: kv[1]["steps"]):
        kinds = [k for k in KINDS if row.get(f"{k}_recall_fell")]
        if kinds:
            return {"model": model, "steps": row["steps"], "kinds": kinds}
    return None


def most_damaged(scan: dict[str, dict]) -> dict[str, Any] | None:
    """The model and dose whose recall fell most (the lowest estimate among the falls that
    :func:`damage_along_dose` found, over both kinds), or ``None`` when nothing fell."""
    worst = None
    for name, s in scan.items():
        for model, row in s["points"].items():
            for kind in KINDS:
                iv = row[f"{kind}_recall_change"]
                if row[f"{kind}_recall_fell"] and (
                    worst is None or iv["estimate"] < worst["change"]["estimate"]
                ):
                    worst = {
                        "fine_tune": name,
                        "model": model,
                        "parent": s["parent"],
                        "kind": kind,
                        "steps": row["steps"],
                        "change": iv,
                    }
    return worst


def damage_note(scan: dict[str, dict]) -> str:
    """One sentence: where knowledge first fell along each dose axis, or that it fell nowhere."""
    firsts = [(n, s["first_damage"]) for n, s in scan.items() if s["first_damage"]]
    if not scan:
        return "no fine-tune was saved at doses: damage along dose not measured"
    if not firsts:
        doses = sum(len(s["points"]) for s in scan.values())
        return (
            f"no fine-tune lost fact or attribute recall at any dose ({len(scan)} fine-tunes, "
            f"{doses} doses, paired over nodes)"
        )
    return "recall first fell at " + ", ".join(f"{f['model']} ({'+'.join(f['kinds'])})" for _, f in firsts)


def _recall_scorer(ctx: Context, kind: str):
    """``scorer(model) -> float``: the share of nodes whose ``kind`` fact the model recalls."""
    from interp.organism.evaluate import attrs_correct, facts_correct

    world, tok = ctx.world
    recall = facts_correct if kind == "fact" else attrs_correct

    def score(model) -> float:
        ok = recall(model.module, tok, world)
        return sum(ok) / len(ok)

    score.__name__ = f"{kind}_recall"
    return score


def _plot_damage(ctx: Context, reports: dict) -> None:
    import matplotlib.pyplot as plt

    keys = [k for k in reports if k[1] in ("fact_recall", "attr_recall")] + [
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


def _model_key(name: str) -> str:
    """The name a zoo model's per-item recall is kept under in ``proxy["per_item"]``."""
    return {"sft-answer": "tuned", "small-tuned": "expert", "small-base": "antiexpert"}.get(name, name)


def claim(r: dict) -> Claim:
    """Some fine-tune must have lost knowledge (precondition); then the proxy must keep what the
    direct tune lost and must beat base on the task (given that tuning raised accuracy)."""
    p, c = r["proxy"], r["control"]["fact_recall"]
    items, correct = p["per_item"], p["per_problem"]["correct"]
    losses = {
        (tuned, kind): paired_interval(items[kind][_model_key(tuned)], items[kind][_model_key(parent)])
        for tuned, parent in PAIRS
        for kind in KINDS
    }
    lost = [k for k, iv in losses.items() if beyond_zero(iv, -1)]
    scan = r.get("damage_along_dose") or {}
    at_doses = [
        (model, kind)
        for s in scan.values()
        for model, row in s["points"].items()
        for kind in KINDS
        if row[f"{kind}_recall_fell"]
    ]
    text = [
        "recall - parent: " + ", ".join(f"{t} {kind} {fmt_interval(iv)}" for (t, kind), iv in losses.items())
    ]
    if scan:
        text.append(f"along dose: {r.get('damage_note') or damage_note(scan)}")
    fell = list(dict.fromkeys([*lost, *at_doses]))
    pre = [
        Precondition(
            "some fine-tune lost knowledge at some dose (recall - parent, paired over items, below zero)",
            bool(fell),
            ", ".join(f"{t} {kind}" for t, kind in fell) or f"none did{' at any dose' if scan else ''}",
        )
    ]
    tuned_gain = paired_interval(correct["tuned"], correct["base"])
    proxy_gain = paired_interval(correct["proxy"], correct["base"])
    text.append(
        f"answer acc. tuned - base {fmt_interval(tuned_gain)}, proxy - base {fmt_interval(proxy_gain)}, "
        f"proxy - tuned {fmt_interval(paired_interval(correct['proxy'], correct['tuned']))} "
        f"(gap closed {_f(p['gap_closed'])})"
    )
    vs_noise = paired_interval(correct["proxy"], correct["proxy_noise"]) if "proxy_noise" in correct else None
    text.append(f"proxy - noise-expert proxy (small-base moved at random as far) {fmt_interval(vs_noise)}")
    kept = {kind: paired_interval(items[kind]["proxy"], items[kind]["tuned"]) for kind in KINDS}
    text.append("recall proxy - tuned: " + ", ".join(f"{k} {fmt_interval(iv)}" for k, iv in kept.items()))
    text.append(
        f"control (re-randomised {r['control']['site']}): fact recall {c['score_base']:.2f}->"
        f"{c['score_tuned']:.2f}, localised to layers {c['damaged_layers']}"
    )
    organism = "; ".join(text)
    failed = check_preconditions(HEAD, organism, *pre)
    if failed:
        return failed
    direct_lost = [kind for t, kind in lost if t == "sft-answer"]
    # the same items as the losses, which passed the sample-size check
    knowledge = combine([interval_verdict(kept[k], +1) for k in direct_lost] or ["not testable"])
    task_pre = holds("tuning raised answer accuracy over base", tuned_gain, +1)
    task = beyond_control(proxy_gain, vs_noise, +1) if task_pre.held else "not testable"
    pre.append(task_pre)
    why = [
        f"knowledge: {knowledge}"
        + (f" (sft-answer lost {', '.join(direct_lost)})" if direct_lost else " (sft-answer lost none)"),
        f"task: {task}" + ("" if task_pre.held else f" ({task_pre.name} failed)"),
    ]
    for name in r["lost_solve_rate"]:
        d = r["damage"][name]["solve_rate"]
        if d["best_site"] is not None:
            why.append(
                f"{name}'s solve rate ({d['score_base']:.2f}->{d['score_tuned']:.2f}) is restored "
                f"{_f(d['best_restoration'])} by patching {d['best_site']} from its parent"
            )
            break
    loc = r.get("localised_most_damaged")
    if loc:
        why.append(
            f"most damaged: {loc['model']} ({loc['kind']} recall {fmt_interval(loc['change'])} vs "
            f"{loc['parent']}), localised to layers {loc['damaged_layers']}"
            + (
                f", best restored by {loc['best_site']} ({_f(loc['best_restoration'])})"
                if loc["best_site"]
                else ""
            )
        )
    if c["gap"] > 0 and c["best_site"]:
        why.append(
            f"the localiser finds the control's damage ({c['best_site']}, "
            f"restored {_f(c['best_restoration'])})"
        )
    return HEAD.claim(organism, combine([knowledge, task]), "; ".join(why), pre)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


if __name__ == "__main__":
    from experiments.reproduce import main_one

    raise SystemExit(main_one(__spec__.name))
