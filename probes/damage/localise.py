"""Localising damage: score, patch every site both ways, gather the evidence, name the layers."""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict

from interp.errors import DamageError, InterpError
from interp.models import Model, load_model
from probes.damage.activations import cka_by_site, probe_retention
from probes.damage.config import COMPONENTS, EVIDENCE, HOOKS, DamageConfig, ProbeTask, Scorer
from probes.damage.report import DamageReport, DamageRow, _finite, _top
from probes.damage.weights import check_same_architecture, cross_patch, weight_change

# The name these messages were always logged under, before the module became a package.
log = logging.getLogger("probes.damage")


def _score(scorer: Scorer, model: Model, what: str) -> float:
    name = getattr(scorer, "__name__", type(scorer).__name__)
    try:
        value = scorer(model)
    except InterpError:
        raise
    except Exception as exc:
        raise DamageError(f"scorer {name!r} raised {type(exc).__name__} on {what}: {exc}") from exc
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DamageError(f"scorer {name!r} returned {value!r} on {what}; expected a number") from None
    if not math.isfinite(value):
        raise DamageError(f"scorer {name!r} returned {value} on {what}; expected a finite number")
    return value


def localise_damage(
    base: "Model | str",
    tuned: "Model | str",
    scorer: Scorer,
    tokens: Sequence[Sequence[int]] | None = None,
    probe_task: ProbeTask | None = None,
    config: DamageConfig = DamageConfig(),  # noqa: B008 (frozen, so sharing it is safe)
    progress: bool = True,
) -> DamageReport:
    """Rank layers and components by where fine-tuning damaged the task, on four kinds of evidence.

    Args:
        base: the model before fine-tuning (a :class:`Model` or a spec for ``load_model``).
        tuned: the fine-tuned model, of the same architecture.
        scorer: ``scorer(model) -> float``, higher is better (e.g. :func:`organism_scorer`); it
            is called on both models and on each patched one (see :func:`cross_patch`).
        tokens: token rows for CKA (all positions); default the probe task's rows; with
            neither, no CKA.
        probe_task: labels for probe retention; ``None``: no probes.
        config: sites, directions, batch size, probe settings, verdict threshold.
        progress: tqdm progress bars.

    Returns:
        A :class:`DamageReport`: table, figure, verdict.

    Raises:
        DamageError: different architectures (both named), or a scorer that raised or returned
            no finite number (the patched site is named).

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> a, b = (Model(HookedTransformer(cfg), None, s) for s in ("base", "tuned"))
        >>> _ = b.module.load_state_dict(a.module.state_dict())
        >>> _ = b.module.blocks[1].mlp.W_out.data.mul_(-1)
        >>> x = torch.tensor([[1, 2, 3, 4, 0, 1]])
        >>> ref = a(x).argmax(-1)
        >>> agree = lambda m: float((m(x).argmax(-1) == ref).float().mean())
        >>> localise_damage(a, b, agree, tokens=x.tolist(), progress=False).top_layer("weight_change")
        1
    """
    from tqdm.auto import tqdm

    base, tuned = (m if isinstance(m, Model) else load_model(m) for m in (base, tuned))
    check_same_architecture(base, tuned)
    n = base.n_layers
    s_base = _score(scorer, base, f"the base model {base.spec!r}")
    s_tuned = _score(scorer, tuned, f"the tuned model {tuned.spec!r}")
    gap = s_base - s_tuned
    sites = [(c, i, HOOKS[c].format(i)) for i in range(n) for c in config.components]
    runs = [("restoration", tuned, base)] + ([("damage", base, tuned)] if config.directions == "both" else [])
    raw: dict[str, dict[str, float]] = {}
    if gap > config.min_gap:
        bar = tqdm(total=len(sites) * len(runs), desc="cross-model patching", disable=not progress)
        with bar:
            for _, _, site in sites:
                for kind, receiver, donor in runs:
                    with cross_patch(receiver, donor, site):
                        s = _score(scorer, receiver, f"{receiver.spec!r} with {site} from {donor.spec!r}")
                    raw.setdefault(site, {})[kind] = s
                    bar.update()
    else:
        log.info("no score lost (base %.4g, tuned %.4g): patching skipped", s_base, s_tuned)
    patch = {
        (kind, site): ((s - s_tuned) if kind == "restoration" else (s_base - s)) / gap
        for site, by_kind in raw.items()
        for kind, s in by_kind.items()
    }
    wc = weight_change(base, tuned)
    tokens = tokens if tokens is not None else (probe_task.tokens if probe_task is not None else None)
    cka = cka_by_site(base, tuned, tokens, config.batch_size, progress) if tokens is not None else {}
    probes = probe_retention(base, tuned, probe_task, config, progress) if probe_task is not None else {}

    wc_key = {"attn": "blocks.{}.attn", "mlp": "blocks.{}.mlp", "resid_post": "blocks.{}"}
    rows = [DamageRow("embed", None, "embed", weight_change=wc.get("embed"))]
    for i in range(n):
        for comp in COMPONENTS:
            site = HOOKS[comp].format(i)
            pb, pt = probes.get(site, (None, None))
            rows.append(
                DamageRow(
                    comp,
                    i,
                    site,
                    patch.get(("restoration", site)),
                    patch.get(("damage", site)),
                    wc.get(wc_key[comp].format(i)),
                    cka.get(site),
                    pb,
                    pt,
                )
            )
    rows.append(DamageRow("final", None, "final", weight_change=wc.get("final")))
    evidence = _layer_evidence(rows, cka, n)
    damaged, verdict = _verdict(evidence, rows, s_base, s_tuned, config)
    meta = {
        "base_fingerprint": base.fingerprint,
        "tuned_fingerprint": tuned.fingerprint,
        "n_cka_rows": len(tokens) if tokens is not None else 0,
        "probe_task": probe_task.name if probe_task else None,
        "n_probe_rows": len(probe_task.tokens) if probe_task else 0,
        "config": {**asdict(config), "probe": asdict(config.probe)},
        "patching": "weight transplant (probes.damage.cross_patch)",
        "patched_scores": raw,
    }
    name = getattr(scorer, "__name__", type(scorer).__name__)
    return DamageReport(
        base.spec, tuned.spec, name, s_base, s_tuned, tuple(rows), evidence, damaged, verdict, meta
    )


def _layer_evidence(
    rows: list[DamageRow], cka: dict[str, float], n: int
) -> dict[str, tuple[float | None, ...]]:
    def at(comp: str, i: int) -> DamageRow:
        return next(r for r in rows if r.component == comp and r.layer == i)

    def most(i: int, attr: str) -> float | None:
        vals = [_finite(getattr(at(c, i), attr)) for c in ("attn", "mlp")]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    def steps(values: list[float | None], first: float | None) -> tuple[float | None, ...]:
        prev = [first, *values[:-1]]
        return tuple(None if a is None or b is None else b - a for a, b in zip(prev, values, strict=True))

    resid = [_finite(cka.get(HOOKS["resid_post"].format(i))) for i in range(n)]
    drops = [_finite(at("resid_post", i).probe_drop) for i in range(n)]
    return {
        "restoration": tuple(most(i, "restoration") for i in range(n)),
        "weight_change": tuple(most(i, "weight_change") for i in range(n)),
        "cka_drop": tuple(
            None if v is None else -v for v in steps(resid, _finite(cka.get("blocks.0.hook_resid_pre")))
        ),
        "probe_drop": steps(drops, 0.0),
    }


def _verdict(
    evidence, rows, s_base: float, s_tuned: float, config: DamageConfig
) -> tuple[tuple[int, ...], str]:
    lead = "restoration" if any(v is not None for v in evidence["restoration"]) else "weight_change"
    values = evidence[lead]
    peak = max((v for v in values if v is not None), default=None)
    if peak is None or peak <= 0:
        text = f"No layer stands out: {lead} is nowhere positive (base {s_base:.3f}, tuned {s_tuned:.3f})."
        stream = [r for r in rows if r.component == "resid_post" and (_finite(r.restoration) or 0) >= 0.5]
        if lead == "restoration" and stream:
            text += (
                f" No single attention or MLP output restores the score; the residual stream restores "
                f"{stream[0].restoration:.0%} once blocks 0..{stream[0].layer} come from the base "
                f"({stream[0].site}): the damage is spread over those layers."
            )
        return (), text
    damaged = tuple(
        sorted(
            (i for i, v in enumerate(values) if v is not None and v >= config.threshold * peak),
            key=lambda i: -values[i],
        )
    )
    if lead == "restoration":
        best = max(
            (r for r in rows if r.component in ("attn", "mlp") and _finite(r.restoration) is not None),
            key=lambda r: r.restoration,
        )
        why = (
            f"patching {best.site} from the base restores {best.restoration:.0%} of the lost score "
            f"(base {s_base:.3f}, tuned {s_tuned:.3f})"
        )
    else:
        why = (
            f"the tuned model lost no score (base {s_base:.3f}, tuned {s_tuned:.3f}); the weights changed "
            f"most in layer {damaged[0]} ({peak:.3g} relative)"
        )
    agree, disagree = [], []
    labels = {
        "weight_change": "weight change",
        "cka_drop": "CKA drop",
        "probe_drop": "probe-accuracy drop",
        "restoration": "restoration",
    }
    for e in EVIDENCE:
        top = _top(evidence[e])
        if e == lead or top is None:
            continue
        text = f"{labels[e]} (largest at layer {top}: {evidence[e][top]:.3g})"
        (agree if top in damaged else disagree).append(text)
    where = f"layer{'s' if len(damaged) > 1 else ''} {', '.join(map(str, damaged))}"
    if lead == "restoration":
        parts = [f"Damage lies in {where}: {why}."]
    else:
        parts = [
            f"No damage for patching to localise: {why}; within {config.threshold:.0%} of that: {where}."
        ]
    if agree:
        parts.append(f"Agreeing: {'; '.join(agree)}.")
    if disagree:
        parts.append(f"Not agreeing: {'; '.join(disagree)}.")
    return damaged, " ".join(parts)
