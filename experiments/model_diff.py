"""Model diffing for finding 4: which of base's latents did each fine-tune switch off?

For each fine-tune of ``base`` that finding 4 reads, a small BatchTopK crosscoder
(:mod:`steering.crosscoder`) is trained over a paired cache of ``base`` and the tune at e4's
marker hook, over ``base``'s sampled responses (the rows e4's SAE reads). Its latents are sorted
by decoder-norm ratio into base-only / shared / tuned-only (:func:`steering.crosscoder.classify_latents`)
and latent scaling (:func:`steering.crosscoder.latent_scaling`, Minder et al. 2025) flags the
model-specific ones that may be shrinkage artefacts. The base-only latents that survive it are
the ones training switched off; they are named by their AUROC for the positions just before
``WAIT`` (:func:`steering.features.marker_labels`) and the tokens they fire at most.

The control: the same pipeline with the tune replaced by ``base`` plus Gaussian noise of the
tune's relative weight change (:func:`experiments.controls.noise_like`). Random change also
moves directions out of ``base``; a tune's base-only latents mean something only beyond the
control's count. Each count comes from one crosscoder (one seed): it is a description beside
finding 4's verdict, not a test.
"""

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from interp.cache import Cache, PairedCache
from interp.errors import CrosscoderError
from steering.crosscoder import (
    Crosscoder,
    CrosscoderConfig,
    classify_latents,
    latent_scaling,
    train_crosscoder,
)
from steering.crosscoder_data import aligned_batches
from steering.features import auroc

log = logging.getLogger(__name__)

CC_DIR = "crosscoders"  # under caches/e4_markers, beside e4's SAE: one directory per tune or control
EXTRA_CACHES = "e4_model_diff"  # under caches: base paired with the models e4's own pair lacks
CONTROL_PREFIX = "noise-"  # label of a tune's same-size noise control
TOP_LATENTS = 3  # base-only latents named per tune
TOP_POSITIONS = 50  # a latent's strongest positions whose tokens are counted
TOP_TOKENS = 3  # tokens named per latent


@dataclass(frozen=True)
class MarkedPositions:
    """The positions a crosscoder's latents are read against, in the order they are encoded.

    Args:
        before_marker: ``[n]`` bool, True at the positions just before the marker word.
        tokens: ``[n]`` the token at each position.
        next_tokens: ``[n]`` the token after it (-1 at the end of a row).

    Raises:
        CrosscoderError: the three differ in length.
    """

    # plain Tensor fields: the lengths are checked below, with a message naming them
    before_marker: Tensor
    tokens: Tensor
    next_tokens: Tensor

    def __post_init__(self) -> None:
        n = {len(self.before_marker), len(self.tokens), len(self.next_tokens)}
        if len(n) != 1:
            raise CrosscoderError(
                f"before_marker, tokens and next_tokens have lengths {len(self.before_marker)}, "
                f"{len(self.tokens)} and {len(self.next_tokens)}; expected one length"
            )

    @classmethod
    def from_cache(cls, cache: Cache, before_marker: Tensor, keep: Tensor | None) -> "MarkedPositions":
        """``cache``'s positions where ``keep`` is true (all when ``None``), with ``before_marker``
        given over all its positions."""
        rows = list(cache.iter_row_tokens())
        row, pos = cache.rows.long(), cache.positions.long()
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        flat = torch.tensor([t for r in rows for t in r] + [-1], dtype=torch.long)
        starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
        has_next = pos + 1 < lengths[row]
        nxt = torch.where(has_next, flat[torch.where(has_next, starts[row] + pos + 1, len(flat) - 1)], -1)
        keep = torch.ones(len(pos), dtype=torch.bool) if keep is None else keep
        return cls(before_marker.bool()[keep], cache.tokens.long()[keep], nxt[keep])


def crosscoder_config(sae_steps: int, d_model: int, n_positions: int) -> CrosscoderConfig:
    """The small crosscoder of each diff: ``2 * d_model`` latents (at least 64), k 8, a fifth of
    the profile's SAE steps (at least 20), batches of up to 256 positions.

    Example:
        >>> c = crosscoder_config(1500, 128, 31109)
        >>> c.n_latents, c.k, c.steps, c.batch_size
        (256, 8, 300, 256)
    """
    n_latents = max(64, 2 * d_model)
    steps = max(20, sae_steps // 5)
    return CrosscoderConfig(
        n_latents=n_latents,
        k=8,
        lr=5e-3,
        steps=steps,
        batch_size=max(1, min(256, n_positions)),
        seed=0,
        dead_steps=max(1, min(200, steps // 4)),
    )


def latent_activations(
    cc: Crosscoder, source: "PairedCache | Mapping[str, Tensor]", keep: Tensor | None, batch_size: int = 4096
) -> Tensor:
    """Every latent's activation (inference threshold) at every kept position: ``[n, n_latents]``."""
    parts = []
    with torch.no_grad():
        for x in aligned_batches(
            source, cc.hook, cc.labels, batch_size, 0, keep, shuffle=False, drop_last=False
        ):
            parts.append(cc.encode(x))
    return torch.cat(parts) if parts else torch.zeros(0, cc.n_latents)


def top_tokens(
    acts: Tensor, latent: int, positions: MarkedPositions, decode: Callable[[int], str]
) -> dict[str, list]:
    """The commonest tokens (and next tokens) over a latent's ``TOP_POSITIONS`` strongest positions."""
    col = acts[:, latent]
    n = min(TOP_POSITIONS, int((col > 0).sum()))
    idx = col.topk(n).indices if n else torch.zeros(0, dtype=torch.long)

    def common(ids: Tensor) -> list:
        return [
            [decode(t) if t >= 0 else "<end>", c] for t, c in Counter(ids.tolist()).most_common(TOP_TOKENS)
        ]

    return {"tokens": common(positions.tokens[idx]), "next_tokens": common(positions.next_tokens[idx])}


def diff_pair(
    source: "PairedCache | Mapping[str, Tensor]",
    labels: Sequence[str],
    config: CrosscoderConfig,
    hook: str,
    positions: MarkedPositions,
    decode: Callable[[int], str],
) -> tuple[Crosscoder, dict[str, Any]]:
    """Train a crosscoder of ``labels`` (base first), classify its latents, check them by latent
    scaling and name the base-only survivors.

    Args:
        source: a paired cache or ``{label: [positions, d_model]}``.
        labels: ``(base, tuned)``.
        config: the crosscoder's settings (its exclusion picks a paired cache's positions).
        hook: the hook read.
        positions: the read positions' marker labels and tokens (the kept positions, in order).
        decode: token id to text.

    Returns:
        The crosscoder, and ``counts`` per kind, ``base_only_surviving`` /
        ``tuned_only_surviving`` (not flagged by latent scaling), ``base_only_named`` (the
        ``TOP_LATENTS`` surviving base-only latents of highest pre-marker AUROC, with their
        decoder-norm ratio, latent-scaling ratios and top tokens), ``best_marker_latent`` (max
        AUROC over all latents: its kind and whether it survives), ``most_base_leaning`` (the
        ``TOP_LATENTS`` live latents of lowest decoder-norm ratio, whatever their kind) and
        training statistics.

    Raises:
        CrosscoderError: what :func:`~steering.crosscoder.train_crosscoder` refuses, or
            ``positions`` of another length than the positions encoded.
    """
    start = time.perf_counter()
    base, tuned = labels
    cc = train_crosscoder(source, config, hook=hook, labels=[base, tuned], progress=False)
    kinds = classify_latents(cc, base, tuned)
    specific = kinds.indices("base-only") + kinds.indices("tuned-only")
    scaling = latent_scaling(cc, source, specific) if specific else None
    flagged = set(scaling.flagged()) if scaling else set()
    nu = {}
    if scaling:
        for j, e, r in zip(
            scaling.latents, scaling.nu_error.tolist(), scaling.nu_reconstruction.tolist(), strict=True
        ):
            nu[j] = (e, r)
    surviving = {k: [j for j in kinds.indices(k) if j not in flagged] for k in ("base-only", "tuned-only")}
    keep = None
    if isinstance(source, PairedCache) and config.exclusion().excludes_anything:
        keep = config.exclusion().keep_mask(source[base])
    acts = latent_activations(cc, source, keep)
    if len(acts) != len(positions.before_marker):
        raise CrosscoderError(f"{len(acts)} encoded positions but {len(positions.before_marker)} marked ones")
    n_pos = int(positions.before_marker.sum())
    scores = auroc(acts, positions.before_marker) if 0 < n_pos < len(acts) else None

    def describe(j: int) -> dict[str, Any]:
        e, r = nu.get(j, (None, None))
        return {
            "latent": j,
            "kind": kinds.kinds[j],
            "auroc": float(scores[j]) if scores is not None else None,
            "ratio": float(kinds.ratio[j]),
            "nu_error": e,
            "nu_reconstruction": r,
            "survives_scaling": j not in flagged,
            "firing_rate": float((acts[:, j] > 0).float().mean()) if len(acts) else 0.0,
            **top_tokens(acts, j, positions, decode),
        }

    ranked = surviving["base-only"]
    if scores is not None:
        ranked = sorted(ranked, key=lambda j: -float(scores[j]))
    best = describe(int(scores.argmax())) if scores is not None else None
    leaning = sorted(
        (j for j, k in enumerate(kinds.kinds) if k != "dead"), key=lambda j: float(kinds.ratio[j])
    )
    out = {
        "labels": [base, tuned],
        "counts": kinds.counts(),
        "shared_mean_cosine": kinds.shared_cosine(),
        "base_only_surviving": len(surviving["base-only"]),
        "tuned_only_surviving": len(surviving["tuned-only"]),
        "base_only_named": [describe(j) for j in ranked[:TOP_LATENTS]],
        # what training turned down most, base-only or not: the live latents of lowest ratio
        "most_base_leaning": [describe(j) for j in leaning[:TOP_LATENTS]],
        "best_marker_latent": best,
        "n_positions": len(acts),
        "n_before_marker": n_pos,
        "fraction_variance_explained": cc.training_stats["fraction_variance_explained"],
        "mean_l0": cc.training_stats["mean_l0"],
        "seconds": time.perf_counter() - start,
    }
    return cc, out


def tunes_of_base(ctx, names: Sequence[str]) -> list[str]:
    """Those of ``names`` that are fine-tunes of ``base`` (their card's parent), dose checkpoints left out."""
    return [n for n in names if "@" not in n and n != "base" and ctx.card(n).get("parent") == "base"]


def model_diff(
    ctx, paired: PairedCache, hook: str, tunes: Sequence[str], marker: str = "WAIT"
) -> dict[str, Any]:
    """Crosscoder diffs of ``base`` against each of ``tunes`` and against each one's noise control.

    Tunes that ``paired`` (e4's pair over base's sampled responses) lacks, and the noise controls,
    are cached here over the same rows (``caches/e4_model_diff``). Each crosscoder is saved under
    ``caches/e4_markers/crosscoders/<label>`` (safetensors and JSON, both models' fingerprints).

    Returns:
        ``{"hook", "config", "tunes": {tune: diff_pair result + "control" + "dir"}}``.
    """
    from experiments.controls import noise_like
    from interp.cache import CacheConfig, build_paired_cache
    from steering.features import marker_labels

    _, tok = ctx.world
    base_cache = paired["base"]
    tunes = tunes_of_base(ctx, tunes)
    controls = {}
    extra = {t: ctx.model(t) for t in tunes if t not in paired.labels}
    for t in tunes:
        change, noisy = noise_like(ctx, t)
        controls[t] = change
        extra[CONTROL_PREFIX + t] = noisy
    more = None
    if extra:
        more = build_paired_cache(
            {"base": ctx.model("base"), **extra},
            f"cache:{base_cache.root}",
            ctx.out / "caches" / EXTRA_CACHES,
            CacheConfig(hooks=hook),
            progress=False,
        )
        for label in more.labels:
            ctx.cite_cache(
                f"model_diff_{label}",
                more[label],
                f"{label} over base's sampled responses at {hook}: crosscoder",
            )
    config = crosscoder_config(ctx.budget.sae_steps, int(base_cache[hook].shape[-1]), base_cache.n_positions)
    keep = config.exclusion().keep_mask(base_cache) if config.exclusion().excludes_anything else None
    positions = MarkedPositions.from_cache(base_cache, marker_labels(base_cache, tok, marker, offset=1), keep)

    def decode(t: int) -> str:
        return tok.decode([t])

    def pair_of(label: str) -> PairedCache:
        src = paired if label in paired.labels else more
        return PairedCache(src.root, {"base": src["base"], label: src[label]})

    out: dict[str, Any] = {"hook": hook, "marker": marker, "config": asdict(config), "tunes": {}}
    cc_root = ctx.out / "caches" / "e4_markers" / CC_DIR
    for t in tunes:
        cc, res = diff_pair(pair_of(t), ("base", t), config, hook, positions, decode)
        res["dir"] = str((cc_root / t).relative_to(ctx.out))
        cc.save(cc_root / t)
        label = CONTROL_PREFIX + t
        cc_noise, ctrl = diff_pair(pair_of(label), ("base", label), config, hook, positions, decode)
        ctrl["dir"] = str((cc_root / label).relative_to(ctx.out))
        ctrl["relative_change"] = controls[t]
        cc_noise.save(cc_root / label)
        res["control"] = ctrl
        out["tunes"][t] = res
        log.info(
            "model diff %s: %d base-only latents survive latent scaling (noise control: %d)",
            t,
            res["base_only_surviving"],
            ctrl["base_only_surviving"],
        )
    return out


def summary(diff: Mapping[str, Any] | None, marker_free: str = "sft-clean") -> str | None:
    """One sentence for finding 4's claim text: per tune the base-only latents that survive latent
    scaling beside its noise control's, and whether the best pre-marker latent of the marker-free
    tune is base-only (with its decoder-norm ratio beside that of the control's best one).

    Example:
        >>> best = {"latent": 7, "kind": "base-only", "ratio": 0.02, "auroc": 0.98, "survives_scaling": True}
        >>> t = {"base_only_surviving": 5, "counts": {"base-only": 6}, "best_marker_latent": best,
        ...      "control": {"base_only_surviving": 0, "counts": {"base-only": 1}}}
        >>> summary({"tunes": {"sft-clean": t}, "marker": "WAIT"}).split("): ")[1]
        'sft-clean 5 vs 0; best pre-WAIT latent in sft-clean: base-only (decoder-norm ratio 0.02; AUROC 0.98)'
    """
    if not diff or not diff.get("tunes"):
        return None
    tunes = diff["tunes"]
    parts = [
        f"{t} {r['base_only_surviving']} vs {r['control']['base_only_surviving']}" for t, r in tunes.items()
    ]
    text = (
        "crosscoder diffs (base-only latents surviving latent scaling, tune vs same-size noise): "
        + ", ".join(parts)
    )
    free = tunes.get(marker_free)
    best = (free or {}).get("best_marker_latent")
    if best:
        kind = (
            best["kind"]
            if best["survives_scaling"] or best["kind"] != "base-only"
            else "base-only (flagged by latent scaling)"
        )
        ctrl = (free.get("control") or {}).get("best_marker_latent")
        beside = f"; the noise control's: {ctrl['ratio']:.2f}" if ctrl else ""
        text += (
            f"; best pre-{diff.get('marker', 'WAIT')} latent in {marker_free}: {kind} "
            f"(decoder-norm ratio {best['ratio']:.2f}{beside}; AUROC {best['auroc']:.2f})"
        )
    return text
