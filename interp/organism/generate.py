"""Batched greedy and sampled generation with a key-value cache, for any ``HookedTransformer``."""

from collections import defaultdict

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.sampling import (
    sample_next,  # the generic sampler; also re-exported as interp.organism.sample_next
)

__all__ = ["generate", "sample_next"]


@torch.inference_mode()
def _generate_equal(
    model: HookedTransformer,
    prompts: Int[Tensor, "batch pos"],
    max_new_tokens: int,
    temperature: float,
    stop_id: int | None,
    pad_id: int,
    forbid: list[int] | None,
    generator: torch.Generator | None,
) -> list[list[int]]:
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

    batch, length = prompts.shape
    steps = min(max_new_tokens, model.cfg.n_ctx - length)
    cache = TransformerLensKeyValueCache.init_cache(model.cfg, prompts.device, batch)
    logits = model(prompts, past_kv_cache=cache, attention_mask=torch.ones_like(prompts))
    done = torch.zeros(batch, dtype=torch.bool, device=prompts.device)
    out = []
    for _ in range(steps):
        nxt = sample_next(logits[:, -1], temperature, forbid, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        out.append(nxt)
        if stop_id is not None:
            done |= nxt == stop_id
        if bool(done.all()):
            break
        step = nxt[:, None]
        logits = model(step, past_kv_cache=cache, attention_mask=torch.ones_like(step))
    if not out:
        return [[] for _ in range(batch)]
    rows = torch.stack(out, 1).tolist()
    result = []
    for row in rows:
        if stop_id is not None and stop_id in row:
            row = row[: row.index(stop_id) + 1]
        result.append(row)
    return result


def generate(
    model: HookedTransformer,
    prompts: list[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    stop_id: int | None = None,
    pad_id: int = 0,
    forbid: list[int] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> list[list[int]]:
    """Continue each prompt, in batches of prompts of equal length, reusing keys and values.

    Args:
        model: the model (its ``cfg.n_ctx`` bounds prompt plus continuation).
        prompts: token ids of each prompt.
        max_new_tokens: most tokens to add per prompt.
        temperature: 0 for greedy decoding, else the sampling temperature.
        stop_id: a token that ends a continuation (kept as its last token).
        pad_id: fed to the model after a row has stopped (never returned).
        forbid: token ids that may never be generated.
        generator: random generator for sampling.
        batch_size: most prompts run together.

    Returns:
        The generated ids of each prompt (without the prompt), in the order of ``prompts``.

    Example:
        >>> from transformer_lens import HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> out = generate(HookedTransformer(cfg), [[1, 2], [3, 4, 0]], max_new_tokens=3)
        >>> [len(o) for o in out]
        [3, 3]
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}; expected >= 0")
    device = next(model.parameters()).device
    groups: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token")
        groups[len(p)].append(i)
    results: list[list[int]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        for _, idx in sorted(groups.items()):
            for k in range(0, len(idx), batch_size):
                chunk = idx[k : k + batch_size]
                toks = torch.tensor([prompts[i] for i in chunk], dtype=torch.long, device=device)
                outs = _generate_equal(
                    model, toks, max_new_tokens, temperature, stop_id, pad_id, forbid, generator
                )
                for i, o in zip(chunk, outs, strict=True):
                    results[i] = o
    finally:
        model.train(was_training)
    return results
