"""Steer or record at positions chosen by the tokens seen so far, the same with or without a KV cache.

A *selector* picks positions from token ids: ``AtTokens(ids)`` (the position holds one of these
tokens), ``AfterTokens(ids, within=N)`` (one of them lies 1..N positions earlier),
``AfterPattern(pattern)`` (the tokens ending here spell a pattern; an element may be an id, a set
of ids, or ``None`` for any token), ``Every()``, and ``Not`` / ``And`` / ``Or`` of those (also
``~a``, ``a & b``, ``a | b``). Padding is never selected. These are *causal*: whether position
``t`` is picked depends on tokens ``<= t`` only, so a cached decoding step, which sees one new
token, picks it exactly as a recomputation of the whole sequence would. ``BeforeTokens(ids,
within=N)`` looks ahead (N positions before a marker): for contrasts on full sequences only, and
refused with :class:`NonCausalSelectorError` in any pass that uses a key-value cache.

:func:`track_tokens` keeps the ids each row has fed so far (a pre-hook on the input embedding,
which every path runs: a ``HookedTransformer``'s ``embed``; for an ``hf:`` bridge the Hugging
Face embedding module, called by the bridge's forward and by the native decoding steps of
:mod:`interp.native_hooks` alike). :func:`steer_at` and :func:`record_at` evaluate a selector on
that history at each forward pass and act on the positions of that pass only::

    with steer_at(model, "blocks.1.hook_resid_post", v, AfterPattern([gt, nodes]), scale=4.0) as s:
        out = generate(model, prompts, max_new_tokens=40)
    s.stats.share  # steered positions / non-pad positions
"""

import functools
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from interp.errors import InterpError, ModelMismatchError
from interp.hooks import hooks, resolve_hook_names
from interp.models import as_model

__all__ = [
    "AfterPattern", "AfterTokens", "And", "AtTokens", "BeforeTokens", "Every", "NonCausalSelectorError",
    "Not", "Or", "Recording", "SelectionStats", "Selector", "SelectorError", "Steering", "TokenTracker",
    "TrackingError", "record_at", "steer_at", "track_tokens",
]


class SelectorError(InterpError, ValueError):
    """A selector built from unusable values (an empty id set, a negative window, ...)."""


class NonCausalSelectorError(SelectorError):
    """A look-ahead selector used in a pass with a key-value cache, where later tokens do not exist yet."""


class TrackingError(SelectorError):
    """Token history that does not fit the forward pass (tracking began after the prompt pass, ...)."""


def _ids(value: Any, what: str) -> tuple[int, ...]:
    items = [value] if isinstance(value, int) else list(value) if isinstance(value, Iterable) else [value]
    if not items or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
        raise SelectorError(
            f"{what}={value!r} is not usable; expected one token id or a non-empty set of ids >= 0"
        )
    return tuple(sorted(set(items)))


def _within(value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise SelectorError(f"within={value!r} is not usable; expected an integer >= {least}")
    return value


def _spread(hits: Bool[Tensor, "batch pos"], lo: int, hi: int) -> Bool[Tensor, "batch pos"]:
    """Position ``t`` is set when a hit lies at ``t - hi .. t - lo`` (negative offsets: after ``t``)."""
    n = hits.shape[1]
    if hi - lo < _SHIFTS:  # a few shifted ORs beat the cumulative sum on short windows
        out = torch.zeros_like(hits)
        for k in range(lo, hi + 1):
            if abs(k) >= n:
                continue
            if k >= 0:
                out[:, k:] |= hits[:, : n - k]
            else:
                out[:, : n + k] |= hits[:, -k:]
        return out
    count = F.pad(hits.long().cumsum(1), (1, 0))  # count[:, j] = hits before position j
    t = torch.arange(n, device=hits.device)
    return (count[:, (t - lo + 1).clamp(0, n)] - count[:, (t - hi).clamp(0, n)]) > 0


_SHIFTS = 8
_TABLE_LIMIT = 1 << 22  # ids beyond any vocabulary: torch.isin rather than a table that large


@functools.lru_cache(maxsize=256)
def _table(ids: tuple[int, ...], device: torch.device) -> Tensor:
    """``table[i]`` says whether id ``i`` is in ``ids``; the last entry stands for every larger id."""
    table = torch.zeros(max(ids) + 2, dtype=torch.bool)
    table[list(ids)] = True
    return table.to(device)


def _is_in(history: Tensor, ids: tuple[int, ...]) -> Tensor:
    if ids[-1] >= _TABLE_LIMIT:  # ids are sorted
        return torch.isin(history, history.new_tensor(ids))
    table = _table(ids, history.device)  # a lookup beats torch.isin about fourfold on short rows
    return table[history.clamp(max=table.shape[0] - 1)]


class Selector:
    """Picks positions from token ids: ``mask(history, pad_mask)``; pads are never picked.

    ``causal`` says whether position ``t`` depends on tokens ``<= t`` only; ``lookback`` how many
    earlier positions it reads (so a cached step evaluates a short window, not the whole history).
    """

    causal: ClassVar[bool] = True

    @property
    def lookback(self) -> int:
        return 0

    def mask(
        self, history: Int[Tensor, "batch pos"], pad_mask: Bool[Tensor, "batch pos"] | None = None
    ) -> Bool[Tensor, "batch pos"]:
        """The positions picked: ``True`` where selected, never at padding.

        Args:
            history: token ids ``[batch, pos]``.
            pad_mask: ``True`` at padding positions; ``None`` for none.

        Returns:
            A boolean mask of the shape of ``history``.

        Example:
            >>> AfterTokens([7], within=2).mask(torch.tensor([[7, 1, 2, 3]]))
            tensor([[False,  True,  True, False]])
        """
        real = torch.ones_like(history, dtype=torch.bool) if pad_mask is None else ~pad_mask.bool()
        return self._hits(history, real) & real

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        raise NotImplementedError

    def __invert__(self) -> "Not":
        return Not(self)

    def __and__(self, other: "Selector") -> "And":
        return And(self, other)

    def __or__(self, other: "Selector") -> "Or":
        return Or(self, other)


@dataclass(frozen=True)
class Every(Selector):
    """Every non-pad position."""

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        return real


@dataclass(frozen=True)
class AtTokens(Selector):
    """Positions holding one of ``ids``."""

    ids: Iterable[int] | int  # stored as a sorted tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _ids(self.ids, "ids"))

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        return _is_in(history, self.ids)


@dataclass(frozen=True)
class AfterTokens(Selector):
    """Positions 1..``within`` after a (non-pad) token of ``ids``; the marker itself is not picked."""

    ids: Iterable[int] | int  # stored as a sorted tuple
    within: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _ids(self.ids, "ids"))
        _within(self.within, 1)

    @property
    def lookback(self) -> int:
        return self.within

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        return _spread(_is_in(history, self.ids) & real, 1, self.within)


@dataclass(frozen=True)
class AfterPattern(Selector):
    """Positions where the tokens ending there spell ``pattern`` (and the ``within`` positions after).

    Each element of ``pattern`` is a token id, a set of ids (any of them), or ``None`` (any token);
    every matched token must be real (not padding). ``within=0`` picks the pattern's last token,
    where the model reads the whole pattern and predicts what follows.
    """

    pattern: Iterable[int | Iterable[int] | None]  # stored as a tuple of id tuples and None
    within: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.pattern, str | bytes) or not isinstance(self.pattern, Iterable):
            raise SelectorError(
                f"pattern={self.pattern!r} is not usable; expected a sequence of ids, id sets or None"
            )
        elems = tuple(None if p is None else _ids(p, "pattern element") for p in self.pattern)
        if not elems or all(p is None for p in elems):
            raise SelectorError(
                f"pattern={self.pattern!r} is not usable; expected at least one token id in it"
            )
        object.__setattr__(self, "pattern", elems)
        _within(self.within, 0)

    @property
    def lookback(self) -> int:
        return len(self.pattern) - 1 + self.within

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        n = history.shape[1]
        ends = real.clone()
        for k, want in enumerate(self.pattern):
            shift = len(self.pattern) - 1 - k  # element k sits `shift` positions before the end
            if shift >= n:
                ends[:] = False
                continue
            ok = real if want is None else real & _is_in(history, want)
            ends[:, :shift] = False
            ends[:, shift:] &= ok[:, : n - shift]
        return _spread(ends, 0, self.within)


@dataclass(frozen=True)
class BeforeTokens(Selector):
    """Positions 1..``within`` before a token of ``ids`` (looks ahead: full sequences only)."""

    causal: ClassVar[bool] = False
    ids: Iterable[int] | int  # stored as a sorted tuple
    within: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _ids(self.ids, "ids"))
        _within(self.within, 1)

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        return _spread(_is_in(history, self.ids) & real, -self.within, -1)


def _parts(parts: tuple, name: str) -> tuple[Selector, ...]:
    if len(parts) < (1 if name == "Not" else 2) or not all(isinstance(p, Selector) for p in parts):
        raise SelectorError(f"{name}{parts!r} is not usable; expected selectors (two or more for And/Or)")
    return tuple(parts)


class _Join(Selector):
    """Two or more selectors joined (``parts``); causal when every part is."""

    parts: tuple[Selector, ...]

    def __init__(self, *parts: Selector) -> None:
        object.__setattr__(self, "parts", _parts(parts, type(self).__name__))

    @property
    def causal(self) -> bool:  # type: ignore[override]
        return all(p.causal for p in self.parts)

    @property
    def lookback(self) -> int:
        return max(p.lookback for p in self.parts)


@dataclass(frozen=True, init=False)
class And(_Join):
    """Positions every part picks."""

    parts: tuple[Selector, ...]

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        out = self.parts[0]._hits(history, real)
        for p in self.parts[1:]:
            out = out & p._hits(history, real)
        return out


@dataclass(frozen=True, init=False)
class Or(_Join):
    """Positions any part picks."""

    parts: tuple[Selector, ...]

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        out = self.parts[0]._hits(history, real)
        for p in self.parts[1:]:
            out = out | p._hits(history, real)
        return out


@dataclass(frozen=True)
class Not(Selector):
    """Non-pad positions ``part`` does not pick."""

    part: Selector

    def __post_init__(self) -> None:
        _parts((self.part,), "Not")

    @property
    def causal(self) -> bool:  # type: ignore[override]
        return self.part.causal

    @property
    def lookback(self) -> int:
        return self.part.lookback

    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        return ~self.part._hits(history, real)


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
                    f"tracker saw {seen}; enter track_tokens / steer_at / record_at before the prompt pass"
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


def _entry_modules(module: nn.Module) -> tuple[nn.Module, nn.Module]:
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
    top, embed = _entry_modules(as_model(model).module)
    tracker = TokenTracker()
    handles: list = []
    try:
        handles.append(top.register_forward_pre_hook(tracker._on_call, with_kwargs=True))
        handles.append(embed.register_forward_pre_hook(tracker._on_embed))
        yield tracker
    finally:
        for h in handles:
            h.remove()


@dataclass
class SelectionStats:
    """How many non-pad positions the forward passes had, and how many were selected."""

    _selected: Tensor | int = 0  # device tensors: no synchronisation per step
    _real: Tensor | int = 0
    calls: int = 0
    _last: int = -1  # the tracker's call last counted

    def add(self, picked: Tensor, pad: Tensor, call: int) -> bool:
        """Count one pass's positions once, however many hooks fire in it; whether it counted."""
        if call == self._last:
            return False
        self._selected = self._selected + picked.sum()
        self._real = self._real + (~pad).sum()
        self.calls, self._last = self.calls + 1, call
        return True

    @property
    def selected(self) -> int:
        return int(self._selected)

    @property
    def real(self) -> int:
        return int(self._real)

    @property
    def share(self) -> float:
        """Selected / non-pad positions (``nan`` before any pass)."""
        return self.selected / self.real if self.real else math.nan

    def __str__(self) -> str:
        return f"{self.selected} of {self.real} positions selected ({self.share:.1%})"


@dataclass
class Steering:
    """What :func:`steer_at` yields: the tracker and the count of steered positions."""

    tracker: TokenTracker
    stats: SelectionStats = field(default_factory=SelectionStats)


def _call_mask(tracker: TokenTracker, selector: Selector, act: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """The selected and the pad positions among the ``pos`` positions a hook sees (the call's last ones)."""
    picked = tracker.select(selector)
    pad = tracker.pad[:, -tracker.n_new :]  # type: ignore[index]
    if act.ndim < 3 or act.shape[0] != picked.shape[0] or act.shape[1] > picked.shape[1]:
        raise TrackingError(
            f"{name!r} has activations of shape {tuple(act.shape)}, which are not [batch, pos, ...] for "
            f"the {tuple(picked.shape)} (batch, new positions) of this pass; use a [batch, pos, ...] hook"
        )
    n = act.shape[1]
    return picked[:, picked.shape[1] - n :].to(act.device), pad[:, pad.shape[1] - n :]


@contextmanager
def steer_at(
    model: Any,
    hook: str | Iterable[str],
    vector: Float[Tensor, "..."],
    selector: Selector,
    scale: float = 1.0,
) -> Iterator[Steering]:
    """Add ``scale * vector`` at ``hook`` only where ``selector`` picks, in full passes and cached steps.

    At each forward pass the selector is evaluated on the ids seen so far and the vector is added
    at the pass's own positions it picks (all of them in a full pass, the new token in a cached
    step), so cached generation steers exactly as recomputing each sequence in full would.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``.
        hook: hook name(s) or glob pattern(s), e.g. ``blocks.3.hook_resid_post``.
        vector: ``[d_model]`` (or anything broadcasting to a hook's ``act.shape[2:]``).
        selector: a causal :class:`Selector` (look-ahead ones only in passes without a cache).
        scale: multiplies the vector.

    Yields:
        A :class:`Steering`; ``.stats`` counts steered / non-pad positions over the body's passes,
        once a pass, among the positions the hook sees (the last one only where the model computes
        just that, as ``unembed.*`` in an ``hf:`` prompt pass). A row that stopped and is fed
        padding still counts as real then: the decoder gives it an attention mask of 1.

    Raises:
        HookNameError: an unknown hook, before anything is registered.
        SelectorError: ``selector`` is not a selector or ``scale`` is not finite.
        ModelMismatchError: the vector's width differs from a hook's activations (at the pass).
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=9, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> with steer_at(m, "blocks.0.hook_resid_post", torch.ones(8), AfterTokens([3])) as s:
        ...     _ = m(torch.tensor([[1, 3, 5, 3]]))
        >>> str(s.stats)
        '1 of 4 positions selected (25.0%)'
    """
    _check(selector, scale)
    names = resolve_hook_names(model, hook)
    deltas: dict[tuple, Tensor] = {}

    with track_tokens(model) as tracker:
        steering = Steering(tracker)

        def fn(act: Tensor, name: str) -> Tensor:
            if vector.shape[-1] != act.shape[-1]:
                raise ModelMismatchError(
                    f"vector of size {vector.shape[-1]} cannot be added at {name!r}, whose activations "
                    f"have size {act.shape[-1]}"
                )
            picked, pad = _call_mask(tracker, selector, act, name)
            steering.stats.add(picked, pad, tracker.calls)
            key = (act.device, act.dtype)
            if key not in deltas:
                deltas[key] = scale * vector.to(device=act.device, dtype=act.dtype)
            where = picked.reshape(*picked.shape, *[1] * (act.ndim - 2))
            return torch.where(where, act + deltas[key], act)  # elsewhere exactly act, even for inf

        with hooks(model, dict.fromkeys(names, fn)):
            yield steering


def _check(selector: Any, scale: Any) -> None:
    if not isinstance(selector, Selector):
        raise SelectorError(
            f"selector={selector!r} is not a Selector; expected e.g. AtTokens([...]) or Every()"
        )
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise SelectorError(f"scale={scale!r} is not usable; expected a finite number")


class Recording:
    """What :func:`record_at` yields: the selected activations of every pass, in order.

    ``rec[name]`` is ``[n, ...]`` (one row per selected position, pass by pass, row-major), with
    ``rec.rows`` and ``rec.positions`` (``[n]``: batch row, and position in the row's history
    counting its left padding) beside it; ``rec.stats`` counts selected / non-pad positions.
    """

    def __init__(self) -> None:
        self.stats = SelectionStats()
        self._acts: dict[str, list[Tensor]] = {}
        self._rows: list[Tensor] = []
        self._positions: list[Tensor] = []

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._acts:
            raise KeyError(f"no activations recorded at {name!r}; recorded: {sorted(self._acts)}")
        return torch.cat(self._acts[name])

    def keys(self) -> list[str]:
        return list(self._acts)

    @property
    def rows(self) -> Int[Tensor, " n"]:
        return torch.cat(self._rows) if self._rows else torch.zeros(0, dtype=torch.long)

    @property
    def positions(self) -> Int[Tensor, " n"]:
        return torch.cat(self._positions) if self._positions else torch.zeros(0, dtype=torch.long)


@contextmanager
def record_at(
    model: Any, names: str | Iterable[str], selector: Selector, device: str | None = None
) -> Iterator[Recording]:
    """Record activations (detached) only at the positions ``selector`` picks, over every pass in the body.

    Args:
        model: a :class:`interp.models.Model`, ``HookedTransformer`` or ``TransformerBridge``.
        names: hook names or glob patterns.
        selector: any :class:`Selector`; a look-ahead one (``BeforeTokens``) in passes without a cache.
        device: move the recorded tensors there (e.g. ``"cpu"``).

    Yields:
        A :class:`Recording`, filled as the body runs.

    Raises:
        HookNameError: an unknown hook, before anything is registered.
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=9, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> with record_at(m, "blocks.0.hook_resid_post", BeforeTokens([5], within=2)) as rec:
        ...     _ = m(torch.tensor([[1, 2, 3, 5]]))
        >>> rec["blocks.0.hook_resid_post"].shape, rec.positions.tolist()
        (torch.Size([2, 8]), [1, 2])
    """
    _check(selector, 1.0)
    resolved = resolve_hook_names(model, names)
    rec = Recording()
    with track_tokens(model) as tracker:

        def keep(act: Tensor, name: str) -> None:
            picked, pad = _call_mask(tracker, selector, act, name)
            if rec.stats.add(picked, pad, tracker.calls):
                rows, cols = picked.nonzero(as_tuple=True)
                rec._rows.append(rows.cpu())
                first = tracker.history.shape[1] - picked.shape[1]  # type: ignore[union-attr]
                rec._positions.append((cols + first).cpu())
            sel = act[picked].detach()
            rec._acts.setdefault(name, []).append(sel.to(device) if device is not None else sel)

        with hooks(model, dict.fromkeys(resolved, keep)):
            yield rec

