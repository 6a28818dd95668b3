"""Batched greedy and sampled generation with a key-value cache, for any ``HookedTransformer``."""

import math
from collections import defaultdict
from numbers import Real

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp.errors import GenerationError  # noqa: F401  (re-exported for interp.generation)


def check_sampling(temperature: float = 0.0, top_k: int | None = None, top_p: float = 1.0) -> None:
    """Refuse sampling settings out of range, naming the value and what is accepted.

    Raises:
        GenerationError: ``temperature`` is negative or not a number, ``top_k`` is not an
            integer >= 1 (or ``None``), or ``top_p`` is not in ``(0, 1]``.

    Example:
        >>> check_sampling(1.0, top_k=0)
        Traceback (most recent call last):
        ...
        interp.organism.generate.GenerationError: top_k=0; expected an integer >= 1, or None for no top-k cut
    """
    if not isinstance(temperature, Real) or isinstance(temperature, bool) or not temperature >= 0:
        raise GenerationError(f"temperature={temperature!r}; expected a number >= 0 (0 is greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise GenerationError(f"top_k={top_k!r}; expected an integer >= 1, or None for no top-k cut")
    if (
        isinstance(top_p, bool)
        or not isinstance(top_p, Real)
        or math.isnan(top_p)
        or not 0 < top_p <= 1
    ):
        raise GenerationError(f"top_p={top_p!r}; expected a number in (0, 1] (1 keeps every token)")


def check_forbid(forbid: list[int], d_vocab: int) -> list[int]:
    """The ``forbid`` ids as ints, refusing any outside ``0..d_vocab-1`` (negative ids included)."""
    ids = [int(i) for i in forbid]
    bad = [i for i in ids if not 0 <= i < d_vocab]
    if bad:
        raise GenerationError(
            f"forbid has ids {bad[:5]} outside the vocabulary; expected ids in 0..{d_vocab - 1}"
        )
    return ids


def sample_next(
    logits: Float[Tensor, "batch d_vocab"],
    temperature: float = 0.0,
    forbid: list[int] | None = None,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    top_p: float = 1.0,
) -> Int[Tensor, " batch"]:
    """Pick the next token: argmax at ``temperature == 0``, else sample from ``softmax(z / T)``.

    Sampling keeps, per row, the ``top_k`` most likely tokens, then the nucleus: the smallest
    set of the most likely tokens whose probabilities (after temperature and top-k) sum to at
    least ``top_p``; every other token gets probability zero and the rest is renormalised (the
    order of Hugging Face's ``generate``: temperature, top-k, top-p). Ties at the cut are broken
    by token id. Greedy decoding ignores both (the argmax is always kept).

    Args:
        logits: next-token logits.
        temperature: 0 for greedy decoding.
        forbid: token ids that may never be chosen (their logits are set to ``-inf``).
        generator: the random generator for sampling (for reproducible samples).
        top_k: keep only the ``top_k`` most likely tokens; ``None`` keeps all.
        top_p: nucleus mass in ``(0, 1]``; 1 keeps all.

    Returns:
        The chosen token ids.

    Raises:
        GenerationError: a setting out of range (see :func:`check_sampling`), or a ``forbid``
            id outside the vocabulary.

    Example:
        >>> sample_next(torch.tensor([[0.0, 2.0, 1.0]]), forbid=[1]).tolist()
        [2]
        >>> g = torch.Generator().manual_seed(0)
        >>> sample_next(torch.tensor([[0.0, 2.0, 1.0]]), 1.0, generator=g, top_k=1).tolist()
        [1]
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    if forbid:
        ids = check_forbid(forbid, logits.shape[-1])
        logits = logits.clone()
        logits[:, ids] = float("-inf")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_k is not None or top_p < 1:
        probs = _truncate(probs, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _truncate(probs: Tensor, top_k: int | None, top_p: float) -> Tensor:
    """Zero every token outside the top-k and the top-p nucleus, and renormalise."""
    # A stable sort on -p orders equal probabilities by token id, so the cut is deterministic.
    order = torch.sort(-probs, dim=-1, stable=True).indices
    sorted_p = probs.gather(-1, order)
    keep = torch.ones_like(sorted_p, dtype=torch.bool)
    if top_k is not None:
        keep[:, top_k:] = False
        sorted_p = sorted_p * keep
        sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)
    if top_p < 1:
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the more likely tokens
        keep &= before < top_p
    kept = torch.zeros_like(keep).scatter(-1, order, keep)
    probs = probs * kept
    return probs / probs.sum(-1, keepdim=True)


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
