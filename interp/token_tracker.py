"""The token ids each row has fed so far, kept through full passes and cached decoding steps.

:func:`track_tokens` installs two pre-hooks: one on the module every forward is called through
(it reads the call's ``attention_mask`` and the length of its key-value cache) and one on the
input embedding, which every path runs (a ``HookedTransformer``'s ``embed``; for an ``hf:``
bridge the Hugging Face embedding module, called by the bridge's forward and by the native
decoding steps of :mod:`interp.native_hooks` alike). From these the :class:`TokenTracker` keeps
the history of ids and padding, so a :class:`~interp.selectors.Selector` can be evaluated on the
tokens seen so far and applied to the positions of the current pass only::

    with track_tokens(model) as tracker:
        out = generate(model, prompts, max_new_tokens=8)
    tracker.history  # [batch, pos]: prompt and generated ids
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn

from interp.errors import NonCausalSelectorError, TrackingError
from interp.models import as_model
from interp.selectors import Selector

__all__ = ["TokenTracker", "track_tokens"]


_CACHE_KWARGS = ("past_kv_cache", "past_key_values", "cache")  # TransformerLens; Hugging Face 4 and 5


def _cache_length(cache: Any) -> int | None:
    """Positions a key-value cache holds (TransformerLens or Hugging Face), ``None`` if unknown."""
    mask = getattr(cache, "previous_attention_mask", None)
    if isinstance(mask, Tensor):
        return int(mask.shape[1])
    length = getattr(cache, "get_seq_length", None)
    return int(length()) if callable(length) else None


class TokenTracker:
    """The token ids each row has fed so far, updated at every forward pass (see :func:`track_tokens`).

    Which calls continue a history: a call through the model's forward that hands it a key-value
    cache of ``L`` positions continues the first ``L`` positions of the history (a call with no
    cache, or an empty one, starts a new history: a prompt pass or a full no-cache pass). When no
    cache is in sight (the embedding called directly, a cache of unknown kind), a rule of thumb
    decides: a call with one position appends (a cached step), one with more starts anew, and a
    change of batch size starts anew; a one-token prompt is then ambiguous: call :meth:`reset`
    before it.

    Attributes:
        history: ids ``[batch, pos]`` seen so far (``None`` before the first call).
        pad: ``True`` at padding, from the call's ``attention_mask`` (all real without one).
        n_new: how many positions the last call added (the last ``n_new`` columns).
        cached: whether the last call used a key-value cache (look-ahead selectors are refused).
        calls: forward passes seen.
    """

    def __init__(self) -> None:
        self.history: Tensor | None = None
        self.pad: Tensor | None = None
        self.n_new = 0
        self.cached = False
        self.calls = 0
        self._pending: tuple[Any, int | None, bool] | None = None
        self._fresh = False  # the embedding has seen the current call's ids
        self._masks: dict[Selector, Tensor] = {}

    def reset(self) -> None:
        """Forget the history: the next call starts a new one."""
        self.history, self.pad, self.n_new, self._fresh = None, None, 0, False

    def observe(
        self, ids: Int[Tensor, "batch pos"], attention_mask: Tensor | None = None,
        cache_length: int | None = None, cached: bool = False,
    ) -> None:
        """Take one call's ids (the embedding's pre-hook calls this; public for tests and other paths).

        Args:
            ids: the call's token ids.
            attention_mask: the call's mask; its last ``pos`` columns mark padding (0).
            cache_length: positions the call's key-value cache holds, ``None`` if unknown.
            cached: whether the call uses a key-value cache.

        Raises:
            TrackingError: the cache holds positions this tracker never saw.
        """
        rows, n = ids.shape
        pad = torch.zeros_like(ids, dtype=torch.bool)
        mask = attention_mask
        if isinstance(mask, Tensor) and mask.ndim == 2 and mask.shape[0] == rows and mask.shape[1] >= n:
            pad = attention_mask[:, -n:].to(ids.device) == 0
        h = self.history
        if cache_length is None:
            keep = h.shape[1] if n == 1 and h is not None and h.shape[0] == rows else 0
        else:
            keep = cache_length
            if keep and (h is None or h.shape[0] != rows or h.shape[1] < keep):
                seen = "nothing" if h is None else f"{h.shape[1]} positions of {h.shape[0]} rows"
                raise TrackingError(
                    f"the model's key-value cache holds {keep} positions of {rows} rows but the token "
                    f"tracker saw {seen}; enter the selector's context (a hook with positions=selector, "
                    "track_tokens) before the prompt pass"
                )
        if keep and h is not None and self.pad is not None:
            self.history = torch.cat([h[:, :keep], ids], dim=1)
            self.pad = torch.cat([self.pad[:, :keep], pad], dim=1)
        else:
            self.history, self.pad = ids, pad
        self.n_new, self.cached = n, cached or bool(keep)
        self.calls += 1
        self._fresh = True
        self._masks = {}

    def select(self, selector: Selector) -> Bool[Tensor, "batch pos"]:
        """The selector's mask over the last call's positions ``[batch, n_new]`` (computed once a call).

        Raises:
            NonCausalSelectorError: a look-ahead selector in a call that uses a key-value cache.
            TrackingError: no ids were seen for the current call.
        """
        if self.history is None or self.pad is None or not self._fresh:
            raise TrackingError(
                "a hook fired in a forward pass whose token ids the tracker did not see "
                "(inputs_embeds, or a call past the input embedding); pass token ids"
            )
        out = self._masks.get(selector)
        if out is None:
            if not selector.causal and self.cached:
                raise NonCausalSelectorError(
                    f"{selector!r} looks at later tokens, which a pass with a key-value cache does not "
                    "have; use it on full sequences without a cache, or use a causal selector "
                    "(AtTokens, AfterTokens, AfterPattern)"
                )
            start = max(0, self.history.shape[1] - self.n_new - selector.lookback) if selector.causal else 0
            out = selector.mask(self.history[:, start:], self.pad[:, start:])[:, -self.n_new :]
            self._masks[selector] = out
        return out

    def hook_mask(
        self, selector: Selector, act: Tensor, name: str
    ) -> tuple[Bool[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """The selected and the pad positions among the ``pos`` positions a hook sees.

        A hook sees the last ``act.shape[1]`` positions of the current call (all of them but where
        the model computes only the last, as ``unembed.*`` in an ``hf:`` prompt pass).

        Raises:
            TrackingError: ``act`` is not ``[batch, pos, ...]`` for this call's rows and positions.
            NonCausalSelectorError: see :meth:`select`.
        """
        picked = self.select(selector)
        pad = self.pad[:, -self.n_new :]  # type: ignore[index]
        if act.ndim < 3 or act.shape[0] != picked.shape[0] or act.shape[1] > picked.shape[1]:
            raise TrackingError(
                f"{name!r} has activations of shape {tuple(act.shape)}, which are not [batch, pos, ...] "
                f"for the {tuple(picked.shape)} (batch, new positions) of this pass; use a "
                "[batch, pos, ...] hook"
            )
        n = act.shape[1]
        return picked[:, picked.shape[1] - n :].to(act.device), pad[:, pad.shape[1] - n :]

    def _on_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        caches = [kwargs[k] for k in _CACHE_KWARGS if kwargs.get(k) is not None]
        cache = caches[0] if caches else None
        cached = cache is not None or kwargs.get("use_cache") is True
        self._pending = (kwargs.get("attention_mask"), 0 if cache is None else _cache_length(cache), cached)
        self._fresh = False

    def _on_embed(self, module: nn.Module, args: tuple) -> None:
        ids = args[0] if args else None
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.is_floating_point():
            return
        mask, length, cached = self._pending or (None, None, False)
        self._pending = None
        self.observe(ids, mask, length, cached)


def entry_modules(module: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(the module every forward is called through, the one that receives the token ids)."""
    from transformer_lens import HookedTransformer

    if isinstance(module, HookedTransformer):
        return module, module.embed
    hf = getattr(module, "original_model", None)
    if isinstance(hf, nn.Module) and hasattr(hf, "get_input_embeddings"):
        embed = hf.get_input_embeddings()
        # a bridge component wraps the Hugging Face module; the native path runs that module alone
        return hf, getattr(embed, "original_component", None) or embed
    raise TypeError(f"cannot track the tokens of a {type(module).__name__}; expected a HookedTransformer "
                    "or a TransformerBridge (an hf: model)")


@contextmanager
def track_tokens(model: Any) -> Iterator[TokenTracker]:
    """Keep the token ids each row has fed so far, through full passes and cached decoding steps.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``.

    Yields:
        A :class:`TokenTracker`, updated at each forward pass in the body; its hooks are removed on
        exit, exceptions included.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=9, act_fn="relu")
        >>> from interp.generation import generate
        >>> m = HookedTransformer(cfg)
        >>> with track_tokens(m) as tracker:
        ...     out = generate(m, [[1, 2, 3]], max_new_tokens=3)
        >>> tracker.history.shape, tracker.n_new
        (torch.Size([1, 5]), 1)
    """
    top, embed = entry_modules(as_model(model).module)
    tracker = TokenTracker()
    handles: list = []
    try:
        handles.append(top.register_forward_pre_hook(tracker._on_call, with_kwargs=True))
        handles.append(embed.register_forward_pre_hook(tracker._on_embed))
        yield tracker
    finally:
        for h in handles:
            h.remove()


