"""Choosing the next token from logits: greedy, or sampled with temperature, top-k and top-p.

Generic to every model: :mod:`interp.generation` (any loaded model) and the organism's own
generator (:mod:`interp.organism.generate`) both pick tokens here.
"""

import math
from numbers import Real

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import GenerationError


def check_sampling(temperature: float = 0.0, top_k: int | None = None, top_p: float = 1.0) -> None:
    """Refuse sampling settings out of range, naming the value and what is accepted.

    Raises:
        GenerationError: ``temperature`` is negative or not a number, ``top_k`` is not an
            integer >= 1 (or ``None``), or ``top_p`` is not in ``(0, 1]``.

    Example:
        >>> check_sampling(1.0, top_k=0)
        Traceback (most recent call last):
        ...
        interp.errors.GenerationError: top_k=0; expected an integer >= 1, or None for no top-k cut
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
