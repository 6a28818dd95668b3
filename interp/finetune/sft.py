"""Supervised fine-tuning of a Hugging Face causal LM on the CPU, saving a checkpoint at each dose.

The loop is plain PyTorch on the ``transformers`` model (AdamW, loss on response tokens only),
not TRL's ``SFTTrainer``: TRL is not part of the pinned install, and its trainers turn gradient
checkpointing on, which recomputes every layer's forward in the backward pass and so costs time
on a CPU, where memory is not what limits a 135M-parameter model. A plain loop also makes the
run exactly reproducible (seeded batch order, deterministic kernels) and saves at exact steps.

Sequences are padded on the right (each starts at position 0) with the tokenizer's pad id; the
attention mask hides the padding and the labels ignore the prompt and the padding.
"""

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn
from tqdm.auto import tqdm

from interp.finetune.config import FinetuneConfig
from interp.finetune.data import TrainExample, TrainingData

log = logging.getLogger(__name__)

IGNORE = -100  # label of a position the loss skips (the prompt and the padding)


@dataclass
class TrainState:
    """Where a run is: steps done, training seconds, and the loss and time of every step so far."""

    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)


def collate(
    examples: Sequence[TrainExample], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Right-padded ``(input_ids, attention_mask, labels)``; labels are set on response tokens only.

    Example:
        >>> ex = TrainExample("a", "p", "r", (5, 6), (7,), "arithmetic")
        >>> ids, mask, labels = collate([ex, TrainExample("b", "p", "r", (5,), (8, 9), "facts")], pad_id=0)
        >>> ids.tolist(), mask.tolist(), labels.tolist()
        ([[5, 6, 7], [5, 8, 9]], [[1, 1, 1], [1, 1, 1]], [[-100, -100, 7], [-100, 8, 9]])
    """
    width = max(len(e.prompt_ids) + len(e.response_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        p, n = len(e.prompt_ids), len(e.prompt_ids) + len(e.response_ids)
        ids[i, :n] = torch.tensor([*e.prompt_ids, *e.response_ids])
        mask[i, :n] = 1
        labels[i, p:n] = torch.tensor(e.response_ids)
    return ids, mask, labels


def batches(data: TrainingData, config: FinetuneConfig) -> Iterator[list[TrainExample]]:
    """Endless seeded batches: ``rehearsed_per_batch`` rehearsed facts, the rest from the main data.

    Each pool is walked in a fresh seeded permutation per epoch, so every example is seen
    equally often.
    """
    n_facts = min(config.rehearsed_per_batch, config.batch_size - 1) if data.facts else 0
    rng = random.Random(config.seed)
    main, facts = _epochs(data.main, rng), _epochs(data.facts, rng)
    while True:
        yield [next(main) for _ in range(config.batch_size - n_facts)] + [next(facts) for _ in range(n_facts)]


def _epochs(pool: Sequence[TrainExample], rng: random.Random) -> Iterator[TrainExample]:
    while pool:
        order = list(range(len(pool)))
        rng.shuffle(order)
        yield from (pool[i] for i in order)


def response_loss(model: nn.Module, ids: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
    """Mean next-token cross-entropy over the response tokens of the batch."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=IGNORE
    )


def train(
    model: nn.Module,
    data: TrainingData,
    config: FinetuneConfig,
    pad_id: int,
    on_dose: Callable[[TrainState], Any],
    until: int | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> TrainState:
    """Train ``model`` in place and call ``on_dose(state)`` after each step in ``config.all_doses``.

    Args:
        model: a ``transformers`` causal LM (trained in place).
        data: the examples (see :func:`interp.finetune.data.build_data`).
        config: the run's settings.
        pad_id: the tokenizer's pad id.
        on_dose: called with the state at every dose (step 0 included when it is a dose), with
            the model in eval mode; the time it takes is not counted as training time.
        until: stop after this many steps (default ``config.steps``).
        progress: show a progress bar.
        device: where the model is; on the CPU the kernels are deterministic (bit-reproducible).

    Returns:
        The final state.
    """
    from interp.organism.train import deterministic, torch_threads

    until = config.steps if until is None else until
    doses = set(config.all_doses)
    state = TrainState()
    exact = deterministic() if torch.device(device).type == "cpu" else contextlib.nullcontext()
    with torch_threads(config.threads), exact:
        torch.manual_seed(config.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        if 0 in doses:
            on_dose(state)
        stream = batches(data, config)
        bar = tqdm(total=until, desc=f"finetune {config.method}", unit="step", disable=not progress)
        try:
            for step in range(1, until + 1):
                start = time.perf_counter()
                model.train()
                batch = (t.to(device) for t in collate(next(stream), pad_id))
                loss = response_loss(model, *batch)
                loss.backward()
                if config.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                model.eval()
                took = time.perf_counter() - start
                state.step, state.seconds = step, state.seconds + took
                state.step_seconds.append(took)
                state.losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{state.losses[-1]:.3f}")
                if step in doses:
                    on_dose(state)
        finally:
            bar.close()
            model.eval()
    return state
