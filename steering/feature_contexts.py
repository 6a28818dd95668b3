"""Top-activating contexts of SAE features, rendered as text.

:func:`top_contexts` streams a cache once, keeps a running top-k of each chosen feature's
activation, and renders each position with its neighbours and the maximal token marked
``[[like this]]``: decoded text when a tokenizer is given (line breaks shown as ``\\n``), token
ids otherwise. Positions the SAE was trained without (attention sinks: see
:class:`steering.sae_io.SinkExclusion`) are not candidates.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.cache import Cache
from interp.results import format_table, save_json
from steering.sae_io import SinkExclusion, _as_cache, check_sae_fits, encode, kept_batches


@dataclass(frozen=True)
class Context:
    """One top-activating position of a feature, rendered as text."""

    feature: int
    activation: float
    row: int
    pos: int
    text: str


@dataclass(frozen=True)
class FeatureContexts:
    """Top-activating contexts per feature, highest first."""

    hook: str
    contexts: dict[int, list[Context]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "contexts": {str(f): [c.__dict__ for c in cs] for f, cs in self.contexts.items()},
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self, path)

    def __str__(self) -> str:
        rows = [[c.feature, c.activation, c.text] for cs in self.contexts.values() for c in cs]
        return format_table(["feature", "act", "context"], rows)


def top_contexts(
    sae,
    cache: "Cache | str | Path",
    hook: str,
    features: Sequence[int],
    k: int = 5,
    before: int = 10,
    after: int = 3,
    tokenizer=None,
    batch_size: int = 4096,
    exclude: SinkExclusion | None = None,
) -> FeatureContexts:
    """The ``k`` top-activating cached positions of each feature, as text with the token marked.

    Streams the cache once, keeping a running top-k (memory ``k * len(features)``).

    Args:
        sae: an ``sae_lens.SAE``.
        cache: an opened cache or its directory.
        hook: the hook the SAE reads.
        features: feature indices.
        k: contexts per feature (fewer where a feature fires at fewer positions).
        before / after: tokens of context on each side.
        tokenizer: anything with ``decode(ids)``; without one, token ids are shown.
        batch_size: positions encoded at once.
        exclude: positions never shown; default: what the SAE was trained without (its
            metadata), else position 0 and BOS tokens.

    Returns:
        A :class:`FeatureContexts`.

    Raises:
        SAEError: the SAE's ``d_in`` differs from the activations' size.

    Example:
        >>> top_contexts(None, "/nonexistent", "blocks.0.hook_resid_post", [0])
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    check_sae_fits(sae, cache, hook)
    feats = torch.as_tensor(list(features), dtype=torch.long)
    exclude = SinkExclusion.of_sae(sae) if exclude is None else exclude
    keep = exclude.keep_mask(cache) if exclude.excludes_anything else None
    index = torch.arange(cache.n_positions) if keep is None else keep.nonzero().squeeze(1)
    best_v = torch.full((0, len(feats)), -math.inf)
    best_i = torch.zeros((0, len(feats)), dtype=torch.long)
    seen = 0
    for batch in kept_batches(cache, hook, batch_size, keep):
        acts = encode(sae, batch).cpu()[:, feats]
        idx = index[seen : seen + len(acts)][:, None].expand_as(acts)
        vals, sel = torch.cat([best_v, acts]).topk(min(k, len(best_v) + len(acts)), dim=0)
        best_i, best_v = torch.cat([best_i, idx]).gather(0, sel), vals
        seen += len(acts)
    rows, positions = cache.rows, cache.positions

    out: dict[int, list[Context]] = {}
    for j, f in enumerate(feats.tolist()):
        out[f] = []
        for v, i in zip(best_v[:, j].tolist(), best_i[:, j].tolist(), strict=True):
            if v <= 0:
                continue  # a feature that never fired has no contexts
            row, pos = int(rows[i]), int(positions[i])
            toks = cache.row_tokens(row)
            left, right = toks[max(0, pos - before) : pos], toks[pos + 1 : pos + 1 + after]
            out[f].append(Context(f, float(v), row, pos, render(left, toks[pos], right, tokenizer)))
    return FeatureContexts(hook, out)


def render(left: list[int], token: int, right: list[int], tokenizer=None) -> str:
    """``left [[token]] right`` as one line of text, each token spelled as it reads in context.

    The marked token and the right side are decoded as what they add to the decoded prefix, so
    a tokenizer that spells a word's leading space into its token (GPT-2, Llama) shows it in
    place, outside the brackets (unless the token is only whitespace); line breaks show as
    ``\n``. Without a tokenizer, token ids.

    Example:
        >>> render([5, 6], 7, [8])
        '5 6 [[7]] 8'
    """
    if tokenizer is None:
        return " ".join([*map(str, left), f"[[{token}]]", *map(str, right)])
    head = tokenizer.decode(left) if left else ""
    mark = _spelled(tokenizer, left, [token])
    tail = _spelled(tokenizer, [*left, token], right) if right else ""
    stripped = mark.lstrip(" ") or mark  # a token that is only whitespace stays inside
    text = f"{head}{mark[: len(mark) - len(stripped)]}[[{stripped}]]{tail}"
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _spelled(tokenizer, before: list[int], ids: list[int]) -> str:
    """``ids`` as they read after ``before``: what they add to its decoding."""
    head = tokenizer.decode(before) if before else ""
    full = tokenizer.decode([*before, *ids])
    # a prefix that does not decode to a prefix (a multi-byte character cut in two): decode alone
    return full[len(head) :] if full.startswith(head) else tokenizer.decode(ids)
