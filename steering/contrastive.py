"""Steering directions from contrasts: difference of means (CAA) and PCA of paired differences.

:func:`from_prompts` builds a :class:`~steering.steering_vector.SteeringVector` from contrastive
prompts (one batched forward pass per batch, activations recorded with
:func:`interp.hooks.record`); :func:`from_cache` from labelled positions of a disk cache,
streamed one batch at a time.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from interp.architecture import architecture_of_cache
from interp.errors import HookNameError
from interp.hooks import record, resolve_hook_names
from steering.steering_vector import SteeringVector, model_meta

PromptPositions = Literal["last", "all"] | int | Sequence[int]


def mean_difference(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, "d_model"]:  # noqa: F821
    """Difference of means (CAA): ``mean(positive) - mean(negative)``.

    Raises:
        ValueError: an empty set or sets of different widths.

    Example:
        >>> mean_difference(torch.tensor([[2.0, 0.0], [4.0, 0.0]]), torch.tensor([[0.0, 1.0]])).tolist()
        [3.0, -1.0]
    """
    if positive.shape[-1] != negative.shape[-1] or not len(positive) or not len(negative):
        raise ValueError(
            f"need non-empty sets of equal width, got {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    return positive.double().mean(0).float() - negative.double().mean(0).float()


def pca_difference(
    positive: Float[Tensor, "n d_model"], negative: Float[Tensor, "m d_model"]
) -> Float[Tensor, "d_model"]:  # noqa: F821
    """First principal component of the paired differences ``positive[i] - negative[i]`` (``n == m``).

    The component is that of the differences and their negations together (uncentred, so a
    shared offset is not removed), i.e. the top right-singular vector of the difference matrix;
    its sign is aligned with the mean difference and its length is the mean difference's
    projection on it, so that ``scale`` means the same as for :func:`mean_difference`.

    Raises:
        ValueError: sets of different shapes, or empty.

    Example:
        >>> pos = torch.tensor([[3.0, 0.0], [2.0, 0.0], [-1.0, 0.0]])
        >>> pca_difference(pos, torch.zeros(3, 2)).tolist()
        [1.3333333730697632, 0.0]
    """
    if positive.shape != negative.shape or not len(positive):
        raise ValueError(
            f"paired sets must have one shape, got {tuple(positive.shape)} and {tuple(negative.shape)}"
        )
    diffs = positive.double() - negative.double()
    pc = torch.linalg.svd(diffs, full_matrices=False).Vh[0]
    mean = diffs.mean(0)
    proj = float(mean @ pc)
    if proj < 0:
        pc, proj = -pc, -proj
    return (pc * proj).float()


def _tokenize(model, prompts: Sequence[str | Sequence[int]]) -> list[list[int]]:
    rows = [list(model.encode(p)) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
    empty = [i for i, r in enumerate(rows) if not r]
    if empty:
        raise ValueError(f"prompts {empty} are empty; every prompt needs at least one token")
    return rows


def _position_mask(lengths: list[int], width: int, positions: PromptPositions) -> Bool[Tensor, "batch pos"]:
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for i, n in enumerate(lengths):
        if positions == "last":
            idx = [n - 1]
        elif positions == "all":
            idx = list(range(n))
        else:
            raw = [positions] if isinstance(positions, int) else list(positions)
            bad = [p for p in raw if not -n <= p < n]
            if bad:
                raise ValueError(f"positions {bad} are outside prompt {i} of {n} tokens")
            idx = [p % n for p in raw]
        mask[i, idx] = True
    return mask


def prompt_activations(
    model,
    prompts: Sequence[str | Sequence[int]],
    hooks: str | Sequence[str],
    positions: PromptPositions = "last",
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Float[Tensor, "n d_model"]]:
    """Each prompt's activation at each hook, averaged over its selected positions.

    Prompts are right-padded into batches (causal attention: padding after a token does not
    change it), one forward pass per batch, recorded with :func:`interp.hooks.record`.

    Args:
        model: a :class:`interp.models.Model` (its tokenizer encodes strings) or module.
        prompts: strings or token-id lists.
        hooks: hook names or globs.
        positions: ``"last"`` token, ``"all"`` tokens, or indices into each prompt (negative from
            its end).
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        hook name -> ``[n_prompts, d_model]`` (float32, on the CPU).

    Raises:
        ValueError: an empty prompt or a position outside a prompt.
        HookNameError: an unknown hook.
    """
    from tqdm.auto import tqdm

    from interp.models import as_model

    m = as_model(model)
    names = resolve_hook_names(m, hooks)
    rows = _tokenize(m, prompts)
    if positions not in ("last", "all") and not isinstance(positions, int | Sequence):
        raise ValueError(f"positions={positions!r}; expected 'last', 'all', an int or a list of ints")
    out: dict[str, list[Tensor]] = {n: [] for n in names}
    pad = m.pad_token_id if m.tokenizer is not None else 0
    for start in tqdm(range(0, len(rows), batch_size), disable=not progress, desc="activations"):
        chunk = rows[start : start + batch_size]
        lengths = [len(r) for r in chunk]
        width = max(lengths)
        toks = torch.tensor([r + [pad] * (width - len(r)) for r in chunk], dtype=torch.long)
        mask = _position_mask(lengths, width, positions)
        weights = (mask / mask.sum(1, keepdim=True)).float()
        with torch.inference_mode(), record(m, names, device="cpu") as acts:
            m.forward(toks)
        for n in names:
            if n not in acts:
                raise HookNameError(
                    f"hook {n!r} did not fire during the forward pass (it exists but this model "
                    "never runs it); choose a hook on the residual stream, attention or MLP output"
                )
            out[n].append(torch.einsum("bp,bpd->bd", weights, acts[n].float()))
    return {n: torch.cat(v) for n, v in out.items()}


def _provenance(model, prompts: Sequence[str | Sequence[int]]) -> dict[str, Any]:
    from interp.fingerprint import hash_token_rows
    from interp.models import as_model

    rows = _tokenize(as_model(model), prompts)
    return {"count": len(rows), "sha256": hash_token_rows(rows)}


def from_prompts(
    model,
    positive: Sequence[str | Sequence[int]],
    negative: Sequence[str | Sequence[int]],
    hooks: str | Sequence[str],
    method: Literal["mean", "pca"] = "mean",
    positions: PromptPositions = "last",
    batch_size: int = 32,
    progress: bool = False,
) -> SteeringVector:
    """A steering vector from contrastive prompts: difference of means (CAA) or PCA of pairs.

    Args:
        model: the model (a :class:`interp.models.Model` or module).
        positive: prompts showing the behaviour.
        negative: prompts without it (for ``pca``: paired with ``positive``, same count).
        hooks: hook names or globs (see :func:`layer_hooks`).
        method: ``mean`` (:func:`mean_difference`) or ``pca`` (:func:`pca_difference`).
        positions: which positions of each prompt (see :func:`prompt_activations`).
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        A :class:`SteeringVector` with the model's identity and the prompts' hashes.

    Raises:
        ValueError: an unknown method, empty sets, or unpaired sets for ``pca``.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=4, n_ctx=8, d_head=2, d_vocab=5, act_fn="relu")
        >>> v = from_prompts(HookedTransformer(cfg), [[1, 2], [1, 3]], [[4, 2]], "blocks.0.hook_resid_post")
        >>> v.hook_names, v.meta["method"]
        (('blocks.0.hook_resid_post',), 'mean')
    """
    if method not in ("mean", "pca"):
        raise ValueError(f"method={method!r}; expected 'mean' or 'pca'")
    if not positive or not negative:
        raise ValueError(f"need positive and negative prompts, got {len(positive)} and {len(negative)}")
    if method == "pca" and len(positive) != len(negative):
        raise ValueError(f"pca pairs prompts: got {len(positive)} positive and {len(negative)} negative")
    acts = prompt_activations(model, [*positive, *negative], hooks, positions, batch_size, progress)
    n = len(positive)
    fn = mean_difference if method == "mean" else pca_difference
    directions = {h: fn(a[:n], a[n:]) for h, a in acts.items()}
    meta = {
        "method": method,
        "d_model": next(iter(directions.values())).shape[0],
        "model": model_meta(model),
        "provenance": {
            "source": "prompts",
            "positions": positions if isinstance(positions, str | int) else list(positions),
            "positive": _provenance(model, positive),
            "negative": _provenance(model, negative),
        },
    }
    return SteeringVector(directions, meta)


def from_cache(
    cache,
    labels: Bool[Tensor, "n"],  # noqa: F821
    hooks: Sequence[str] | None = None,
    batch_size: int = 65536,
) -> SteeringVector:
    """Difference of means between labelled (``True``) and other cached positions.

    Streams each hook's activations in cache order, one batch at a time (bounded memory).

    Args:
        cache: an opened :class:`interp.cache.Cache` (or its directory).
        labels: one boolean per cached position (``cache.n_positions``).
        hooks: which of the cache's hooks (default: all).
        batch_size: positions read at a time.

    Returns:
        A :class:`SteeringVector` citing the cache ID and the model it was built from.

    Raises:
        ValueError: labels of the wrong length, or a class with no position.
        HookNameError: a hook the cache lacks.
    """
    from interp.cache import open_cache
    from interp.fingerprint import sha256_json

    if isinstance(cache, str | Path):
        cache = open_cache(cache)
    labels = torch.as_tensor(labels).bool().reshape(-1)
    if len(labels) != cache.n_positions:
        raise ValueError(f"{len(labels)} labels for a cache of {cache.n_positions} positions")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise ValueError(f"labels mark {n_pos} of {len(labels)} positions; both classes need some")
    hooks = list(hooks or cache.hooks)
    for h in hooks:
        cache[h]  # raises HookNameError listing the cache's hooks
    directions = {}
    for h in hooks:
        sums = torch.zeros(2, cache[h].shape[-1], dtype=torch.float64)
        start = 0
        for batch in cache.batches(h, batch_size):
            lab = labels[start : start + len(batch)]
            sums[0] += batch[lab].double().sum(0)
            sums[1] += batch[~lab].double().sum(0)
            start += len(batch)
        directions[h] = (sums[0] / n_pos - sums[1] / (len(labels) - n_pos)).float()
    m = cache.manifest["model"]
    meta = {
        "method": "mean",
        "d_model": next(iter(directions.values())).shape[0],
        "model": {
            "spec": m["spec"],
            "fingerprint": m["fingerprint"],
            "architecture": architecture_of_cache(cache),
        },
        "provenance": {
            "source": "cache",
            "cache_id": cache.id,
            "labels": {
                "positive": n_pos,
                "negative": len(labels) - n_pos,
                "sha256": sha256_json(labels.int().tolist()),
            },
        },
    }
    return SteeringVector(directions, meta)
