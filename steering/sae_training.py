"""Training sparse autoencoders through sae-lens on this toolkit's disk caches.

Training reads activations from a cache (:meth:`interp.cache.Cache.batches`, one shard in memory
at a time) and feeds them to sae-lens's own ``SAETrainer``: the model is never re-run. The
trained SAE is returned in inference form, exactly as sae-lens saves and reloads it, with the
cache ID, model fingerprint and hook in ``sae.cfg.metadata`` (save it with
:func:`steering.sae_io.save_sae`).

Attention sinks are left out by default: position 0 of every row and any BOS token (see
:class:`steering.sae_io.SinkExclusion`), recorded in the metadata under ``interp_excluded``.
Inputs can be normalised as sae-lens does it (``normalize_activations``): with
``"expected_average_only_in"`` one scale, estimated on the training positions so that
``E ||x|| = sqrt(d_in)``, is applied during training and then folded into the weights
(sae-lens's ``fold_activation_norm_scaling_factor``), so the saved SAE reads raw activations;
``"layer_norm"`` and ``"constant_norm_rescale"`` normalise each input at run time and stay in
``cfg.json``, where sae-lens applies them on every ``encode``. Either way the choice and scale
are recorded under ``interp_normalization``.
"""

import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from interp.architecture import architecture_of_cache
from interp.cache import Cache
from interp.results import format_table, save_figure, save_json
from steering.sae_eval import SAEEval
from steering.sae_io import (
    ARCHITECTURE_KEY,
    EXCLUSION_KEY,
    NORMALIZATION_KEY,
    SinkExclusion,
    _as_cache,
    _cache_d_in,
    _flat,
    kept_batches,
    load_sae,
)

ARCHITECTURES = ("topk", "standard")
NORMALIZATIONS = ("none", "expected_average_only_in", "layer_norm", "constant_norm_rescale")
NORM_ESTIMATE_POSITIONS = 1 << 17  # training positions the expected_average_only_in scale is taken over


@dataclass(frozen=True)
class SAETrainConfig:
    """Settings of an SAE training run.

    Args:
        architecture: ``"topk"`` (k largest pre-activations kept) or ``"standard"`` (ReLU + L1).
        d_sae: number of features; default ``expansion_factor * d_in``.
        expansion_factor: used when ``d_sae`` is None.
        k: active features per token (``topk`` only).
        l1_coefficient: weight of the L1 penalty (``standard`` only).
        lr: Adam learning rate (constant after ``lr_warm_up_steps``).
        training_tokens: activations to train on; the cache is cycled, reshuffled each pass.
        batch_size: activations per step.
        seed: weight initialisation and shuffling.
        lr_warm_up_steps: linear warm-up steps.
        dead_feature_window: steps without firing after which a feature counts as dead (topk's
            auxiliary loss revives those).
        exclude_positions: positions within each row never trained on (default: the first,
            an attention sink); ``()`` keeps them all.
        exclude_bos: also leave out every position holding the cache's BOS token.
        normalize_activations: ``"none"``, ``"expected_average_only_in"`` (one scale so that
            ``E ||x|| = sqrt(d_in)`` on the training positions, folded into the weights after
            training), ``"layer_norm"`` or ``"constant_norm_rescale"`` (per input, at run time).

    Raises:
        ValueError: a value out of range, naming it and what is accepted.

    Example:
        >>> SAETrainConfig(architecture="topk", k=8, d_sae=64).d_sae_for(16)
        64
    """

    architecture: Literal["topk", "standard"] = "topk"
    d_sae: int | None = None
    expansion_factor: int = 4
    k: int = 32
    l1_coefficient: float = 1.0
    lr: float = 3e-4
    training_tokens: int = 200_000
    batch_size: int = 1024
    seed: int = 0
    lr_warm_up_steps: int = 0
    dead_feature_window: int = 1000
    exclude_positions: tuple[int, ...] | list[int] = (0,)
    exclude_bos: bool = True
    normalize_activations: Literal[
        "none", "expected_average_only_in", "layer_norm", "constant_norm_rescale"
    ] = "none"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r} is not one of {list(ARCHITECTURES)}")
        if self.normalize_activations not in NORMALIZATIONS:
            raise ValueError(
                f"normalize_activations {self.normalize_activations!r} is not one of {list(NORMALIZATIONS)}"
            )
        if not isinstance(self.exclude_bos, bool):
            raise ValueError(f"exclude_bos must be True or False, got {self.exclude_bos!r}")
        object.__setattr__(self, "exclude_positions", self.exclusion().positions)
        for name in ("expansion_factor", "k", "training_tokens", "batch_size", "dead_feature_window"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.d_sae is not None and (not isinstance(self.d_sae, int) or self.d_sae < 1):
            raise ValueError(f"d_sae must be a positive int or None, got {self.d_sae!r}")
        if self.architecture == "topk" and self.d_sae is not None and self.k > self.d_sae:
            raise ValueError(f"k={self.k} must be at most d_sae={self.d_sae}")
        if not self.l1_coefficient >= 0:
            raise ValueError(f"l1_coefficient must be >= 0, got {self.l1_coefficient}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.training_tokens < self.batch_size:
            raise ValueError(
                f"training_tokens={self.training_tokens} is less than one batch ({self.batch_size})"
            )
        if self.lr_warm_up_steps < 0:
            raise ValueError(f"lr_warm_up_steps must be >= 0, got {self.lr_warm_up_steps}")

    def exclusion(self) -> SinkExclusion:
        """The positions this run leaves out, as a :class:`SinkExclusion`."""
        return SinkExclusion(positions=tuple(self.exclude_positions), bos=self.exclude_bos)

    def d_sae_for(self, d_in: int) -> int:
        """The number of features for inputs of size ``d_in``."""
        d_sae = self.d_sae if self.d_sae is not None else self.expansion_factor * d_in
        if self.architecture == "topk" and self.k > d_sae:
            raise ValueError(f"k={self.k} must be at most d_sae={d_sae}")
        return d_sae


def _training_batches(
    cache: Cache, hook: str, batch_size: int, seed: int, keep: Tensor | None = None
) -> Iterator[Tensor]:
    """Shuffled full batches of the kept positions, forever; each pass reshuffles with a new seed."""
    n_all = len(cache[hook])
    n_kept = n_all if keep is None else int(keep.sum())
    if n_kept < batch_size:
        kept = "" if keep is None else f" ({n_kept} once attention-sink positions are left out)"
        raise ValueError(
            f"cache {str(cache.root)!r} holds {n_all} positions at {hook!r}{kept}, fewer "
            f"than one batch of {batch_size}; lower batch_size"
        )
    epoch = 0
    while True:
        passes = kept_batches(cache, hook, batch_size, keep, shuffle=True, seed=seed + epoch, drop_last=True)
        for batch in passes:
            yield _flat(batch)
        epoch += 1


def _norm_scale(cache: Cache, hook: str, keep: Tensor | None, d_in: int, seed: int) -> float:
    """``sqrt(d_in) / E ||x||`` over (a seeded sample of) the training positions."""
    total, count = 0.0, 0
    for batch in kept_batches(cache, hook, 4096, keep, shuffle=True, seed=seed):
        total += float(_flat(batch).norm(dim=-1).double().sum())
        count += len(batch)
        if count >= NORM_ESTIMATE_POSITIONS:
            break
    mean = total / count
    if not mean > 0:
        raise ValueError(
            f"the activations at {hook!r} in {str(cache.root)!r} are all zero; cannot normalise them"
        )
    return d_in**0.5 / mean


def _training_sae(config: SAETrainConfig, d_in: int, device: str, metadata: dict[str, Any]):
    from sae_lens import (
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    # expected_average_only_in is a fixed scale applied by the trainer and folded in afterwards,
    # as sae-lens's own trainer does; the SAE itself never sees the setting.
    norm = config.normalize_activations
    common = dict(
        d_in=d_in,
        d_sae=config.d_sae_for(d_in),
        dtype="float32",
        device=device,
        normalize_activations="none" if norm == "expected_average_only_in" else norm,
    )
    meta = SAEMetadata(**metadata)
    if config.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=config.k, metadata=meta, **common))
    cfg = StandardTrainingSAEConfig(l1_coefficient=config.l1_coefficient, metadata=meta, **common)
    return StandardTrainingSAE(cfg)


def train_sae(
    cache: "Cache | str | Path",
    hook: str,
    config: SAETrainConfig = SAETrainConfig(),  # noqa: B008 (frozen, so sharing it is safe)
    device: str = "cpu",
    progress: bool = True,
) -> "SAETrainResult":
    """Train an SAE with sae-lens's ``SAETrainer`` on a hook's activations from a disk cache.

    Args:
        cache: an opened cache or its directory.
        hook: a hook name the cache holds.
        config: architecture, size, sparsity, optimisation and seed.
        device: where to train.
        progress: show a progress bar.

    Returns:
        A :class:`SAETrainResult` holding the trained sae-lens ``SAE`` (inference form), with the
        cache ID, model fingerprint and hook in ``sae.cfg.metadata``.

    Raises:
        HookNameError: the cache lacks ``hook``.
        ValueError: the cache holds fewer positions than one batch (once the excluded positions
            are left out), or ``k > d_sae``.

    Example:
        >>> train_sae("/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    from sae_lens import LoggingConfig, SAETrainer
    from sae_lens.config import SAETrainerConfig
    from tqdm.auto import tqdm

    cache = _as_cache(cache)
    d_in = _cache_d_in(cache, hook)
    exclusion = config.exclusion()
    keep = exclusion.keep_mask(cache) if exclusion.excludes_anything else None
    batches_in = _training_batches(cache, hook, config.batch_size, config.seed, keep)  # checks the count
    scale = (
        _norm_scale(cache, hook, keep, d_in, config.seed)
        if config.normalize_activations == "expected_average_only_in"
        else None
    )
    metadata = {
        "hook_name": hook,
        "model_name": cache.manifest["model"]["spec"],
        "interp_cache_id": cache.id,
        "interp_model_fingerprint": cache.model_fingerprint,
        ARCHITECTURE_KEY: architecture_of_cache(cache),
        "interp_train_config": asdict(config),
        EXCLUSION_KEY: exclusion.to_dict(cache, keep),
        NORMALIZATION_KEY: {
            "mode": config.normalize_activations,
            "scaling_factor": scale,
            "folded": scale is not None,
        },
    }
    trainer_cfg = SAETrainerConfig(
        total_training_samples=config.training_tokens,
        train_batch_size_samples=config.batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_warm_up_steps=config.lr_warm_up_steps,
        device=device,
        dead_feature_window=config.dead_feature_window,
        feature_sampling_window=max(1, config.training_tokens // config.batch_size),
        logger=LoggingConfig(log_to_wandb=False),
    )
    losses: list[dict[str, float]] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seeds the init without disturbing the caller's RNG
        torch.manual_seed(config.seed)
        sae = _training_sae(config, d_in, device, metadata)
        trainer = SAETrainer(trainer_cfg, sae, batches_in)
        trainer.activation_scaler.scaling_factor = scale  # trainer.step scales every batch by it
        batches = trainer.data_provider
        # sae-lens's fit() has an unsilenceable progress bar; these are the public seams it uses.
        with tqdm(total=config.training_tokens, desc=f"SAE {hook}", disable=not progress) as bar:
            while trainer.n_training_samples < config.training_tokens:
                trainer.maybe_reset_sparsity()
                out = trainer.step(next(batches))
                trainer.n_training_steps += 1
                losses.append({k: float(v.item()) for k, v in out.losses.items()})
                bar.update(config.batch_size)
        if scale is not None:  # the saved SAE reads raw activations, as after sae-lens's fit()
            trainer.sae.fold_activation_norm_scaling_factor(scale)
            trainer.activation_scaler.scaling_factor = None
        trainer.set_final_sae_metadata()
    seconds = time.perf_counter() - start
    inference = _to_inference(trainer.sae, device)
    return SAETrainResult(
        sae=inference,
        hook=hook,
        config=config,
        cache_id=cache.id,
        model_fingerprint=cache.model_fingerprint,
        losses=tuple(losses),
        n_tokens=trainer.n_training_samples,
        seconds=seconds,
    )


def _to_inference(training_sae, device: str):
    """The inference-form SAE exactly as sae-lens saves and reloads it."""
    with tempfile.TemporaryDirectory() as tmp:
        training_sae.save_inference_model(tmp)
        return load_sae(tmp, device=device)


@dataclass(frozen=True)
class SAETrainResult:
    """A trained SAE, where it came from, its loss curve and (once evaluated) its quality."""

    sae: Any = field(repr=False)
    hook: str
    config: SAETrainConfig
    cache_id: str
    model_fingerprint: str
    losses: tuple[dict[str, float], ...] = field(repr=False)
    n_tokens: int
    seconds: float
    evaluation: SAEEval | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else float("nan")

    def with_evaluation(self, evaluation: SAEEval) -> "SAETrainResult":
        from dataclasses import replace

        return replace(self, evaluation=evaluation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "config": asdict(self.config),
            "d_in": int(self.sae.cfg.d_in),
            "d_sae": int(self.sae.cfg.d_sae),
            "cache_id": self.cache_id,
            "model_fingerprint": self.model_fingerprint,
            "n_tokens": self.n_tokens,
            "excluded": self.sae.cfg.metadata.get(EXCLUSION_KEY),
            "normalization": self.sae.cfg.metadata.get(NORMALIZATION_KEY),
            "seconds": self.seconds,
            "tokens_per_second": self.tokens_per_second,
            "final_losses": self.losses[-1] if self.losses else {},
            "losses": list(self.losses),
            "evaluation": self.evaluation.to_dict() if self.evaluation else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write the summary JSON (the weights go through :func:`save_sae`)."""
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [
            ["hook", self.hook],
            ["architecture", self.config.architecture],
            ["d_in -> d_sae", f"{self.sae.cfg.d_in} -> {self.sae.cfg.d_sae}"],
            ["tokens", self.n_tokens],
            ["trained on", self._trained_on()],
            ["normalize", self.config.normalize_activations],
            ["tokens/s", self.tokens_per_second],
            *[[f"final {k}", v] for k, v in (self.losses[-1] if self.losses else {}).items()],
        ]
        if self.evaluation is not None:
            ev = self.evaluation.to_dict()
            rows += [["evaluated on", ev["positions"]]]
            rows += [[k, v] for k, v in ev.items() if k not in ("d_sae", "positions")]
        return format_table(["", "value"], rows, digits=4)

    def _trained_on(self) -> str:
        record = self.sae.cfg.metadata.get(EXCLUSION_KEY) or {}
        what = self.config.exclusion().describe(record.get("bos_token_id"))
        if "n_kept" in record:
            what += f"; {record['n_kept']} of {record['n_kept'] + record['n_excluded']} cached positions"
        return what

    def plot(self, path_or_ax):
        """The training losses per step (log scale); a path gets a PNG, an axis is drawn on."""
        import matplotlib.pyplot as plt

        ax = path_or_ax if hasattr(path_or_ax, "plot") else plt.subplots(figsize=(6, 3.5))[1]
        for name in self.losses[0] if self.losses else {}:
            ax.plot([step[name] for step in self.losses], label=name)
        ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"SAE training at {self.hook}")
        ax.legend()
        if ax is path_or_ax:
            return ax
        return save_figure(ax.figure, path_or_ax)
