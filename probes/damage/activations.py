"""Activation evidence of damage: probe retention and CKA between the base and the tuned model.

Both record the two models' activations on the same token rows, one forward pass per batch per
model, with :func:`interp.hooks.record`.
"""

import math
from collections.abc import Sequence

import torch

from interp.hooks import record
from interp.models import Model
from probes.cka import CKAStats
from probes.damage.config import COMPONENTS, HOOKS, DamageConfig, ProbeTask
from probes.linear import fit_probes


def _batches(model: Model, rows: Sequence[Sequence[int]], positions: Sequence[int] | None, batch_size: int):
    """Right-padded token batches and the mask of kept positions (each row's ``position``, or all)."""
    if any(len(r) > model.n_ctx for r in rows):
        raise ValueError(f"a token row is longer than {model.spec!r}'s context of {model.n_ctx}")
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        toks = torch.full((len(chunk), max(map(len, chunk))), model.pad_token_id, dtype=torch.long)
        mask = torch.zeros(toks.shape, dtype=torch.bool)
        for j, row in enumerate(chunk):
            toks[j, : len(row)] = torch.tensor(list(row), dtype=torch.long)
            if positions is None:
                mask[j, : len(row)] = True
            else:
                mask[j, positions[i + j] % len(row)] = True
        yield toks, mask


def _record(model: Model, hooks: list[str], toks, mask) -> torch.Tensor:
    """Activations ``[hook, n, d_model]`` at the masked positions: one forward pass."""
    with torch.inference_mode(), record(model, hooks, positions=mask, device="cpu") as acts:
        model(toks)
    return torch.stack([acts[h].float() for h in hooks])


def probe_retention(
    base: Model,
    tuned: Model,
    task: ProbeTask,
    config: DamageConfig = DamageConfig(),  # noqa: B008 (frozen, so sharing it is safe)
    progress: bool = False,
) -> dict[str, tuple[float, float]]:
    """Held-out accuracy of the base model's probes on the base and on the tuned model, per layer.

    Probes (one per ``blocks.L.hook_resid_post``) are fitted on the base model's activations of
    the task's training part and scored, unchanged, on both models' activations of its held-out
    part (a seeded split).

    Returns:
        hook name -> ``(accuracy on base, accuracy on tuned)``.
    """
    from tqdm.auto import tqdm

    hooks = [HOOKS["resid_post"].format(i) for i in range(base.n_layers)]
    xb, xt = [], []
    n_batches = math.ceil(len(task.tokens) / config.batch_size)
    for toks, mask in tqdm(
        _batches(base, task.tokens, task.positions, config.batch_size),
        total=n_batches,
        desc="probe activations",
        disable=not progress,
    ):
        xb.append(_record(base, hooks, toks, mask))
        xt.append(_record(tuned, hooks, toks, mask))
    xb, xt = torch.cat(xb, 1), torch.cat(xt, 1)
    y = torch.tensor(task.labels)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed))
    n_test = max(1, round(len(y) * config.probe_test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    if len(torch.unique(y[train])) < 2:
        raise ValueError(f"probe task {task.name!r}: the training part has a single class; add examples")
    probes = fit_probes(xb[:, train], y[train], hooks, config.probe)
    acc_b = (probes.predict(xb[:, test]) == y[test]).float().mean(1).tolist()
    acc_t = (probes.predict(xt[:, test]) == y[test]).float().mean(1).tolist()
    return {h: (a, b) for h, a, b in zip(hooks, acc_b, acc_t, strict=True)}


def cka_by_site(
    base: Model, tuned: Model, tokens: Sequence[Sequence[int]], batch_size: int = 64, progress: bool = False
) -> dict[str, float]:
    """Linear CKA between the two models at every attention, MLP and residual site (and
    ``blocks.0.hook_resid_pre``), over all positions of ``tokens``, streamed batch by batch."""
    from tqdm.auto import tqdm

    hooks = ["blocks.0.hook_resid_pre"] + [
        HOOKS[c].format(i) for i in range(base.n_layers) for c in COMPONENTS
    ]
    stats = CKAStats()
    for toks, mask in tqdm(
        _batches(base, tokens, None, batch_size),
        total=math.ceil(len(tokens) / batch_size),
        desc="CKA activations",
        disable=not progress,
    ):
        stats.update(_record(base, hooks, toks, mask), _record(tuned, hooks, toks, mask))
    return dict(zip(hooks, stats.value().tolist(), strict=True))
