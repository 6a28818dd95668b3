"""What a crosscoder reads: several models' activations at one hook, aligned position by position.

The source is a :class:`~interp.cache.PairedCache` (the models' caches over the same token rows,
read one shard at a time) or, in memory, ``{label: activations [positions, d_model]}``.
:func:`describe_source` checks that the models line up and records where each one came from
(:func:`provenance`, the record the activation-difference lens keeps too); :func:`aligned_batches`
streams ``[batch, n_models, d_model]`` batches over the same positions of every model.
"""

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.architecture import architecture_of_cache
from interp.cache import Cache, PairedCache
from interp.errors import CrosscoderError
from steering.sae_io import kept_batches


def provenance(cache: Cache | None = None) -> dict[str, Any]:
    """The model and cache activations came from: ``spec``, ``fingerprint``, ``cache_id`` and
    ``architecture`` (all ``None`` for activations given in memory).

    Example:
        >>> provenance()
        {'spec': None, 'fingerprint': None, 'cache_id': None, 'architecture': None}
    """
    if cache is None:
        return {"spec": None, "fingerprint": None, "cache_id": None, "architecture": None}
    return {
        "spec": cache.manifest["model"]["spec"],
        "fingerprint": cache.model_fingerprint,
        "cache_id": cache.id,
        "architecture": architecture_of_cache(cache),
    }


def describe_source(
    source: "PairedCache | Mapping[str, Tensor]", hook: str | None, labels: Sequence[str] | None
) -> tuple[list[str], int, dict[str, dict[str, Any]]]:
    """Labels, d_model and per-label :func:`provenance` of a source.

    Raises:
        CrosscoderError: fewer than two models, a model or hook the source lacks, caches over
            other rows or shards, or activations of different shapes.
    """
    if isinstance(source, PairedCache):
        labels = list(labels) if labels is not None else source.labels
        missing = [lab for lab in labels if lab not in source.labels]
        if missing:
            raise CrosscoderError(
                f"the paired cache has no model {missing[0]!r}; its labels are {source.labels}"
            )
        if hook is None:
            raise CrosscoderError("a hook is needed to read a paired cache; pass hook=")
        caches = {lab: source[lab] for lab in labels}
        for lab, cache in caches.items():
            if hook not in cache.hooks:
                raise CrosscoderError(f"cache {lab!r} has no hook {hook!r}; its hooks are {cache.hooks}")
        layouts = {lab: _layout(c) for lab, c in caches.items()}
        for lab, layout in layouts.items():
            if layout != layouts[labels[0]]:  # batches are zipped shard by shard: the shards must match
                raise CrosscoderError(
                    f"caches {labels[0]!r} and {lab!r} are not over the same token rows in the same shards"
                )
        widths = {lab: math.prod(c[hook].shape[1:]) for lab, c in caches.items()}
        models = {lab: provenance(c) for lab, c in caches.items()}
    else:
        labels = list(labels) if labels is not None else list(source)
        missing = [lab for lab in labels if lab not in source]
        if missing:
            raise CrosscoderError(f"no activations for model {missing[0]!r}; given {list(source)}")
        shapes = {lab: tuple(source[lab].shape) for lab in labels}
        if any(len(s) != 2 for s in shapes.values()):
            raise CrosscoderError(f"activations must be [positions, d_model] per model; got shapes {shapes}")
        rows = {s[0] for s in shapes.values()}
        if len(rows) > 1:
            raise CrosscoderError(f"the models' activations cover different numbers of positions: {shapes}")
        widths = {lab: s[1] for lab, s in shapes.items()}
        models = {lab: provenance() for lab in labels}
    if len(labels) < 2:
        raise CrosscoderError(f"a crosscoder needs two or more models; got {labels}")
    if len(set(widths.values())) > 1:
        raise CrosscoderError(f"the models' activations at {hook!r} differ in d_model: {widths}")
    return labels, next(iter(widths.values())), models


def _layout(cache: Cache) -> tuple:
    return cache.manifest["prompts"]["sha256"], [s["n_positions"] for s in cache.manifest["shards"]]


def aligned_batches(
    source: "PairedCache | Mapping[str, Tensor]",
    hook: str | None,
    labels: Sequence[str],
    batch_size: int,
    seed: int,
    keep: Tensor | None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[Float[Tensor, "batch n_models d_model"]]:
    """One pass of aligned float batches; ``keep`` masks a paired cache's positions (``None``: all).

    Example:
        >>> acts = {"base": torch.zeros(5, 3), "tuned": torch.ones(5, 3)}
        >>> [b.shape for b in aligned_batches(acts, None, ["base", "tuned"], 2, 0, None)]
        [torch.Size([2, 2, 3]), torch.Size([2, 2, 3])]
    """
    if isinstance(source, PairedCache):
        # the same seed and keep mask over identically sharded caches give the same permutation
        iters = [
            kept_batches(source[lab], hook, batch_size, keep, shuffle, seed, drop_last) for lab in labels
        ]
        for parts in zip(*iters, strict=True):
            yield torch.stack([p.reshape(len(p), -1).float() for p in parts], dim=1)
        return
    n = len(source[labels[0]])
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i : i + batch_size]
        yield torch.stack([source[lab][idx].float() for lab in labels], dim=1)
