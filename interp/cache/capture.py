"""One batched forward pass over token rows, keeping chosen positions at chosen hooks."""

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.hooks import hooks

# Sites whose activations are not laid out [batch, pos, ...] cannot be stored per position.
_NOT_PER_POSITION = ("hook_pattern", "hook_attn_scores")


class _StopForward(Exception):
    """Raised from the last needed hook to skip the rest of the forward pass."""


def check_per_position(names: Sequence[str]) -> None:
    bad = [n for n in names if n.endswith(_NOT_PER_POSITION)]
    if bad:
        raise ValueError(
            f"hooks {bad} hold [batch, head, query, key] attention maps, which a per-position "
            "cache cannot store; cache hook_q/hook_k/hook_z or residual/MLP sites instead"
        )


def pad_rows(
    rows: Sequence[Sequence[int]], kept: Sequence[Sequence[int]], pad_id: int
) -> tuple[Int[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
    """Right-pad rows (harmless under causal attention) and mark the kept positions."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, keep) in enumerate(zip(rows, kept, strict=True)):
        tokens[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, list(keep)] = True
    return tokens, mask


@torch.inference_mode()
def capture_rows(
    model,
    rows: Sequence[Sequence[int]],
    kept: Sequence[Sequence[int]],
    names: Sequence[str],
    early_stop: bool = True,
    dtype: torch.dtype | None = None,
) -> dict[str, Tensor]:
    """Run ``rows`` as one batch and return, per hook, the activations at the kept positions.

    Args:
        dtype: cast on the model's device before the copy to the CPU (halves the transfer for
            16-bit caches).

    Returns:
        hook name -> ``[n_kept, ...]`` on the CPU, rows in order, positions ascending.
    """
    tokens, mask = pad_rows(rows, kept, model.pad_token_id)
    device = model.device
    mask_dev = mask.to(device)
    masks = {mask_dev.device: mask_dev}  # one copy per device the layers sit on (device_map)
    out: dict[str, Tensor] = {}

    def keep(act: Tensor, name: str) -> None:
        if act.dim() < 2 or tuple(act.shape[:2]) != tuple(tokens.shape):
            raise ValueError(
                f"hook {name!r} gave activations of shape {tuple(act.shape)}; a cache needs "
                f"[batch, pos, ...] = {tuple(tokens.shape)} + (...)"
            )
        m = masks.get(act.device)
        if m is None:
            m = masks[act.device] = mask.to(act.device)
        kept = act[m].detach()
        out[name] = (kept if dtype is None else kept.to(dtype)).to("cpu")
        if early_stop and len(out) == len(names):
            raise _StopForward

    try:
        with hooks(model, dict.fromkeys(names, keep)):
            model.module(tokens.to(device))
    except _StopForward:
        pass
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"hooks {missing} did not fire during the forward pass")
    return out
