"""Steer or record at positions chosen by the tokens seen so far, counting the share selected.

The selectors live in :mod:`interp.selectors` and the token history in :mod:`interp.token_tracker`
(re-exported here); any ``positions=`` of :mod:`interp.hooks` takes a selector. This module adds
what those plain hooks do not keep: :func:`steer_at` (``add_vector`` at a selector, with the share
of steered positions) and :func:`record_at` (the selected activations of *every* pass, with their
rows and positions, where ``record`` keeps the last pass)::

    with steer_at(model, "blocks.1.hook_resid_post", v, AfterPattern([gt, nodes]), scale=4.0) as s:
        out = generate(model, prompts, max_new_tokens=40)
    s.stats.share  # steered positions / non-pad positions
"""

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import ModelMismatchError, NonCausalSelectorError, SelectorError, TrackingError
from interp.hooks import hooks, resolve_hook_names
from interp.selectors import AfterPattern, AfterTokens, And, AtTokens, BeforeTokens, Every, Not, Or, Selector
from interp.token_tracker import TokenTracker, track_tokens

__all__ = [
    "AfterPattern", "AfterTokens", "And", "AtTokens", "BeforeTokens", "Every", "NonCausalSelectorError",
    "Not", "Or", "Recording", "SelectionStats", "Selector", "SelectorError", "Steering", "TokenTracker",
    "TrackingError", "record_at", "steer_at", "track_tokens",
]


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
            picked, pad = tracker.hook_mask(selector, act, name)
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
            picked, pad = tracker.hook_mask(selector, act, name)
            if rec.stats.add(picked, pad, tracker.calls):
                rows, cols = picked.nonzero(as_tuple=True)
                rec._rows.append(rows.cpu())
                first = tracker.history.shape[1] - picked.shape[1]  # type: ignore[union-attr]
                rec._positions.append((cols + first).cpu())
            sel = act[picked].detach()
            rec._acts.setdefault(name, []).append(sel.to(device) if device is not None else sel)

        with hooks(model, dict.fromkeys(resolved, keep)):
            yield rec

