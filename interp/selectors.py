"""Selectors: which positions of a token sequence to act on, decided by the tokens themselves.

A *selector* picks positions from token ids: ``AtTokens(ids)`` (the position holds one of these
tokens), ``AfterTokens(ids, within=N)`` (one of them lies 1..N positions earlier),
``AfterPattern(pattern)`` (the tokens ending here spell a pattern; an element may be an id, a set
of ids, or ``None`` for any token), ``Every()``, and ``Not`` / ``And`` / ``Or`` of those (also
``~a``, ``a & b``, ``a | b``). Padding is never selected.

These are *causal*: whether position ``t`` is picked depends on tokens ``<= t`` only, so a cached
decoding step, which sees one new token, picks it exactly as a recomputation of the whole sequence
would (:mod:`interp.token_tracker` keeps the tokens seen so far). ``BeforeTokens(ids, within=N)``
looks ahead (N positions before a marker): for contrasts on full sequences only, and refused with
:class:`~interp.errors.NonCausalSelectorError` in any pass that uses a key-value cache.

Every ``positions=`` of :mod:`interp.hooks` takes a selector::

    with add_vector(model, "blocks.3.hook_resid_post", v, positions=AfterTokens([wait_id])):
        out = generate(model, prompts, max_new_tokens=40)
"""

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor

from interp.errors import SelectorError

__all__ = ["AfterPattern", "AfterTokens", "And", "AtTokens", "BeforeTokens", "Every", "Not", "Or", "Selector"]


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


class Selector(ABC):
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

    @abstractmethod
    def _hits(self, history: Tensor, real: Tensor) -> Tensor:
        """Each subclass's rule: where it fires, before padding is masked out."""

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
