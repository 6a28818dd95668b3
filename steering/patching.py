"""Patching as a ranking of layers: attribution patching and the activation patching it estimates.

:func:`attribution_patching` is the first-order estimate of each hook's patching effect,
``grad(metric at the corrupt run) . (clean activation - corrupt activation)`` summed over the
chosen positions, from one forward and one backward pass (Nanda 2023; Syed et al. 2023);
:func:`activation_patching` measures the exact effect of patching each hook's clean activation
into the corrupt run (one forward pass per hook). The two agree exactly when everything
downstream of the hook is linear; elsewhere attribution is a cheap ranking to check.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.hooks import Positions, patch, record, resolve_hook_names
from interp.hooks import hooks as installed_hooks
from steering.layer_choice import LayerChoiceError, LogitMetric, _pad, _pad_id, _rows

__all__ = ["activation_patching", "attribution_patching", "rank_hooks"]


def _paired(m, clean_rows, corrupt_rows) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    clean, corrupt = _rows(clean_rows, "clean_rows"), _rows(corrupt_rows, "corrupt_rows")
    if len(clean) != len(corrupt):
        raise LayerChoiceError(
            f"{len(clean)} clean rows but {len(corrupt)} corrupt rows; pair them one to one"
        )
    for i, (c, k) in enumerate(zip(clean, corrupt, strict=True)):
        if len(c) != len(k):
            raise LayerChoiceError(
                f"clean row {i} has {len(c)} tokens, corrupt row {i} has {len(k)}; "
                "paired rows need equal lengths"
            )
    width = max(len(r) for r in clean)
    return _pad(clean, _pad_id(m), width), _pad(corrupt, _pad_id(m), width)


def _mask(positions: Positions, shape: tuple[int, int]) -> Bool[Tensor, "batch pos"]:
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        if tuple(positions.shape) != shape:
            raise LayerChoiceError(f"position mask has shape {tuple(positions.shape)}; expected {shape}")
        return positions.cpu()
    mask = torch.zeros(shape, dtype=torch.bool)
    if positions is None:
        return mask | True
    if not isinstance(positions, int | slice | Sequence):
        raise LayerChoiceError(
            f"positions={positions!r}; patching takes None, an int, a list of ints, a slice or a "
            "[batch, pos] mask (a selector: evaluate it on the rows into a mask first)"
        )
    index = positions if isinstance(positions, int | slice) else [int(p) for p in positions]
    try:
        mask[:, index] = True
    except IndexError:
        raise LayerChoiceError(f"positions {positions!r} are outside rows of {shape[1]} tokens") from None
    return mask


def _scalar(value: Any, where: str) -> Tensor:
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise LayerChoiceError(
            f"the metric returned {type(value).__name__} {where}; expected a scalar tensor"
        )
    return value.reshape(())


def attribution_patching(
    model,
    clean_rows: Sequence[Sequence[int]],
    corrupt_rows: Sequence[Sequence[int]],
    metric: LogitMetric,
    hooks: str | Sequence[str],
    positions: Positions = None,
) -> dict[str, float]:
    """First-order estimate of patching each hook's clean activation into the corrupt run.

    ``grad(metric at the corrupt run) . (clean act - corrupt act)``, summed over ``positions``
    and ``d_model``: one clean forward pass, one corrupt forward and backward pass for every
    hook at once. Exact when the metric is linear in the hook's activation downstream of it;
    otherwise an approximation whose ranking of layers :func:`activation_patching` checks.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        clean_rows: token ids of the clean runs.
        corrupt_rows: the paired corrupt runs (each as long as its clean row).
        metric: ``metric(logits [batch, pos, d_vocab]) -> scalar tensor``, differentiable; it
            sees rows right-padded to one width, so it should ignore positions past a row's end.
        hooks: hook names or globs.
        positions: which positions to patch (see :mod:`interp.hooks`); ``None``: all.

    Returns:
        Hook name -> estimated change of the metric.

    Raises:
        LayerChoiceError: unpaired rows, or a metric that is not a scalar tensor.
        HookNameError: an unknown hook.
    """
    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    clean, corrupt = _paired(m, clean_rows, corrupt_rows)
    mask = _mask(positions, tuple(corrupt.shape))
    with torch.no_grad(), record(m, names) as clean_acts:
        m.forward(clean)
    saved: dict[str, Tensor] = {}

    def keep(act: Tensor, name: str) -> Tensor:
        # a fresh node per hook, so that two hook points passing one tensor get their own gradient
        out = act.clone() if act.requires_grad else act.detach().clone().requires_grad_(True)
        saved[name] = out
        return out

    with torch.enable_grad(), installed_hooks(m, dict.fromkeys(names, keep)):
        value = _scalar(metric(m.forward(corrupt)), "at the corrupt run")
        grads = torch.autograd.grad(value, [saved[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads, strict=True):
        delta = clean_acts[n] - saved[n].detach()
        out[n] = 0.0 if g is None else float((g * delta)[mask.to(g.device)].double().sum())
    return out


def activation_patching(
    model,
    clean_rows: Sequence[Sequence[int]],
    corrupt_rows: Sequence[Sequence[int]],
    metric: LogitMetric,
    hooks: str | Sequence[str],
    positions: Positions = None,
) -> dict[str, float]:
    """The exact change of the metric when each hook's clean activation is patched into the
    corrupt run (one forward pass per hook); arguments as for :func:`attribution_patching`."""
    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    clean, corrupt = _paired(m, clean_rows, corrupt_rows)
    mask = _mask(positions, tuple(corrupt.shape))
    out = {}
    with torch.no_grad():
        with record(m, names) as clean_acts:
            m.forward(clean)
        base = float(_scalar(metric(m.forward(corrupt)), "at the corrupt run"))
        for n in names:
            with patch(m, {n: clean_acts[n][mask.to(clean_acts[n].device)]}, positions=mask):
                out[n] = float(_scalar(metric(m.forward(corrupt)), f"with {n!r} patched")) - base
    return out


def rank_hooks(effects: Mapping[str, float], absolute: bool = False) -> list[str]:
    """Hook names, largest effect first (``absolute``: largest magnitude first).

    Example:
        >>> rank_hooks({"a": 0.1, "b": -2.0, "c": 1.0}), rank_hooks({"a": 0.1, "b": -2.0}, absolute=True)
        (['c', 'a', 'b'], ['b', 'a'])
    """
    return sorted(effects, key=lambda n: -abs(effects[n]) if absolute else -effects[n])
