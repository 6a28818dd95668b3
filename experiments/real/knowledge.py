"""Stage 4, finding (a): knowledge damage along the dose axis, and where it lies.

Per checkpoint, rehearsed and held-out fact recall (greedy exact match) and mean log-probability
of the gold answer, each as a paired bootstrap difference from the parent over the same facts;
damage is claimed only where the interval excludes 0. Then, at the strongest dose, when
held-out log-probability fell: :func:`probes.damage.localise_damage` (weight transplant from
the parent, per layer and per attention / MLP; restoration direction) with the scorer "mean
log-probability of the held-out facts". Its control would also pass a hollow test: the parent
with random noise of the same Frobenius norm as the tune's whole weight change, put into one
known MLP; the localiser must name that layer, else the localisation is reported as untrusted.

The damage itself must survive a hollow-test control too: the parent with a random weight change
of the same norm as the tune's, tensor by tensor (:func:`matched_noise`), scored on the same
held-out facts. Damage is "reproduced" only where the tune lost more held-out log-probability
than that noise did (paired interval of tune minus noise below 0): a fine-tune that moved the
weights as far in a random direction would otherwise pass.
"""

import logging
from typing import Any

from experiments.real.common import fmt_iv, load, paired, verdict
from experiments.real.tunes import State

log = logging.getLogger(__name__)

SPLITS = ("heldout", "rehearsed")


def damage_table(state: State) -> dict[str, Any]:
    """Per tune and split: recall and log-probability differences from the parent, with intervals."""
    parent = state.evals["parent"]["facts"]
    rows: dict[str, Any] = {}
    for label in state.tunes:
        ev = state.evals[label]["facts"]
        rows[label] = {}
        for split in SPLITS:
            if split not in parent or split not in ev:
                continue
            a, b = ev[split], parent[split]
            lp = paired(a["logprob"], b["logprob"], state.profile.resamples)
            rows[label][split] = {
                "recall": a["recall"],
                "mean_logprob": a["mean_logprob"],
                "recall_diff": paired(a["exact"], b["exact"], state.profile.resamples),
                "logprob_diff": lp,
                "damaged": lp["excludes_0"] and lp["estimate"] < 0,
            }
    return rows


def _scorer(facts: Any):
    from interp.tasks.facts import fact_logprob

    def heldout_logprob(model: Any) -> float:
        return float(fact_logprob(model, facts).mean())

    return heldout_logprob


def _noisy_parent(state: State, norm: float) -> tuple[Any, int]:
    """The parent with Gaussian noise of Frobenius norm ``norm`` added to one MLP (two thirds up)."""
    import torch

    from interp.models import Model
    from probes.damage import parameter_groups

    model = load(state.parent)
    layer = (2 * model.n_layers) // 3
    names = set(parameter_groups(model)[f"blocks.{layer}.mlp"])
    params = [p for n, p in model.module.named_parameters() if n in names and p.ndim == 2]
    gen = torch.Generator().manual_seed(0)
    noise = [torch.randn(p.shape, generator=gen) for p in params]
    total = float(torch.sqrt(sum((z**2).sum() for z in noise)))
    with torch.no_grad():
        for p, z in zip(params, noise, strict=True):
            p.add_(z.to(p.dtype) * (norm / total))
    control = Model(model.module, model.tokenizer, f"{state.parent} + noise in blocks.{layer}.mlp")
    control.refresh_fingerprint()
    return control, layer


def matched_noise(state: State, label: str, seed: int = 0) -> Any:
    """The parent plus Gaussian noise with, in every weight tensor, the norm of ``label``'s change
    (:func:`probes.damage.noise.matched_noise`, the control the organism's experiments use too)."""
    from probes.damage.noise import matched_noise as noise

    return noise(load(state.parent), load(state.spec_of(label)), seed=seed)


def noise_control(state: State, label: str) -> dict[str, Any]:
    """Held-out log-probability of the matched-noise parent: its drop, and the tune's beyond it."""
    from interp.tasks.facts import fact_logprob

    facts = state.facts_eval.split("heldout")
    noisy = [float(x) for x in fact_logprob(matched_noise(state, label), facts)]
    parent = state.evals["parent"]["facts"]["heldout"]["logprob"]
    tune = state.evals[label]["facts"]["heldout"]["logprob"]
    r = state.profile.resamples
    return {
        "mean_logprob": sum(noisy) / len(noisy),
        "noise_minus_parent": paired(noisy, parent, r),
        "tune_minus_noise": paired(tune, noisy, r),
    }


def _change_norm(parent: Any, tuned: Any) -> float:
    import torch

    sq = 0.0
    other = dict(tuned.module.named_parameters())
    with torch.no_grad():
        for name, p in parent.module.named_parameters():
            sq += float(((other[name].float() - p.float()) ** 2).sum())
    return sq**0.5


def _localise(parent: Any, tuned: Any, scorer) -> dict[str, Any]:
    from probes.damage import DamageConfig, localise_damage

    cfg = DamageConfig(components=("attn", "mlp"), directions="restore")
    rep = localise_damage(parent, tuned, scorer, config=cfg, progress=False)
    sites = {r.site: r.restoration for r in rep.rows if r.restoration is not None}
    best = max(sites, key=lambda s: sites[s]) if sites else None
    return {
        "score_parent": rep.score_base,
        "score_tuned": rep.score_tuned,
        "damaged_layers": list(rep.damaged_layers),
        "top_layer": rep.top_layer("restoration"),
        "restoration_by_layer": [None if v is None else float(v) for v in rep.layer_evidence["restoration"]],
        "restoration_by_site": {k: float(v) for k, v in sites.items()},
        "best_site": best,
        "best_restoration": None if best is None else float(sites[best]),
        "report_verdict": rep.verdict,
    }


def stage_knowledge(state: State) -> dict[str, Any]:
    """The damage table, and localisation of the strongest dose's held-out damage with its control."""
    table = damage_table(state)
    strongest = table.get(state.strongest, {}).get("heldout")
    out: dict[str, Any] = {
        "table": table,
        "strongest": state.strongest,
        "localisation": None,
        "control": None,
    }
    for label, row in table.items():
        if row.get("heldout", {}).get("damaged"):
            row["heldout"]["noise_control"] = noise_control(state, label)
    if not strongest or not strongest["damaged"]:
        out["localisation_status"] = (
            "not testable: no held-out log-probability damage measured at the strongest dose"
        )
        out["claim"] = _claim(out)
        return out
    facts = state.facts_eval.split("heldout").subset(state.profile.n_scorer_facts)
    scorer = _scorer(facts)
    parent, tuned = load(state.parent), load(state.spec_of(state.strongest))
    out["localisation"] = _localise(parent, tuned, scorer)
    out["n_scorer_facts"] = len(facts)
    norm = _change_norm(parent, tuned)
    del tuned
    control, layer = _noisy_parent(state, norm)
    out["control"] = {"layer": layer, "noise_norm": norm, **_localise(parent, control, scorer)}
    out["localisation_status"] = "run"
    out["claim"] = _claim(out)
    return out


def _claim(r: dict[str, Any]) -> dict[str, Any]:
    rows = r["table"]
    lost = [t for t, row in rows.items() if row.get("heldout", {}).get("damaged")]
    damaged = [t for t in lost if _beyond_noise(rows[t]["heldout"])]
    lost_em = [
        t
        for t, row in rows.items()
        if row.get("heldout", {}).get("recall_diff", {}).get("excludes_0")
        and row["heldout"]["recall_diff"]["estimate"] < 0
    ]
    if not rows:
        return verdict("not testable", "no tune to compare with the parent")
    numbers = "; ".join(
        f"{t}: held-out log-prob {row['heldout']['logprob_diff']['estimate']:+.3f} "
        f"[{row['heldout']['logprob_diff']['low']:+.3f}, {row['heldout']['logprob_diff']['high']:+.3f}], "
        f"recall {row['heldout']['recall_diff']['estimate']:+.3f}"
        for t, row in rows.items()
        if "heldout" in row
    )
    noise = "; ".join(
        f"{t}: tune - matched noise {fmt_iv(rows[t]['heldout']['noise_control']['tune_minus_noise'])}, "
        f"noise - parent {fmt_iv(rows[t]['heldout']['noise_control']['noise_minus_parent'])}"
        for t in lost
    )
    if not damaged:
        why = f"no tune lost held-out log-probability with an interval excluding 0 ({numbers})"
        if lost:
            why = (
                f"{', '.join(lost)} lost held-out log-probability, but not beyond a random weight change "
                f"of the same norm per tensor ({noise}); ({numbers})"
            )
        return verdict("not reproduced", why, damaged=damaged, lost_exact_match=lost_em)
    loc, ctl = r.get("localisation"), r.get("control")
    where = ""
    if loc is not None and ctl is not None:
        found = ctl["top_layer"] == ctl["layer"]  # by restoration only: weight change alone is hollow
        trust = "" if found else "; localisation NOT trusted: its planted control was not found"
        where = (
            f"; patching from the parent restores most at {loc['best_site']} "
            f"({loc['best_restoration']:.0%}); layers named {loc['damaged_layers']}; the control "
            f"(noise in blocks.{ctl['layer']}.mlp) is {'found' if found else 'NOT found'} "
            f"(restoration peaks at layer {ctl['top_layer']}; score {ctl['score_parent']:.3f} -> "
            f"{ctl['score_tuned']:.3f}){trust}"
        )
    return verdict(
        "reproduced",
        f"held-out knowledge lost in {', '.join(damaged)} beyond a matched random weight change "
        f"({noise}); ({numbers}){where}",
        damaged=damaged,
        lost_exact_match=lost_em,
        localisation_trusted=bool(loc and ctl and ctl["top_layer"] == ctl["layer"]),
    )


def _beyond_noise(row: dict[str, Any]) -> bool:
    """Whether the tune lost more held-out log-probability than the matched noise (interval < 0)."""
    iv = (row.get("noise_control") or {}).get("tune_minus_noise")
    return bool(iv) and iv["excludes_0"] and iv["estimate"] < 0
