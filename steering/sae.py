"""Sparse autoencoders trained through sae-lens on this toolkit's disk caches, and their quality.

Training reads activations from a cache (:meth:`interp.cache.Cache.batches`, one shard in memory
at a time) and feeds them to sae-lens's own ``SAETrainer``: the model is never re-run. The SAE is
saved in sae-lens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``), so
``sae_lens.SAE.load_from_disk`` opens it; where it came from (cache ID, model fingerprint, hook)
rides in ``cfg.json``'s ``metadata``, which sae-lens keeps as it is.

Quality (:func:`evaluate_sae`): explained variance ``1 - sum ||x - x_hat||^2 / sum ||x - mean||^2``
(sae-lens's ``metrics/explained_variance``), L0 (mean number of active features per token), dead
features (never active over the evaluated tokens), and the next-token cross-entropy of the model
with the SAE's reconstruction spliced in at the hook, against the clean model and zero ablation.
"""

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.atomic import fsync_dir
from interp.cache import Cache, open_cache
from interp.errors import InterpError
from interp.results import format_table, save_figure, save_json

log = logging.getLogger(__name__)

ARCHITECTURES = ("topk", "standard")
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


class SAEError(InterpError, ValueError):
    """An SAE directory that is missing or corrupt, or an SAE that does not fit a cache or model."""


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

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r} is not one of {list(ARCHITECTURES)}")
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

    def d_sae_for(self, d_in: int) -> int:
        """The number of features for inputs of size ``d_in``."""
        d_sae = self.d_sae if self.d_sae is not None else self.expansion_factor * d_in
        if self.architecture == "topk" and self.k > d_sae:
            raise ValueError(f"k={self.k} must be at most d_sae={d_sae}")
        return d_sae


def _as_cache(cache: "Cache | str | Path") -> Cache:
    return cache if isinstance(cache, Cache) else open_cache(cache)


def _cache_d_in(cache: Cache, hook: str) -> int:
    """Size of one activation at ``hook`` (trailing axes flattened); HookNameError if absent."""
    return math.prod(cache[hook].shape[1:])


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1).float()


def _training_batches(cache: Cache, hook: str, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Shuffled full batches from the cache, forever; each pass reshuffles with a new seed."""
    if len(cache[hook]) < batch_size:
        raise ValueError(
            f"cache {str(cache.root)!r} holds {len(cache[hook])} positions at {hook!r}, fewer "
            f"than one batch of {batch_size}; lower batch_size"
        )
    epoch = 0
    while True:
        for batch in cache.batches(hook, batch_size, shuffle=True, seed=seed + epoch, drop_last=True):
            yield _flat(batch)
        epoch += 1


def _training_sae(config: SAETrainConfig, d_in: int, device: str, metadata: dict[str, Any]):
    from sae_lens import (
        StandardTrainingSAE,
        StandardTrainingSAEConfig,
        TopKTrainingSAE,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    common = dict(d_in=d_in, d_sae=config.d_sae_for(d_in), dtype="float32", device=device)
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
        ValueError: the cache holds fewer positions than one batch, or ``k > d_sae``.

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
    metadata = {
        "hook_name": hook,
        "model_name": cache.manifest["model"]["spec"],
        "interp_cache_id": cache.id,
        "interp_model_fingerprint": cache.model_fingerprint,
        "interp_train_config": asdict(config),
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
        trainer = SAETrainer(trainer_cfg, sae, _training_batches(cache, hook, config.batch_size, config.seed))
        batches = trainer.data_provider
        # sae-lens's fit() has an unsilenceable progress bar; these are the public seams it uses.
        with tqdm(total=config.training_tokens, desc=f"SAE {hook}", disable=not progress) as bar:
            while trainer.n_training_samples < config.training_tokens:
                trainer.maybe_reset_sparsity()
                out = trainer.step(next(batches))
                trainer.n_training_steps += 1
                losses.append({k: float(v.item()) for k, v in out.losses.items()})
                bar.update(config.batch_size)
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


def save_sae(sae, path: str | Path) -> Path:
    """Save an sae-lens SAE in sae-lens's format (``cfg.json``, ``sae_weights.safetensors``).

    Each file is written under a temporary name and renamed, the config last, so a killed save
    never leaves a config beside half-written weights.

    Args:
        sae: an ``sae_lens.SAE``.
        path: the directory (created).

    Returns:
        The directory.

    Example:
        >>> import tempfile
        >>> from sae_lens import SAE, StandardSAE, StandardSAEConfig
        >>> sae = StandardSAE(StandardSAEConfig(d_in=4, d_sae=8))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     SAE.load_from_disk(str(save_sae(sae, tmp))).cfg.d_sae
        8
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp:
        sae.save_model(tmp)
        for name in (WEIGHTS_FILE, CFG_FILE):
            with open(Path(tmp) / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(Path(tmp) / name, path / name)
    fsync_dir(path)
    return path


def load_sae(path: str | Path, device: str = "cpu"):
    """Load an SAE saved by :func:`save_sae` or by sae-lens itself.

    Args:
        path: the directory holding ``cfg.json`` and ``sae_weights.safetensors``.
        device: where to put it.

    Returns:
        An ``sae_lens.SAE``.

    Raises:
        SAEError: the directory or a file is missing, or a file cannot be read.

    Example:
        >>> load_sae("/nonexistent")
        Traceback (most recent call last):
        ...
        steering.sae.SAEError: '/nonexistent' is not an SAE directory: cfg.json is missing
    """
    path = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise SAEError(f"{str(path)!r} is not an SAE directory: {name} is missing")
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as exc:  # json, safetensors and state-dict errors all mean a bad file
        raise SAEError(f"cannot load the SAE in {str(path)!r}: {type(exc).__name__}: {exc}") from exc


def check_sae_fits(sae, cache: "Cache | str | Path", hook: str) -> None:
    """Refuse an SAE whose input size differs from the cache's activations at ``hook``.

    Args:
        sae: an ``sae_lens.SAE``.
        cache: an opened cache or its directory.
        hook: the hook the SAE is to read.

    Raises:
        CacheError: no cache at that path.
        HookNameError: the cache lacks ``hook``.
        SAEError: ``d_in`` differs.

    Example:
        >>> check_sae_fits(None, "/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    d_in = _cache_d_in(cache, hook)
    if int(sae.cfg.d_in) != d_in:
        raise SAEError(
            f"the SAE takes inputs of size d_in={sae.cfg.d_in}, but {hook!r} in cache "
            f"{str(cache.root)!r} has activations of size {d_in}"
        )
    trained_on = sae.cfg.metadata.get("hook_name")
    if trained_on not in (None, hook):
        log.warning("SAE was trained on %r, applied here to %r", trained_on, hook)


def encode(sae, acts: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch d_sae"]:
    """Feature activations of a batch of cached activations (trailing axes flattened), no grad.

    Args:
        sae: an ``sae_lens.SAE``.
        acts: activations as read from a cache, any dtype.

    Returns:
        ``sae.encode`` of them as float32 on the SAE's device.

    Example:
        >>> from types import SimpleNamespace
        >>> double = SimpleNamespace(device="cpu", encode=lambda x: 2 * x)
        >>> encode(double, torch.ones(2, 1, 3, dtype=torch.bfloat16)).shape
        torch.Size([2, 3])
    """
    with torch.no_grad():
        return sae.encode(_flat(acts).to(sae.device))


@dataclass(frozen=True)
class SAEEval:
    """Reconstruction quality of an SAE over ``n_tokens`` cached activations (see module doc)."""

    n_tokens: int
    explained_variance: float
    mse: float
    l0: float
    dead_features: int
    d_sae: int
    ce_clean: float | None = None
    ce_spliced: float | None = None
    ce_zero_ablated: float | None = None
    ce_tokens: int = 0

    @property
    def ce_increase(self) -> float | None:
        """CE with the SAE spliced in minus clean CE (nats per token)."""
        return None if self.ce_clean is None else self.ce_spliced - self.ce_clean

    @property
    def loss_recovered(self) -> float | None:
        """``(CE_zero - CE_spliced) / (CE_zero - CE_clean)``: 1 is perfect, 0 no better than zeros."""
        if self.ce_clean is None or self.ce_zero_ablated == self.ce_clean:
            return None
        return (self.ce_zero_ablated - self.ce_spliced) / (self.ce_zero_ablated - self.ce_clean)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ce_increase=self.ce_increase, loss_recovered=self.loss_recovered)
        return d

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        return format_table(["metric", "value"], [[k, v] for k, v in self.to_dict().items()], digits=4)


def evaluate_sae(
    sae,
    cache: "Cache | str | Path",
    hook: str,
    model=None,
    n_tokens: int = 8192,
    batch_size: int = 1024,
    ce_batch_rows: int = 16,
) -> SAEEval:
    """Explained variance, L0, dead features, and (given the model) CE with the SAE spliced in.

    Args:
        sae: an ``sae_lens.SAE``.
        cache: the cache to evaluate on (pass a held-out cache for out-of-sample numbers).
        hook: the hook the SAE reads.
        model: the model the cache was built from; if None, the CE numbers are left out.
        n_tokens: how many cached positions (in cache order) and, for CE, about how many tokens
            of the cache's rows to use.
        batch_size: positions per SAE batch.
        ce_batch_rows: token rows per forward pass for CE.

    Returns:
        An :class:`SAEEval`.

    Raises:
        SAEError: the SAE's ``d_in`` differs from the cache's activations.
        ModelMismatchError: ``model`` is not the cache's model.
    """
    cache = _as_cache(cache)
    check_sae_fits(sae, cache, hook)
    sq_err, sum_sq, l0_sum = (torch.zeros((), dtype=torch.float64) for _ in range(3))
    sum_x = torch.zeros(int(sae.cfg.d_in), dtype=torch.float64)
    fired = torch.zeros(int(sae.cfg.d_sae), dtype=torch.bool)
    seen = 0
    with torch.no_grad():
        for batch in cache.batches(hook, batch_size):
            x = _flat(batch[: n_tokens - seen]).to(sae.device)
            feats = sae.encode(x)
            x_hat = sae.decode(feats)
            sq_err = sq_err + (x_hat - x).double().pow(2).sum().cpu()
            sum_x = sum_x + x.double().sum(0).cpu()
            sum_sq = sum_sq + x.double().pow(2).sum().cpu()
            active = (feats != 0).cpu()
            l0_sum = l0_sum + active.sum()
            fired |= active.any(0)
            seen += len(x)
            if seen >= n_tokens:
                break
    total_var = sum_sq - sum_x.pow(2).sum() / seen
    ce = _spliced_ce(sae, cache, hook, model, n_tokens, ce_batch_rows) if model is not None else {}
    return SAEEval(
        n_tokens=seen,
        explained_variance=float(1 - sq_err / total_var),
        mse=float(sq_err / seen),
        l0=float(l0_sum / seen),
        dead_features=int((~fired).sum()),
        d_sae=int(sae.cfg.d_sae),
        **ce,
    )


def _rows_up_to(cache: Cache, n_tokens: int) -> list[list[int]]:
    rows, total = [], 0
    for row in cache.iter_row_tokens():
        if len(row) < 2:
            continue
        rows.append(row)
        total += len(row) - 1
        if total >= n_tokens:
            break
    return rows


def _spliced_ce(sae, cache: Cache, hook: str, model, n_tokens: int, batch_rows: int) -> dict[str, Any]:
    from interp.cache.capture import pad_rows
    from interp.hooks import ablate, patch
    from interp.models import as_model

    model = as_model(model)
    cache.check_model(model)
    rows = _rows_up_to(cache, n_tokens)
    if not rows:
        raise SAEError(f"cache {str(cache.root)!r} has no rows of two or more tokens to measure CE on")

    def splice(act: Tensor) -> Tensor:
        out = sae.decode(sae.encode(act.reshape(*act.shape[:2], -1).to(sae.device, torch.float32)))
        return out.reshape(act.shape).to(act.dtype)

    totals = dict.fromkeys(("ce_clean", "ce_spliced", "ce_zero_ablated"), 0.0)
    count = 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_rows):
            chunk = rows[i : i + batch_rows]
            # Right padding never changes the real positions under causal attention.
            tokens, mask = pad_rows(chunk, [range(len(r)) for r in chunk], 0)
            tokens = tokens.to(model.device)
            targets, valid = tokens[:, 1:], mask[:, 1:].to(model.device)
            totals["ce_clean"] += _ce_sum(model(tokens), targets, valid)
            with patch(model, {hook: splice}):
                totals["ce_spliced"] += _ce_sum(model(tokens), targets, valid)
            with ablate(model, hook, mode="zero"):
                totals["ce_zero_ablated"] += _ce_sum(model(tokens), targets, valid)
            count += int(valid.sum())
    return {**{k: v / count for k, v in totals.items()}, "ce_tokens": count}


def _ce_sum(logits: Tensor, targets: Tensor, valid: Tensor) -> float:
    logp = logits[:, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, targets[..., None]).squeeze(-1)
    return float(nll[valid].sum())


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
            ["tokens/s", self.tokens_per_second],
            *[[f"final {k}", v] for k, v in (self.losses[-1] if self.losses else {}).items()],
        ]
        if self.evaluation is not None:
            rows += [[k, v] for k, v in self.evaluation.to_dict().items() if k not in ("d_sae",)]
        return format_table(["", "value"], rows, digits=4)

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
