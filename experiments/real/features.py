"""Finding (b), features (Kim et al. 2026; Ward et al. 2025): SAE features that fire just before
the parent's self-check phrases, and whether accuracy tunes switch them down.

Texts: the parent's own greedy answers to the test problems, after their chat prompts. A paired
cache (:func:`interp.cache.paired.build_paired_cache`: the same token rows) holds base, parent
and every tune at one middle-layer residual hook, under ``state.out / "features"`` (a rerun over
the same rows and checkpoints reuses it). One top-k SAE is trained on the parent's activations
(attention sinks left out, as :func:`steering.sae_training.train_sae` does by default).

"Self-check features": the ``top_features`` features whose mean activation at the positions
just before a self-check phrase (:data:`experiments.real.profile.SELF_CHECK`; the token whose
residual stream predicts the phrase's first token) most exceeds their mean at the other
response positions of the parent. Per response, the mean activation of those features at its
pre-phrase positions is compared between each model and the parent (paired bootstrap over
responses). The control: as many random other features, each matched to a chosen one by its
firing frequency at those same pre-phrase positions in the parent. (Matched on frequency over all
response positions instead, the controls drawn on SmolLM2 never fired before a phrase, in any
model, so their difference was 0 by construction and tested nothing.) A tune "switched the
features down" when its difference from the parent is below 0 and below the control's
difference (both intervals excluding 0).
"""

import hashlib
import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.real.common import paired, verdict
from experiments.real.profile import require_positive_ints, sizes_of
from experiments.real.tunes import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSizes:
    """How much stage (b)-features measures, per profile.

    Args:
        name: the profile's name.
        top_features: self-check features chosen (and control features drawn).
        expansion_factor: SAE features per residual dimension.
        sae_k: active features per token of the top-k SAE.
        sae_steps: SAE training steps.
        sae_batch: most positions per SAE step (fewer when the cache holds fewer).
        lr: SAE learning rate.
        min_positions: fewest pre-phrase positions for a testable claim.
        control_pool: each control feature is drawn from this many features nearest in firing
            frequency before phrases to its chosen feature.
        contexts: top-activating contexts shown per chosen feature.
    """

    name: str
    top_features: int
    expansion_factor: int
    sae_k: int
    sae_steps: int
    sae_batch: int
    lr: float
    min_positions: int
    control_pool: int
    contexts: int

    def __post_init__(self) -> None:
        require_positive_ints(
            self,
            (
                "top_features",
                "expansion_factor",
                "sae_k",
                "sae_steps",
                "sae_batch",
                "min_positions",
                "control_pool",
                "contexts",
            ),
        )
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}; expected > 0")


FEATURE_SIZES: dict[str, FeatureSizes] = {
    "tiny": FeatureSizes("tiny", 4, 4, 8, 20, 64, 1e-3, 2, 3, 2),
    "quick": FeatureSizes("quick", 8, 2, 32, 200, 256, 1e-3, 20, 5, 3),
    "full": FeatureSizes("full", 8, 8, 32, 2000, 1024, 5e-4, 50, 5, 5),
}


def feature_sizes(profile: str) -> FeatureSizes:
    """The sizes of ``profile``.

    Raises:
        ValueError: an unknown profile, naming the known ones.

    Example:
        >>> feature_sizes("tiny").top_features
        4
    """
    return sizes_of(FEATURE_SIZES, profile)


def cache_label(label: str) -> str:
    """A model label as a paired-cache label (``sft-answer@24`` -> ``sft-answer_24``).

    Example:
        >>> cache_label("sft-answer@24")
        'sft-answer_24'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


def position_masks(
    rows: Any, positions: Any, before: Sequence[Sequence[int]], starts: Sequence[int]
) -> tuple[Any, Any]:
    """Masks over cached positions: just before a phrase, and the other response positions.

    Args:
        rows: the row of each cached position (``cache.rows``).
        positions: the position of each within its row (``cache.positions``).
        before: per row, the positions just before a self-check phrase.
        starts: per row, the first response position (the last prompt token, which predicts the
            response's first token).

    Returns:
        ``(before_mask, other_mask)``, boolean tensors in cache order; ``other`` is every
        response position that is not in ``before``.

    Example:
        >>> import torch
        >>> rows, pos = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 0, 1])
        >>> b, o = position_masks(rows, pos, [[2], []], [1, 0])
        >>> b.tolist(), o.tolist()
        ([False, False, True, False, False], [False, True, False, True, True])
    """
    import torch

    rows, positions = torch.as_tensor(rows).long(), torch.as_tensor(positions).long()
    start = torch.tensor(list(starts), dtype=torch.long)[rows]
    marks = {(r, p) for r, ps in enumerate(before) for p in ps}
    is_before = torch.tensor([(int(r), int(p)) in marks for r, p in zip(rows, positions, strict=True)])
    return is_before, (positions >= start) & ~is_before


def select_features(mean_before: Sequence[float], mean_other: Sequence[float], k: int) -> list[int]:
    """The ``k`` features whose mean before phrases most exceeds their mean elsewhere (excess > 0).

    Example:
        >>> select_features([0.5, 2.0, 0.1, 1.0], [0.5, 0.5, 0.0, 0.2], 2)
        [1, 3]
    """
    excess = [b - o for b, o in zip(mean_before, mean_other, strict=True)]
    order = sorted(range(len(excess)), key=lambda f: (-excess[f], f))
    return [f for f in order[:k] if excess[f] > 0]


def matched_control(freq: Sequence[float], chosen: Sequence[int], pool: int, seed: int = 0) -> list[int]:
    """One random live feature per chosen one, of matched firing frequency.

    For each chosen feature in turn: the ``pool`` live features (frequency > 0), neither chosen
    nor already drawn, nearest to it in frequency (ties by index); one of them drawn by ``seed``.

    Example:
        >>> matched_control([0.1, 0.5, 0.11, 0.0, 0.52, 0.9], [0, 1], pool=1)
        [2, 4]
    """
    rng = random.Random(seed)
    taken = set(chosen)
    out = []
    for f in chosen:
        live = [g for g, x in enumerate(freq) if x > 0 and g not in taken]
        near = sorted(live, key=lambda g: (abs(freq[g] - freq[f]), g))[:pool]
        if not near:
            break
        pick = near[rng.randrange(len(near))]
        out.append(pick)
        taken.add(pick)
    return out


def _rows(state: State, parent: Any) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Token rows ``prompt + response`` of the parent's answers, pre-phrase positions, response starts."""
    from experiments.real.steer import phrase_positions
    from interp.tasks.render import render_prompt

    rows, before, starts = [], [], []
    for ex, text in zip(state.problems.examples, state.evals["parent"]["responses"], strict=True):
        prompt = render_prompt(parent, ex.prompt)
        row, marks = phrase_positions(parent, prompt, text)
        if len(row) > parent.n_ctx or len(row) < 2:
            continue
        rows.append(row)
        before.append(marks)
        starts.append(len(prompt) - 1)
    return rows, before, starts


def _models(state: State) -> dict[str, str]:
    """Model label -> spec for the cache: parent first (its rows), base unless it is the parent, tunes."""
    out = {"parent": state.parent}
    if state.spec != state.parent:
        out["base"] = state.spec
    return {**out, **state.tunes}


def _cache_dir(state: State, rows: list[list[int]], models: dict[str, str], hook: str) -> Path:
    """``state.out/features/cache-KEY``: KEY hashes the rows, the hook and each model's fingerprint."""
    from interp.fingerprint import hash_token_rows

    prints = {label: state.evals.get(label, {}).get("fingerprint", spec) for label, spec in models.items()}
    blob = json.dumps([hash_token_rows(rows), hook, prints], sort_keys=True)
    return state.out / "features" / f"cache-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _train(cache: Any, hook: str, sizes: FeatureSizes, d_in: int):
    from steering.sae_training import SAETrainConfig, train_sae

    kept = int(SAETrainConfig().exclusion().keep_mask(cache).sum())
    batch = max(1, min(sizes.sae_batch, kept))
    cfg = SAETrainConfig(
        architecture="topk",
        expansion_factor=sizes.expansion_factor,
        k=min(sizes.sae_k, sizes.expansion_factor * d_in),
        lr=sizes.lr,
        training_tokens=batch * sizes.sae_steps,
        batch_size=batch,
        seed=0,
        dead_feature_window=max(1, sizes.sae_steps // 2),
    )
    return train_sae(cache, hook, cfg, progress=False)


def _per_response(acts: Any, rows: Any, mask: Any, keep: Any, feats: list[int]) -> Any:
    """``[response, feature]``: mean activation of ``feats`` at each kept row's masked positions."""
    import torch

    r = rows[mask].long()
    total = torch.zeros(len(keep), len(feats)).index_add_(0, r, acts[mask][:, feats])
    count = torch.zeros(len(keep)).index_add_(0, r, torch.ones(len(r)))
    return (total / count.clamp(min=1)[:, None])[keep]


def _sae_numbers(trained: Any, cache: Any, hook: str) -> dict[str, Any]:
    from steering.sae_eval import evaluate_sae

    ev = evaluate_sae(trained.sae, cache, hook, model=None, n_tokens=cache.n_positions)
    return {
        "d_sae": ev.d_sae,
        "k": int(trained.config.k),
        "steps": len(trained.losses),
        "batch_size": int(trained.config.batch_size),
        "seconds": round(trained.seconds, 2),
        "explained_variance": ev.explained_variance,
        "dead_fraction": ev.dead_features / ev.d_sae,
        "l0": ev.l0,
        "n_positions": ev.n_tokens,
        "positions": ev.positions,
        "final_losses": trained.losses[-1] if trained.losses else {},
    }


def _contexts(sae: Any, cache: Any, hook: str, feats: list[int], tokenizer: Any, k: int) -> dict[str, list]:
    from steering.feature_contexts import top_contexts

    found = top_contexts(sae, cache, hook, feats, k=k, before=12, after=3, tokenizer=tokenizer)
    return {
        str(f): [{"activation": c.activation, "text": c.text} for c in cs] for f, cs in found.contexts.items()
    }


def stage_features(state: State, preconditions: dict[str, Any]) -> dict[str, Any]:
    """Self-check SAE features of the parent, measured across base, parent and every tune.

    Args:
        state: stages 1-3 done (the parent's responses in ``state.evals["parent"]``).
        preconditions: :func:`~experiments.real.tunes.stage_tunes`'s ``tunes`` entry (per tune
            label, ``raised_accuracy``).

    Returns:
        Plain numbers (positions, SAE quality, chosen and control features, per-model means and
        paired differences from the parent) and a ``claim``; the paired cache and the SAE stay
        under ``state.out / "features"``.
    """
    from experiments.real.common import load

    sizes = feature_sizes(state.profile.name)
    parent = load(state.parent)
    hook = f"blocks.{parent.n_layers // 2}.hook_resid_post"
    rows, before, starts = _rows(state, parent)
    n_before = sum(len(b) for b in before)
    out: dict[str, Any] = {
        "hook": hook,
        "n_rows": len(rows),
        "n_responses_with_phrase": sum(bool(b) for b in before),
        "n_before_positions": n_before,
        "parent_self_checks_per_response": state.evals["parent"]["self_checks_per_response"],
        "min_positions": sizes.min_positions,
        "raised_accuracy": {t: bool(preconditions.get(t, {}).get("raised_accuracy")) for t in state.tunes},
    }
    if n_before:
        out.update(_measure(state, parent, hook, (rows, before, starts), sizes))
    out["claim"] = _claim(out)
    return out


def _measure(state: State, parent: Any, hook: str, texts: tuple, sizes: FeatureSizes) -> dict[str, Any]:
    """Paired cache, SAE on the parent, chosen and control features, their means per model."""
    import torch

    from interp.cache import CacheConfig, build_paired_cache
    from steering.features import feature_activations
    from steering.sae_io import save_sae

    rows, before, starts = texts
    models = _models(state)
    root = _cache_dir(state, rows, models, hook)
    labels = {cache_label(m): m for m in models}
    specs = {c: models[m] for c, m in labels.items()}
    pair = build_paired_cache(specs, rows, root, CacheConfig(hooks=hook, batch_size=8), progress=False)
    pc = pair["parent"]
    is_before, is_other = position_masks(pc.rows, pc.positions, before, starts)
    trained = _train(pc, hook, sizes, parent.d_model)
    save_sae(trained.sae, root / "sae_parent")
    acts = feature_activations(trained.sae, pc, hook)
    chosen, control, rows_out = _choose(acts, is_before, is_other, sizes)
    out: dict[str, Any] = {
        "n_other_positions": int(is_other.sum()),
        "cache": {"dir": str(root), "ids": {m: pair[c].id for c, m in labels.items()}},
        "sae": _sae_numbers(trained, pc, hook),
        **rows_out,
    }
    if not chosen:
        return out
    ctx = _contexts(trained.sae, pc, hook, chosen, parent, sizes.contexts)
    for row in out["features"]:
        row["contexts"] = ctx.get(str(row["feature"]), [])
    keep = torch.tensor([bool(b) for b in before])
    per = {}
    for c, m in labels.items():
        a = acts if m == "parent" else feature_activations(trained.sae, pair[c], hook)
        per[m] = [_per_response(a, pc.rows, is_before, keep, fs) for fs in (chosen, control) if fs]
    out.update(_compare(per, chosen, state.profile.resamples))
    return out


def _choose(acts: Any, is_before: Any, is_other: Any, sizes: FeatureSizes) -> tuple[list, list, dict]:
    """Chosen self-check features, their matched controls, and a row of numbers for each."""
    mb, mo = acts[is_before].mean(0), acts[is_other].mean(0)
    chosen = select_features(mb.tolist(), mo.tolist(), sizes.top_features)
    freq = (acts[is_other | is_before] > 0).float().mean(0).tolist()
    freq_before = (acts[is_before] > 0).float().mean(0).tolist()
    control = matched_control(freq_before, chosen, sizes.control_pool, seed=0)
    features = [
        {
            "feature": f,
            "mean_before": float(mb[f]),
            "mean_other": float(mo[f]),
            "firing_rate_before": freq_before[f],
            "firing_rate": freq[f],
        }
        for f in chosen
    ]
    controls = [
        {"feature": g, "firing_rate_before": freq_before[g], "firing_rate": freq[g], "matched_to": f}
        for f, g in zip(chosen, control, strict=False)  # fewer when few other features fire there
    ]
    return chosen, control, {"features": features, "control": controls}


def _compare(per: dict[str, list], chosen: list[int], resamples: int) -> dict[str, Any]:
    """Per model: means before phrases; per other model: paired differences from the parent."""
    parent = per["parent"]
    models, diffs = {}, {}
    for m, parts in per.items():
        ch = parts[0]
        models[m] = {
            "chosen_before": float(ch.mean()),
            "control_before": float(parts[1].mean()) if len(parts) > 1 else None,
            "per_feature_before": dict(zip(map(str, chosen), ch.mean(0).tolist(), strict=True)),
        }
        if m != "parent":
            diffs[m] = _diffs(parts, parent, chosen, resamples)
    return {"n_responses": len(parent[0]), "models": models, "diffs": diffs}


def _diffs(parts: list, parent: list, chosen: list[int], resamples: int) -> dict[str, Any]:
    """Model minus parent per response: chosen features, each feature, control, chosen beyond control."""
    d = (parts[0].mean(1) - parent[0].mean(1)).tolist()
    row: dict[str, Any] = {
        "diff": paired(parts[0].mean(1).tolist(), parent[0].mean(1).tolist(), resamples),
        "per_feature_diff": {
            str(f): paired(parts[0][:, j].tolist(), parent[0][:, j].tolist(), resamples)
            for j, f in enumerate(chosen)
        },
    }
    if len(parts) > 1:
        dc = (parts[1].mean(1) - parent[1].mean(1)).tolist()
        row["control_diff"] = paired(parts[1].mean(1).tolist(), parent[1].mean(1).tolist(), resamples)
        row["diff_minus_control"] = paired(d, dc, resamples)
    return row


def _below(iv: dict[str, Any] | None) -> bool:
    return bool(iv) and iv["excludes_0"] and iv["estimate"] < 0


def _fmt(iv: dict[str, Any] | None) -> str:
    return "-" if not iv else f"{iv['estimate']:+.3f} [{iv['low']:+.3f}, {iv['high']:+.3f}]"


def _claim(r: dict[str, Any]) -> dict[str, Any]:
    """The verdict: preconditions first (phrases, positions, chosen features, an accuracy tune)."""
    if r["n_before_positions"] == 0:
        return verdict(
            "not testable",
            f"the parent's answers hold no self-check phrase ({r['parent_self_checks_per_response']:.2f} "
            "per response), so no position precedes one",
        )
    diffs = r.get("diffs", {})
    numbers = "; ".join(
        f"{t} {_fmt(d['diff'])} (control {_fmt(d.get('control_diff'))}, "
        f"beyond control {_fmt(d.get('diff_minus_control'))})"
        for t, d in diffs.items()
    )
    numbers = f"mean activation of the chosen features before phrases, model - parent: {numbers or '-'}"
    if r["n_before_positions"] < r["min_positions"]:
        return verdict(
            "not testable",
            f"only {r['n_before_positions']} positions precede a self-check phrase "
            f"(< {r['min_positions']}); {numbers}",
        )
    if not r.get("features"):
        return verdict("not testable", "no SAE feature fires more before self-check phrases than elsewhere")
    testable = [t for t, raised in r["raised_accuracy"].items() if raised and t in diffs]
    if not testable:
        return verdict("not testable", f"no tune raised accuracy over the parent (precondition); {numbers}")
    down = [t for t in testable if _below(diffs[t]["diff"]) and _below(diffs[t].get("diff_minus_control"))]
    if down:
        return verdict(
            "reproduced",
            f"accuracy tunes {', '.join(down)} switch the parent's self-check features down, "
            f"more than matched-frequency control features: {numbers}",
            switched_down=down,
        )
    return verdict(
        "not reproduced",
        f"no accuracy tune lowers the self-check features with an interval below 0 and below "
        f"the control's: {numbers}",
        switched_down=[],
    )
