"""Finding (b), model diff (Minder et al. 2025, arXiv 2504.02922): which of the parent's latents
did an accuracy tune switch off? The organism's crosscoder diff (:mod:`experiments.model_diff`)
on the real model.

Texts and activations: stage "features"'s paired cache (:mod:`experiments.real.features`: the
parent, base and every tune over the parent's greedy answers, at its middle-layer residual hook).
Per diffed tune, a BatchTopK crosscoder of the parent and the tune
(:func:`experiments.model_diff.diff_pair`, sized by :func:`experiments.model_diff.crosscoder_config`)
sorts its latents by decoder-norm ratio into parent-only (the organism's "base-only": the parent
is the base of the diff) / shared / tuned-only, checks the model-specific ones by latent scaling,
and names the surviving parent-only latents by their AUROC for the positions just before a
self-check phrase (the positions stage "features" reads) against every other position the
crosscoder reads (prompt included, as in the organism's diff) and the tokens they fire at most.

The control: the same pipeline for the parent against the parent plus Gaussian noise of the
tune's norm in every weight tensor (:func:`experiments.real.knowledge.matched_noise`), cached over
the same rows at the same hook under ``state.out / "diff"``. Random change also moves directions
out of the parent: a tune's parent-only latents mean something only beyond its control's count,
and each count comes from one crosscoder (one seed), so counts alone never make the verdict.
What can: the direction of the tune's best surviving parent-only latent (its decoder in the
parent), read at the pre-phrase positions per response; the verdict is "reproduced" only where a
tune that raised accuracy lost more of it than the parent (paired interval below 0) and than its
noise control did along the same direction (interval below 0), with more parent-only latents than
the control.
"""

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.real.common import fmt_iv, paired, verdict
from experiments.real.profile import require_positive_ints, sizes_of
from experiments.real.tunes import State

log = logging.getLogger(__name__)

DIFF_DIR = "diff"  # under state.out: the noise controls' caches and the crosscoders
CC_DIR = "crosscoders"  # under DIFF_DIR: one crosscoder directory per tune or control
_CACHE_SETTINGS = ("positions", "dtype", "batch_size", "shard_tokens", "max_tokens", "max_seq_len", "seed")


@dataclass(frozen=True)
class DiffSizes:
    """How much stage (b)-diff measures, per profile.

    Args:
        name: the profile's name.
        sae_steps: the step budget :func:`experiments.model_diff.crosscoder_config` trains a
            fifth of (as the organism's diff does with its profile's SAE steps).
        all_tunes: diff every tune; otherwise only the focus tune (or, without one, the strongest
            ``sft-answer`` dose): each crosscoder with its control costs about 30 s on 2 idle cores.
    """

    name: str
    sae_steps: int
    all_tunes: bool

    def __post_init__(self) -> None:
        require_positive_ints(self, ("sae_steps",))
        if not isinstance(self.all_tunes, bool):
            raise ValueError(f"all_tunes={self.all_tunes!r}; expected True or False")


DIFF_SIZES: dict[str, DiffSizes] = {
    "tiny": DiffSizes("tiny", 100, False),
    "quick": DiffSizes("quick", 1000, False),
    "full": DiffSizes("full", 5000, True),
}


def diff_sizes(profile: str) -> DiffSizes:
    """The sizes of ``profile``.

    Raises:
        ValueError: an unknown profile, naming the known ones.

    Example:
        >>> diff_sizes("quick").sae_steps
        1000
    """
    return sizes_of(DIFF_SIZES, profile)


def diff_tunes(tunes: Sequence[str], strongest: str, focus: str, all_tunes: bool) -> tuple[list[str], str]:
    """The tunes to diff against the parent, in ``tunes``'s order, and why.

    Example:
        >>> tunes = ["sft-answer@8", "sft-answer@48", "sft-self@16"]
        >>> diff_tunes(tunes, "sft-answer@48", "sft-self@16", False)[0]
        ['sft-self@16']
        >>> diff_tunes(tunes, "sft-answer@48", "", False)[0]
        ['sft-answer@48']
        >>> diff_tunes(tunes, "sft-answer@48", "sft-self@16", True)[0]
        ['sft-answer@8', 'sft-answer@48', 'sft-self@16']
    """
    if all_tunes:
        return list(tunes), "every tune"
    one = focus if focus in tunes else strongest
    why = (
        f"the focus tune, the one findings (b)-(d) study ({one}; the strongest sft-answer dose when "
        "there is no focus): a crosscoder with its noise control, and the noise copy's cache, cost "
        "about 30 s per tune on 2 idle cores (minutes under load), which the quick profile's "
        "55-minute budget does not leave for every tune; the full profile diffs them all"
    )
    return [t for t in tunes if t == one], why


def _noise_cache(state: State, tune: str, parent_cache: Any, tune_cache: Any, label: str, hook: str):
    """The parent plus matched noise (:func:`~experiments.real.knowledge.matched_noise`) over the
    parent cache's rows at ``hook``; kept under ``state.out/diff/noise/LABEL-KEY`` for a rerun (KEY
    hashes both caches' IDs, so other rows or other weights get another directory)."""
    from experiments.real.knowledge import matched_noise
    from interp.cache import CacheConfig
    from interp.cache.build import build_cache
    from probes.damage.noise import NOISE_SEED

    key = hashlib.sha256(f"{parent_cache.id} {tune_cache.id} {NOISE_SEED}".encode()).hexdigest()[:16]
    root = state.out / DIFF_DIR / "noise" / f"{label}-{key}"
    noisy = matched_noise(state, tune, seed=NOISE_SEED)
    # the parent cache's own settings, so that the shards line up position by position
    recorded = parent_cache.manifest["config"]
    config = CacheConfig(hooks=hook, **{k: recorded[k] for k in _CACHE_SETTINGS if k in recorded})
    return build_cache(noisy, f"cache:{parent_cache.root}", root, config, progress=False)


def _rows_of(state: State, parent: Any, cache: Any) -> tuple[list, list]:
    """The pre-phrase positions and response starts per row, checked against the cached rows."""
    from experiments.real.features import _rows
    from interp.errors import CacheError

    rows, before, starts = _rows(state, parent)
    if list(cache.iter_row_tokens()) != rows:
        raise CacheError(
            f"the cache in {str(cache.root)!r} is not over the parent's answers of this state; "
            "rerun stage features"
        )
    return before, starts


def _at(source: Any, label: str, hook: str, idx: Any) -> Any:
    """``source[label]``'s activations at positions ``idx``, ``[len(idx), d_model]``."""
    from interp.cache import PairedCache

    acts = source[label][hook] if isinstance(source, PairedCache) else source[label]
    return acts[idx].float().reshape(len(idx), -1)


def direction_check(
    cc: Any, latent: int, reads: dict[str, tuple[Any, str]], hook: str, at: Any, rows: Any, resamples: int
) -> dict[str, Any]:
    """A latent's decoder direction in the parent (unit length), read in each model at the
    positions ``at`` and averaged per response (``rows``: each position's response); paired over
    responses: tune - parent, noise - parent, tune - noise.

    Args:
        cc: the crosscoder (the parent is its first model).
        latent: the latent.
        reads: ``{"parent" | "tune" | "noise": (source, label)}``: where each model's
            activations are (a paired cache or ``{label: [positions, d_model]}``).
        hook: the hook (for a paired cache).
        at: ``[positions]`` bool, the positions read.
        rows: ``[positions]`` each position's response.
        resamples: bootstrap resamples.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> cc = SimpleNamespace(W_dec=torch.tensor([[[2.0, 0.0]]]))
        >>> x = {"p": torch.tensor([[1.0, 5.0], [3.0, 5.0]]), "t": torch.zeros(2, 2)}
        >>> reads = {"parent": (x, "p"), "tune": (x, "t"), "noise": (x, "p")}
        >>> d = direction_check(cc, 0, reads, "h", torch.tensor([True, True]), torch.tensor([0, 0]), 100)
        >>> d["mean"], d["tune_minus_parent"]["estimate"]
        ({'parent': 2.0, 'tune': 0.0, 'noise': 2.0}, -2.0)
    """
    import torch

    d = cc.W_dec[0, latent].detach().float()
    d = d / d.norm().clamp(min=1e-12)
    idx = at.nonzero().squeeze(1)
    r = rows.long()[idx]
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    count = torch.zeros(n_rows).index_add_(0, r, torch.ones(len(r)))
    present = count > 0
    per = {}
    for name, (source, label) in reads.items():
        proj = _at(source, label, hook, idx) @ d
        per[name] = (torch.zeros(n_rows).index_add_(0, r, proj) / count.clamp(min=1))[present].tolist()
    return {
        "latent": latent,
        "n_responses": len(per["parent"]),
        "mean": {k: sum(v) / len(v) if v else None for k, v in per.items()},
        "tune_minus_parent": paired(per["tune"], per["parent"], resamples),
        "noise_minus_parent": paired(per["noise"], per["parent"], resamples),
        "tune_minus_noise": paired(per["tune"], per["noise"], resamples),
    }


def diff_with_control(
    tune: tuple[Any, str],
    noise: tuple[Any, str],
    config: Any,
    hook: str,
    positions: Any,
    decode: Any,
    rows: Any,
    at: Any,
    resamples: int,
) -> tuple[Any, Any, dict[str, Any]]:
    """:func:`~experiments.model_diff.diff_pair` of the parent against a tune and against its
    noise control, and the :func:`direction_check` of the tune's top surviving parent-only latent.

    Args:
        tune: ``(source, label)``: a paired cache or ``{"parent": ..., label: ...}`` in memory.
        noise: the same for the noise control.
        config: the crosscoder's settings.
        hook: the hook.
        positions: the kept positions' pre-phrase labels and tokens
            (:class:`~experiments.model_diff.MarkedPositions`).
        decode: token id to text.
        rows: ``[positions]`` each cached position's response (all positions, cache order).
        at: ``[positions]`` bool, the pre-phrase positions (all positions, cache order).
        resamples: bootstrap resamples.

    Returns:
        ``(crosscoder, control crosscoder, result)``: ``diff_pair``'s result for the tune (its
        "base" is the parent), with ``control`` (the same for the noise) and ``direction``
        (``None`` when no parent-only latent survives or no position is read).
    """
    from experiments.model_diff import diff_pair

    (source, label), (noise_source, noise_label) = tune, noise
    cc, res = diff_pair(source, ("parent", label), config, hook, positions, decode)
    cc_noise, ctrl = diff_pair(noise_source, ("parent", noise_label), config, hook, positions, decode)
    res["control"] = ctrl
    named = res["base_only_named"]
    res["direction"] = None
    if named and bool(at.any()):
        reads = {"parent": (source, "parent"), "tune": (source, label), "noise": (noise_source, noise_label)}
        res["direction"] = direction_check(cc, named[0]["latent"], reads, hook, at, rows, resamples)
    return cc, cc_noise, res


def stage_diff(state: State, features_result: dict[str, Any]) -> dict[str, Any]:
    """Crosscoder diffs of the parent against the chosen tunes and their matched-noise controls.

    Args:
        state: stages 1-3 done (the parent's answers in ``state.evals["parent"]``).
        features_result: :func:`~experiments.real.features.stage_features`'s result (its paired
            cache, hook, pre-phrase position count and ``raised_accuracy``).

    Returns:
        Plain numbers (per tune :func:`~experiments.model_diff.diff_pair`'s result, where "base"
        is the parent, with its ``control`` and the ``direction`` check) and a ``claim``; the
        crosscoders are saved under ``state.out/diff/crosscoders/LABEL`` (safetensors + JSON, both
        models' fingerprints), the controls' caches under ``state.out/diff/noise``.
    """
    sizes = diff_sizes(state.profile.name)
    chosen, why = diff_tunes(list(state.tunes), state.strongest, state.focus, sizes.all_tunes)
    out: dict[str, Any] = {
        "hook": features_result.get("hook"),
        "n_before_positions": features_result.get("n_before_positions", 0),
        "min_positions": features_result.get("min_positions", 1),
        "raised_accuracy": dict(features_result.get("raised_accuracy", {})),
        "tunes_why": why,
        "tunes": {},
    }
    if features_result.get("cache"):
        out.update(_measure(state, features_result, chosen, sizes))
    out["claim"] = _claim(out)
    return out


def _measure(state: State, features: dict[str, Any], chosen: list[str], sizes: DiffSizes) -> dict[str, Any]:
    from experiments.model_diff import CONTROL_PREFIX, MarkedPositions, crosscoder_config
    from experiments.real.common import load
    from experiments.real.features import cache_label, position_masks
    from interp.cache import PairedCache, open_paired_cache

    hook = features["hook"]
    pair = open_paired_cache(features["cache"]["dir"])
    pc = pair["parent"]
    parent = load(state.parent)
    before, starts = _rows_of(state, parent, pc)
    is_before, _ = position_masks(pc.rows, pc.positions, before, starts)
    d_model = int(pc[hook].shape[-1])
    # the positions it trains on (attention sinks left out) bound its batch: sized in two steps
    keep = crosscoder_config(sizes.sae_steps, d_model, pc.n_positions).exclusion().keep_mask(pc)
    config = crosscoder_config(sizes.sae_steps, d_model, int(keep.sum()))
    positions = MarkedPositions.from_cache(pc, is_before, keep)
    cc_root = state.out / DIFF_DIR / CC_DIR
    missing = [t for t in chosen if cache_label(t) not in pair.labels]
    out: dict[str, Any] = {
        "config": asdict(config),
        "n_positions": int(keep.sum()),
        "missing": missing,
        "tunes": {},
    }

    def decode(t: int) -> str:
        return parent.decode([t])

    for tune in (t for t in chosen if t not in missing):
        start = time.perf_counter()
        label = cache_label(tune)
        noise_label = CONTROL_PREFIX + label
        noisy = _noise_cache(state, tune, pc, pair[label], noise_label, hook)
        cc, cc_noise, res = diff_with_control(
            (PairedCache(pair.root, {"parent": pc, label: pair[label]}), label),
            (PairedCache(noisy.root.parent, {"parent": pc, noise_label: noisy}), noise_label),
            config,
            hook,
            positions,
            decode,
            pc.rows,
            is_before,
            state.profile.resamples,
        )
        res["dir"] = _save(cc, cc_root / label, state.out)
        res["control"]["dir"] = _save(cc_noise, cc_root / noise_label, state.out)
        res["control"]["cache_id"] = noisy.id
        res["seconds_total"] = round(time.perf_counter() - start, 2)  # noise cache and both crosscoders
        out["tunes"][tune] = res
        log.info(
            "real diff %s: %d parent-only latents survive latent scaling (noise control: %d), %.1f s",
            tune,
            res["base_only_surviving"],
            res["control"]["base_only_surviving"],
            res["seconds_total"],
        )
    return out


def _save(cc: Any, path: Path, root: Path) -> str:
    cc.save(path)
    return str(path.relative_to(root))


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _below(iv: dict[str, Any] | None) -> bool:
    return bool(iv) and iv["excludes_0"] and iv["estimate"] < 0


def _row(tune: str, r: dict[str, Any]) -> str:
    best = r.get("best_marker_latent")
    text = (
        f"{tune} {r['base_only_surviving']} parent-only latents surviving latent scaling vs "
        f"{r['control']['base_only_surviving']} for its noise control"
    )
    if best:
        text += (
            f" (best pre-phrase latent {best['kind']}, ratio {best['ratio']:.2f}, AUROC {_f(best['auroc'])})"
        )
    d = r.get("direction")
    if d:
        text += (
            f", its top parent-only latent's direction before phrases: tune - parent "
            f"{fmt_iv(d['tune_minus_parent'])}, tune - noise {fmt_iv(d['tune_minus_noise'])}"
        )
    return text


def _claim(r: dict[str, Any]) -> dict[str, Any]:
    """A description beside finding (b): parent-only latents count only beyond the noise control,
    and the verdict needs the direction check's intervals, never the counts alone."""
    tunes = r.get("tunes", {})
    if not r["n_before_positions"]:
        return verdict("not testable", "the parent's answers hold no self-check phrase: nothing to diff")
    if not tunes:
        return verdict("not testable", "no tune was diffed (none in stage features's cache)")
    numbers = "; ".join(_row(t, x) for t, x in tunes.items())
    note = "counts come from one crosscoder each and mean something only beyond the noise control's count"
    if r["n_before_positions"] < r["min_positions"]:
        return verdict(
            "not testable",
            f"only {r['n_before_positions']} positions precede a self-check phrase (< {r['min_positions']}); "
            f"{numbers}; {note}",
        )
    beyond = [t for t, x in tunes.items() if x["base_only_surviving"] > x["control"]["base_only_surviving"]]
    testable = [t for t in tunes if r["raised_accuracy"].get(t)]
    if not testable:
        return verdict(
            "not testable",
            f"no diffed tune raised accuracy over the parent (precondition); {numbers}; {note}",
            beyond_control=beyond,
        )
    off = [
        t
        for t in testable
        if t in beyond
        and (d := tunes[t].get("direction"))
        and _below(d["tune_minus_parent"])
        and _below(d["tune_minus_noise"])
    ]
    if off:
        return verdict(
            "reproduced",
            f"accuracy tunes {', '.join(off)} have more parent-only latents than their noise controls, "
            f"and lose the top one's direction before self-check phrases beyond the noise: {numbers}; {note}",
            beyond_control=beyond,
            switched_off=off,
        )
    return verdict(
        "not reproduced",
        f"no accuracy tune has more surviving parent-only latents than its noise control together with "
        f"a loss of the top one's direction before phrases below 0 and below the noise's: {numbers}; {note}",
        beyond_control=beyond,
        switched_off=[],
    )
