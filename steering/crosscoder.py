"""BatchTopK crosscoders for model diffing: one sparse dictionary read from two or more models.

A crosscoder (Lindsey et al. 2024) reads the activations of several models at one hook over the
same token positions (a :class:`~interp.cache.PairedCache`) through one latent code, each model
with its own encoder and decoder. Sparsity is BatchTopK (Bussmann et al. 2024); a threshold,
estimated during training as the running mean of the smallest kept value, replaces the batch
rule at inference (Minder et al. 2025, arXiv 2504.02922, who show that this avoids the L1
artefacts that label shared concepts as model-specific). The loss (:func:`train_crosscoder`) is
the sum over models of the squared reconstruction error, plus a small auxiliary loss that lets
dead latents reconstruct the remaining error (Gao et al. 2024).

This module trains one and gathers the crosscoder API under one name. The other pieces live in
:mod:`steering.crosscoder_model` (:class:`Crosscoder`, :func:`batch_topk`,
:class:`CrosscoderConfig`), :mod:`steering.crosscoder_data` (the aligned activations it reads),
:mod:`steering.crosscoder_io` (the directory on disk) and :mod:`steering.crosscoder_analysis`
(:func:`classify_latents` by decoder-norm ratio, :func:`latent_scaling` against shrinkage).

Why it is written here and not taken from a library: the maintained dictionary-learning package
on PyPI (``dictionary-learning`` 0.1.0, saprmarks, checked with ``pip download --no-deps``) has
no crosscoder at all (none in its 0.1.0 wheel; Minder et al.'s code imports one from their own
fork), and it requires ``nnsight>=0.3,<0.4``, ``umap-learn``, ``llvmlite``, ``wandb``,
``circuitsvis``, ``plotly`` and ``pandas`` on top of this stack; sae-lens 6 has none either. What
is needed is a few hundred lines of plain torch, tested against hand-computed cases.
"""

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from interp.cache import PairedCache
from interp.errors import CrosscoderError
from steering.crosscoder_analysis import (
    BOUNDS,
    KINDS,
    LatentKinds,
    LatentScaling,
    classify_latents,
    fit_beta,
    latent_scaling,
)
from steering.crosscoder_data import aligned_batches, describe_source
from steering.crosscoder_io import CFG_FILE, FORMAT, WEIGHTS_FILE
from steering.crosscoder_model import Crosscoder, CrosscoderConfig, batch_topk

__all__ = [
    "BOUNDS",
    "CFG_FILE",
    "FORMAT",
    "KINDS",
    "WEIGHTS_FILE",
    "Crosscoder",
    "CrosscoderConfig",
    "CrosscoderError",
    "LatentKinds",
    "LatentScaling",
    "batch_topk",
    "classify_latents",
    "fit_beta",
    "latent_scaling",
    "train_crosscoder",
]


def train_crosscoder(
    source: "PairedCache | Mapping[str, Tensor]",
    config: CrosscoderConfig,
    hook: str | None = None,
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> Crosscoder:
    """Train a BatchTopK crosscoder on aligned activations of several models at one hook.

    Args:
        source: a paired cache (read one shard at a time, attention sinks left out as the config
            says), or ``{label: activations [positions, d_model]}`` in memory.
        config: the settings.
        hook: the hook to read (required for a paired cache; recorded either way).
        labels: which models, in order (default: all of the source's); the first is the base.
        progress: show a progress bar.

    Returns:
        The trained :class:`Crosscoder`, with its inference threshold, provenance (both models'
        fingerprints and cache IDs) and training statistics.

    Raises:
        CrosscoderError: fewer than two models, a model or hook the source lacks, caches over other
            rows, activations of different widths, or fewer positions than one batch.

    Example:
        >>> acts = {"base": torch.randn(64, 4), "tuned": torch.randn(64, 4)}
        >>> cc = train_crosscoder(acts, CrosscoderConfig(n_latents=8, k=2, steps=5, batch_size=16),
        ...                       hook="blocks.0.hook_resid_post", progress=False)
        >>> cc.labels, cc.W_dec.shape
        (('base', 'tuned'), torch.Size([2, 8, 4]))
    """
    from tqdm.auto import tqdm

    labels, d_model, models = describe_source(source, hook, labels)
    exclusion = config.exclusion()
    keep = None
    n_positions = (
        len(source[labels[0]]) if not isinstance(source, PairedCache) else source[labels[0]].n_positions
    )
    if isinstance(source, PairedCache) and exclusion.excludes_anything:
        keep = exclusion.keep_mask(source[labels[0]])
        n_positions = int(keep.sum())
    if n_positions < config.batch_size:
        raise CrosscoderError(
            f"the source holds {n_positions} usable positions, fewer than one batch of "
            f"batch_size={config.batch_size}; lower batch_size"
        )

    def forever() -> Iterator[Tensor]:
        epoch = 0
        while True:
            yield from aligned_batches(source, hook, labels, config.batch_size, config.seed + epoch, keep)
            epoch += 1

    batches = forever()
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seeds the init without disturbing the caller's RNG
        torch.manual_seed(config.seed)
        cc = _initialised(len(labels), d_model, config, next(batches))
        stats = _fit(
            cc, config, batches, tqdm(total=config.steps, desc=f"crosscoder {hook}", disable=not progress)
        )
    cc.hook, cc.labels, cc.models, cc.config = hook, tuple(labels), models, config
    stats["fraction_variance_explained"] = dict(
        zip(labels, stats["fraction_variance_explained"], strict=True)
    )
    cc.training_stats = {
        **stats,
        "seconds": time.perf_counter() - start,
        "n_positions": n_positions,
        "excluded": exclusion.to_dict() if isinstance(source, PairedCache) else None,
    }
    return cc


def _initialised(n_models: int, d_model: int, config: CrosscoderConfig, first: Tensor) -> Crosscoder:
    cc = Crosscoder(n_models, d_model, config.n_latents, config.k)
    with torch.no_grad():
        dec = torch.randn(n_models, config.n_latents, d_model)
        cc.W_dec.copy_(dec / dec.norm(dim=-1, keepdim=True) * config.decoder_init_norm)
        cc.W_enc.copy_(cc.W_dec.transpose(1, 2))
        cc.b_dec.copy_(first.mean(0))
    return cc


def _fit(cc: Crosscoder, config: CrosscoderConfig, batches: Iterator[Tensor], bar) -> dict[str, Any]:
    opt = torch.optim.Adam(cc.parameters(), lr=config.lr)
    idle = torch.zeros(config.n_latents, dtype=torch.long)  # steps since each latent last fired
    threshold_from = int(config.threshold_start * config.steps)
    window = max(1, config.steps // 10)  # the last tenth of training, for the reported numbers
    sq_err = torch.zeros(cc.n_models, dtype=torch.float64)
    sq_dev = torch.zeros(cc.n_models, dtype=torch.float64)
    threshold, aux_total, l0_total = None, 0.0, 0.0
    with bar:
        for step in range(config.steps):
            x = next(batches)
            f = torch.relu(cc.pre_acts(x))
            scores = f * cc.decoder_norms().sum(0)
            kept = batch_topk(scores.detach(), config.k)
            recon = cc.decode(f * kept)
            err = x - recon
            loss = err.pow(2).sum(-1).mean(0).sum()
            fired = kept.any(0)
            idle = torch.where(fired, 0, idle + 1)
            dead = idle >= config.dead_steps
            aux = _aux_loss(cc, f, err.detach(), dead, config.aux_k_for()) if config.aux_coefficient else None
            if aux is not None:
                loss = loss + config.aux_coefficient * aux
            if step >= threshold_from:
                cc.fire_count += kept.sum(0)
            if step >= threshold_from and kept.any():
                smallest = float(scores.detach()[kept].min())
                b = config.threshold_beta
                threshold = smallest if threshold is None else b * threshold + (1 - b) * smallest
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= config.steps - window:
                sq_err += err.detach().pow(2).sum((0, 2)).double()
                sq_dev += (x - x.mean(0)).pow(2).sum((0, 2)).double()
                aux_total += float(aux.detach()) if aux is not None else 0.0
                l0_total += float(kept.sum(1).float().mean())
            bar.update(1)
    cc.threshold.fill_(threshold if threshold is not None else -1.0)
    fve = (1 - sq_err / sq_dev.clamp(min=1e-30)).tolist()
    return {
        "steps": config.steps,
        "final_loss": float(sq_err.sum() / (window * config.batch_size)),
        "fraction_variance_explained": fve,
        "final_aux_loss": aux_total / window,
        "mean_l0": l0_total / window,
        "dead_latents": int((idle >= config.dead_steps).sum()),
        "never_fired": int((cc.fire_count == 0).sum()),
    }


def _aux_loss(cc: Crosscoder, f: Tensor, err: Tensor, dead: Tensor, aux_k: int) -> Tensor | None:
    """How well the dead latents' top ``aux_k`` activations reconstruct the remaining error, normalised."""
    n_dead = int(dead.sum())
    if not n_dead:
        return None
    masked = torch.where(dead, f, torch.zeros_like(f))
    vals, idx = masked.topk(min(aux_k, n_dead), dim=-1)
    aux_f = torch.zeros_like(f).scatter(-1, idx, vals)
    guess = torch.einsum("bl,mld->bmd", aux_f, cc.W_dec)
    return (guess - err).pow(2).sum((1, 2)).mean() / err.pow(2).sum((1, 2)).mean().clamp(min=1e-12)
