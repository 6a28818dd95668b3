"""Building organism models and training them as language models on sampled examples."""

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.errors import InterpError
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import Example

log = logging.getLogger(__name__)


class TrainSettingError(InterpError, ValueError):
    """A training argument that cannot be used (a snapshot step outside the run, ...)."""


@runtime_checkable
class Batches(Protocol):
    """What :func:`train_lm` draws from: an ``ExampleSampler``, or a fixed set of examples."""

    def batch(self, n: int) -> list[Example]: ...


@dataclass(frozen=True)
class ModelShape:
    """Architecture of an organism model (a ``HookedTransformer``).

    Args:
        n_layers: transformer blocks.
        d_model: residual width.
        n_heads: attention heads (``d_head = d_model // n_heads``).
        d_mlp: MLP width.
        n_ctx: context length.
    """

    n_layers: int = 3
    d_model: int = 128
    n_heads: int = 4
    d_mlp: int = 512
    n_ctx: int = 128

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_mlp", "n_ctx"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}; expected a positive int")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "pick n_heads among the divisors of d_model"
            )

    def hooked_config(self, d_vocab: int) -> dict:
        """The ``HookedTransformerConfig`` keyword arguments (saved as ``config.json``)."""
        return {
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "d_head": self.d_model // self.n_heads,
            "d_mlp": self.d_mlp,
            "n_ctx": self.n_ctx,
            "d_vocab": d_vocab,
            "act_fn": "gelu",
            "normalization_type": "LN",
            "positional_embedding_type": "standard",
            "default_prepend_bos": False,
        }


@dataclass(frozen=True)
class TrainConfig:
    """An AdamW run with linear warm-up and cosine decay.

    Args:
        steps: optimizer steps.
        batch_size: examples per step.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup: warm-up steps.
        min_lr_ratio: final learning rate as a share of ``lr``.
        grad_clip: gradient norm clip (0 turns it off).
    """

    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.warmup < 0:
            raise ValueError(
                f"steps={self.steps!r}, batch_size={self.batch_size!r}, warmup={self.warmup!r}; "
                "expected steps >= 0, batch_size >= 1, warmup >= 0"
            )
        if not self.lr > 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"lr={self.lr!r}, min_lr_ratio={self.min_lr_ratio!r}; expected lr > 0 and "
                "min_lr_ratio in [0, 1]"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup)
        frac = min(1.0, (step - self.warmup) / span)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads (``None`` leaves the setting), restoring it on exit."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """Run with ``torch.use_deterministic_algorithms(True)``, restoring the setting on exit.

    On CPU with two or more intra-op threads some backward kernels (the embedding gradient's
    scatter-add among them) sum in thread order; without this a rebuild with the same seed gives
    different weights. Measured on 2 cores it costs no time.
    """
    old, old_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old, warn_only=old_warn)


def build_model(shape: ModelShape, d_vocab: int, seed: int) -> HookedTransformer:
    """A freshly initialised model, identical for the same shape, vocabulary and seed."""
    torch.manual_seed(seed)
    return HookedTransformer(HookedTransformerConfig(**shape.hooked_config(d_vocab)))


def collate(
    examples: list[Example], tok: WordTokenizer
) -> tuple[Int[Tensor, "batch pos"], Float[Tensor, "batch pos"]]:
    """Right-padded token ids and the loss weight of predicting each token (0 at padding)."""
    length = max(len(e.words) for e in examples)
    ids = torch.full((len(examples), length), tok.pad_token_id, dtype=torch.long)
    w = torch.zeros((len(examples), length))
    for i, e in enumerate(examples):
        ids[i, : len(e.words)] = torch.tensor(tok.encode(e.text))
        w[i, : len(e.words)] = torch.tensor(e.weights)
    return ids, w


def weighted_lm_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    weights: Float[Tensor, "batch pos"],
) -> Float[Tensor, ""]:
    """Next-token cross-entropy, each predicted token weighted by ``weights`` at its position."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    w = weights[:, 1:]
    return (nll * w).sum() / w.sum().clamp_min(1.0)


def train_lm(
    model: HookedTransformer,
    sampler: Batches,
    tok: WordTokenizer,
    cfg: TrainConfig,
    seed: int,
    desc: str = "train",
    progress: bool = True,
    snapshot_at: Sequence[int] = (),
    on_snapshot: Callable[[int, HookedTransformer], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on examples drawn from ``sampler``.

    Args:
        model: the model to train.
        sampler: draws the training examples (seeded on its own).
        tok: turns example words into ids.
        cfg: optimizer settings.
        seed: seeds ``torch`` for the run.
        desc: progress-bar label.
        progress: show a tqdm bar.
        snapshot_at: step counts (in ``1..cfg.steps``) after whose update ``on_snapshot`` is called.
        on_snapshot: ``on_snapshot(step, model)``, with the model in eval mode during the call
            (back in train mode after); it must not change the weights. The global torch random
            state is restored after it, so a snapshot does not change the run.

    Returns:
        ``final_loss`` (the mean loss of the last 20 steps), ``steps_run`` and
        ``snapshot_steps`` (the steps ``on_snapshot`` was called at).

    Raises:
        TrainSettingError: a snapshot step that is not an int in ``1..cfg.steps``, or
            ``snapshot_at`` without ``on_snapshot``.

    Example:
        >>> from interp.organism.traces import DataRecipe, ExampleSampler
        >>> from interp.organism.tokenizer import organism_vocab
        >>> from interp.organism.world import make_world
        >>> world = make_world()
        >>> tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
        >>> model = build_model(ModelShape(1, 16, 2, 32, 64), len(tok), seed=0)
        >>> seen = []
        >>> stats = train_lm(model, ExampleSampler(world, DataRecipe(), 0), tok,
        ...                  TrainConfig(steps=3, batch_size=2, warmup=1), seed=0, progress=False,
        ...                  snapshot_at=(1, 2), on_snapshot=lambda s, m: seen.append((s, m.training)))
        >>> seen, stats["snapshot_steps"]
        ([(1, False), (2, False)], [1, 2])
    """
    snaps = _check_snapshots(snapshot_at, on_snapshot, cfg.steps)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    recent: list[float] = []
    taken: list[int] = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        tokens, weights = collate(sampler.batch(cfg.batch_size), tok)
        loss = weighted_lm_loss(model(tokens), tokens, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        recent = (recent + [float(loss.detach())])[-20:]
        if step % 25 == 0:
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}")
        if step + 1 in snaps and on_snapshot is not None:
            _snapshot(model, step + 1, on_snapshot)
            taken.append(step + 1)
    model.eval()
    final = sum(recent) / len(recent) if recent else float("nan")
    log.debug("%s: final loss %.4f", desc, final)
    return {"final_loss": final, "steps_run": cfg.steps, "snapshot_steps": taken}


def _check_snapshots(snapshot_at: Sequence[int], on_snapshot: Callable | None, steps: int) -> set[int]:
    snaps = list(snapshot_at)
    bad = [s for s in snaps if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= steps]
    if bad:
        raise TrainSettingError(f"snapshot_at has {bad[:5]}; expected step counts in 1..steps={steps}")
    if snaps and on_snapshot is None:
        raise TrainSettingError(f"snapshot_at={snaps[:5]} without on_snapshot; pass on_snapshot=")
    return set(snaps)


def _snapshot(
    model: HookedTransformer, step: int, on_snapshot: Callable[[int, HookedTransformer], None]
) -> None:
    devices = [p.device for p in model.parameters()][:1]
    with torch.random.fork_rng(devices=[d for d in devices if d.type == "cuda"]):
        model.eval()
        try:
            on_snapshot(step, model)
        finally:
            model.train()
