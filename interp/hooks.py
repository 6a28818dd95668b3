"""Hooks at TransformerLens hook points, installed only through context managers.

Every context manager here validates all names before it registers anything, and removes
every handle it registered on exit, also when the body raises::

    with record(model, "blocks.*.hook_resid_post") as acts:
        model(tokens)
    acts["blocks.0.hook_resid_post"]  # [batch, pos, d_model]

Positions select along the ``pos`` axis: ``None`` (all), an int, a list of ints, a slice, a
boolean mask ``[batch, pos]``, or a :class:`~interp.selectors.Selector` (``AfterTokens([id])``,
...), evaluated at each forward pass on the token ids seen so far (:func:`track_tokens` runs
around the hooks) and turned into the mask of that pass's own positions: all of them in a full
pass, the new token in a cached decoding step, so cached generation acts where a recomputation of
the whole sequence would. Vectors, replacements and masks are moved to the device and
dtype of the activation they act on, so they work on a model whose layers sit on several
devices (a ``device_map``).

Hook names are TransformerLens's (``blocks.0.hook_resid_post``). Patterns are globs over the
dotted name, where a wildcard stays inside one dot-separated part unless doubled:

- ``*`` matches any run of characters *without a dot*: ``blocks.*.hook_resid_post`` is one
  site per layer, and ``blocks.*.hook_out`` never reaches ``blocks.0.attn.hook_out``;
- ``**`` matches any run of characters, dots included: ``blocks.**.hook_out`` is every
  ``hook_out`` under every block;
- ``?`` matches one character other than a dot; ``[abc]`` one character of the set, ``[!abc]``
  one character outside it and other than a dot.

A ``TransformerBridge`` reaches many hook points under two names (``blocks.0.hook_resid_post``
is also ``blocks.0.hook_out``). Names are resolved to hook points and each point is used once:
of names given explicitly, the first given is kept; of the names one pattern matches at one
point, the TransformerLens name is kept (the one that is not the point's own module path,
``HookPoint.name``), and among several of those the first in natural order. So
``add_vector(m, ["blocks.0.hook_resid_post", "blocks.0.hook_out"], v)`` adds ``v`` once.
"""

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.errors import HookNameError
from interp.selectors import Selector
from interp.token_tracker import track_tokens

HookFn = Callable[[Tensor, str], Tensor | None]
Positions = int | Sequence[int] | slice | Bool[Tensor, "batch pos"] | Selector | None
# A hook function that also takes the positions of the pass (a selector already turned into a mask).
_PosHookFn = Callable[[Tensor, str, Positions], Tensor | None]

_GLOB = re.compile(r"[*?\[]")


def _hook_points(model) -> Mapping[str, nn.Module]:
    module = getattr(model, "module", model)
    points = getattr(module, "hook_dict", None)
    if points is None:
        raise TypeError(f"{type(module).__name__} has no TransformerLens hook points (hook_dict)")
    return points


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _glob_regex(pattern: str) -> re.Pattern:
    """``*`` within one dotted part, ``**`` across parts, ``?`` one non-dot, ``[...]`` a set."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append(r"[^.]*")
        elif c == "?":
            out.append(r"[^.]")
        elif c == "[" and (end := pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace(r"\-", "-")
            out.append(f"[^.{body}]" if negate else f"[{body}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def resolve_hook_names(model, names: str | Iterable[str]) -> list[str]:
    """Expand glob patterns and check every name against the model's hook points.

    Patterns: ``*`` matches within one dot-separated part (``blocks.*.hook_out`` is one site
    per layer), ``**`` across dots (``blocks.**.hook_out`` also reaches
    ``blocks.0.attn.hook_out``), ``?`` one non-dot character, ``[...]`` one of a set.

    Each hook point is returned once, however many names reach it (a ``TransformerBridge``
    gives most points two): a name given explicitly is kept as given, the first of its aliases
    wins, and a later name or pattern reaching an already chosen point adds nothing; of the
    names one pattern matches at one point, the TransformerLens name is kept (not the point's
    own module path), the first in natural order if there are several.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        names: hook names or glob patterns (``blocks.*.hook_resid_post``).

    Returns:
        One name per hook point, patterns expanded in layer (natural) order, in the order given.

    Raises:
        HookNameError: a name the model lacks, or a pattern matching nothing; the message lists
            the closest valid names.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> model = HookedTransformer(cfg)
        >>> resolve_hook_names(model, "blocks.*.hook_resid_post")
        ['blocks.0.hook_resid_post', 'blocks.1.hook_resid_post']
        >>> resolve_hook_names(model, "blocks.**.hook_z")
        ['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z']
    """
    points = _hook_points(model)
    valid = sorted(points, key=_natural_key)
    out: list[str] = []
    taken: set[int] = set()  # ids of the hook points already chosen
    for pattern in [names] if isinstance(names, str) else list(names):
        if _GLOB.search(pattern):
            regex = _glob_regex(pattern)
            matched = [n for n in valid if regex.fullmatch(n)]
        else:
            matched = [pattern] if pattern in points else []
        if not matched:
            raise HookNameError(_unknown_message(pattern, valid))
        by_point: dict[int, list[str]] = {}
        for name in matched:
            by_point.setdefault(id(points[name]), []).append(name)
        chosen = [_canonical(points[group[0]], group) for pid, group in by_point.items() if pid not in taken]
        taken.update(id(points[n]) for n in chosen)
        out.extend(sorted(chosen, key=_natural_key))
    return out


def _canonical(point: nn.Module, names: list[str]) -> str:
    """The TransformerLens name among ``names`` of one point: not its module path, then natural order."""
    own = getattr(point, "name", None)
    return min(names, key=lambda n: (n == own, _natural_key(n)))


def _unknown_message(pattern: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(pattern, valid, n=5, cutoff=0.4)
    if not close:
        tail = pattern.rsplit(".", 1)[-1]
        close = [n for n in valid if n.endswith(tail)][:5] or valid[:5]
    return (
        f"hook {pattern!r} not found in the model ({len(valid)} hook points). "
        f"Closest valid names: {', '.join(close)}"
    )


@contextmanager
def hooks(model, fns: Mapping[str, HookFn]) -> Iterator[None]:
    """Install ``fn(activation, name) -> replacement or None`` at each named hook point.

    Keys may be glob patterns. All names are resolved before anything is registered; every
    handle is removed on exit, exceptions included. A hook point reached by several keys (an
    alias, or overlapping patterns) gets its function once; two different functions for one
    point are refused.

    Raises:
        HookNameError: an unknown name, or two different functions for one hook point.
    """
    points = _hook_points(model)
    plan: list[tuple[str, HookFn]] = []
    given: dict[int, tuple[str, HookFn]] = {}  # hook point id -> the name and function planned there
    for key, fn in fns.items():
        for name in resolve_hook_names(model, key):
            first = given.setdefault(id(points[name]), (name, fn))
            if first == (name, fn) and (name, fn) not in plan:
                plan.append((name, fn))
            elif first[1] is not fn:
                raise HookNameError(
                    f"hooks {first[0]!r} and {name!r} are one hook point of the model and were "
                    f"given different functions; give one of the two names"
                )
    handles: list = []
    try:
        for name, fn in plan:
            handles.append(points[name].register_forward_hook(_as_forward_hook(fn, name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _as_forward_hook(fn: HookFn, name: str):
    def forward_hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        return fn(output, name)

    return forward_hook


@contextmanager
def _hooks_at(model, fns: Mapping[str, _PosHookFn], positions: Positions) -> Iterator[None]:
    """:func:`hooks` with ``fn(act, name, where)``: ``positions``, or a selector's mask of the pass."""
    tracker = None

    def where(act: Tensor, name: str) -> Positions:
        return positions if tracker is None else tracker.hook_mask(positions, act, name)[0]

    bound = {id(fn): _bind(fn, where) for fn in fns.values()}  # one function per hook point, as given
    with ExitStack() as stack:
        stack.enter_context(hooks(model, {key: bound[id(fn)] for key, fn in fns.items()}))  # names first
        if isinstance(positions, Selector):
            tracker = stack.enter_context(track_tokens(model))
        yield


def _bind(fn: _PosHookFn, where: Callable[[Tensor, str], Positions]) -> HookFn:
    def hook(act: Tensor, name: str) -> Tensor | None:
        return fn(act, name, where(act, name))

    return hook


def _select(act: Tensor, positions: Positions) -> Tensor:
    """The activations at ``positions`` (a view or copy; never written through)."""
    if positions is None:
        return act
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        _check_mask(act, positions)
        return act[positions.to(act.device)]
    return act[:, _pos_index(positions)]


def _pos_index(positions: Positions):
    if isinstance(positions, int | slice):
        return positions
    return torch.as_tensor(list(positions), dtype=torch.long)


def _check_mask(act: Tensor, mask: Tensor) -> None:
    if tuple(mask.shape) != tuple(act.shape[:2]):
        raise ValueError(
            f"position mask has shape {tuple(mask.shape)}; expected [batch, pos] = "
            f"{tuple(act.shape[:2])}"
        )


def _fits(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without growing it."""
    tail = target[len(target) - len(shape) :] if len(shape) <= len(target) else None
    return tail is not None and all(a in (1, b) for a, b in zip(shape, tail, strict=True))


def _write(act: Tensor, positions: Positions, value: Tensor, name: str) -> Tensor:
    """A copy of ``act`` with ``value`` written at ``positions`` (broadcast, shape-checked)."""
    out = act.clone()
    if positions is None:
        target_shape = out.shape
    elif isinstance(positions, Tensor) and positions.dtype == torch.bool:
        _check_mask(act, positions)
        target_shape = out[positions.to(out.device)].shape
    else:
        target_shape = out[:, _pos_index(positions)].shape
    value = value.to(device=out.device, dtype=out.dtype)
    try:
        value = value.expand(target_shape)
    except RuntimeError:
        raise ValueError(
            f"value for hook {name!r} has shape {tuple(value.shape)}, which does not broadcast "
            f"to the selected activations {tuple(target_shape)}"
        ) from None
    if positions is None:
        return value.clone()
    if isinstance(positions, Tensor) and positions.dtype == torch.bool:
        out[positions.to(out.device)] = value
    else:
        out[:, _pos_index(positions)] = value
    return out


@contextmanager
def record(
    model, names: str | Iterable[str], positions: Positions = None, device: str | None = None
) -> Iterator[dict[str, Tensor]]:
    """Record activations (detached) at the named hooks during the forward passes in the body.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        names: hook names or glob patterns.
        positions: which positions to keep (see module docstring).
        device: move recorded tensors there (e.g. ``"cpu"``); default: where they are, which
            for a model loaded with a ``device_map`` is each layer's own device.

    Yields:
        A dict from hook name to activation ``[batch, pos, ...]`` (``[n, ...]`` for a mask or a
        selector: the selected positions, row-major), filled by the last forward pass in the body
        (in cached generation: the last step; to keep every step, see ``steering.positions.record_at``).

    Raises:
        HookNameError: an unknown name, before any hook is registered.
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> with record(m, "blocks.0.hook_resid_post", positions=-1) as acts:
        ...     _ = m(torch.tensor([[1, 2, 3]]))
        >>> acts["blocks.0.hook_resid_post"].shape
        torch.Size([1, 8])
    """
    acts: dict[str, Tensor] = {}

    def keep(act: Tensor, name: str, where: Positions) -> None:
        sel = _select(act, where).detach()
        acts[name] = sel.to(device) if device is not None else sel

    resolved = resolve_hook_names(model, names)
    with _hooks_at(model, dict.fromkeys(resolved, keep), positions):
        yield acts


@contextmanager
def patch(
    model,
    values: Mapping[str, Tensor | Callable[[Tensor], Tensor]],
    positions: Positions = None,
) -> Iterator[None]:
    """Replace activations with given values, another run's recording, or ``fn(act)``.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        values: hook name -> tensor broadcastable to the selected activations (e.g. a dict from
            :func:`record` on another run), or a callable mapping the selected activations to
            their replacement.
        positions: where to write (see module docstring); with a selector the selected
            activations are ``[n, ...]``, ``n`` varying from pass to pass.

    Raises:
        HookNameError: an unknown name, before any hook is registered.
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.
    """

    def make(value):
        def fn(act: Tensor, name: str, where: Positions) -> Tensor:
            new = value(_select(act, where)) if callable(value) else value
            return _write(act, where, new, name)

        return fn

    with _hooks_at(model, {name: make(v) for name, v in values.items()}, positions):
        yield


@contextmanager
def add_vector(
    model,
    names: str | Iterable[str],
    vector: Float[Tensor, "d_model"],  # noqa: F821
    scale: float = 1.0,
    positions: Positions = None,
) -> Iterator[None]:
    """Add ``scale * vector`` to the activations at the named hooks, at ``positions``.

    With a selector the vector is added, pass by pass, where the selector picks among the tokens
    seen so far: a cached generation steers as recomputing each sequence in full would.

    Raises:
        HookNameError: an unknown name, before any hook is registered.
        ValueError: the vector's size differs from the activation's last axis.
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from interp.selectors import AfterTokens
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=9, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> with add_vector(m, "blocks.0.hook_resid_pre", torch.ones(8), positions=AfterTokens([3])):
        ...     with record(m, "blocks.0.hook_resid_pre") as steered:
        ...         _ = m(torch.tensor([[1, 3, 5]]))
        >>> with record(m, "blocks.0.hook_resid_pre") as plain:
        ...     _ = m(torch.tensor([[1, 3, 5]]))
        >>> (steered["blocks.0.hook_resid_pre"] != plain["blocks.0.hook_resid_pre"]).any(-1).tolist()
        [[False, False, True]]
    """

    def fn(act: Tensor, name: str, where: Positions) -> Tensor:
        if vector.shape[-1] != act.shape[-1]:
            raise ValueError(
                f"vector of size {vector.shape[-1]} cannot be added at {name!r}, whose "
                f"activations have size {act.shape[-1]}"
            )
        delta = scale * vector.to(device=act.device, dtype=act.dtype)
        rest = act.shape[2:]
        if isinstance(where, Tensor) and where.dtype == torch.bool and _fits(delta.shape, rest):
            _check_mask(act, where)  # a mask without gather/scatter: no device sync per pass
            keep = where.to(act.device).reshape(*where.shape, *[1] * len(rest))
            return torch.where(keep, act + delta, act)
        return _write(act, where, _select(act, where) + delta, name)

    with _hooks_at(model, dict.fromkeys(resolve_hook_names(model, names), fn), positions):
        yield


@contextmanager
def ablate(
    model,
    names: str | Iterable[str],
    mode: Literal["zero", "mean"] = "zero",
    positions: Positions = None,
    means: Mapping[str, Tensor] | None = None,
) -> Iterator[None]:
    """Zero- or mean-ablate the named hooks.

    Args:
        mode: ``"zero"``, or ``"mean"``: the mean from ``means[name]`` when given (e.g. from a
            cache; a mean given under another name of the same hook point serves), else the mean
            over batch and positions of the current run (of one pass: a cached step has one position).
        positions: where to ablate (see module docstring).

    Raises:
        HookNameError: an unknown name, or ``means`` lacking one, before any hook is registered.
        NonCausalSelectorError: a look-ahead selector in a pass with a key-value cache.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode {mode!r} is not one of ['mean', 'zero']")
    resolved = resolve_hook_names(model, names)
    by_name: dict[str, Tensor] = {}
    if means is not None:  # a mean recorded under another name of the same hook point serves too
        points = _hook_points(model)
        by_point = {id(points[k]): v for k, v in means.items() if k in points}
        by_name = {n: means[n] if n in means else by_point.get(id(points[n])) for n in resolved}
        missing = [n for n, v in by_name.items() if v is None]
        if missing:
            raise HookNameError(f"means given for ablation lack hooks {missing}")

    def fn(act: Tensor, name: str, where: Positions) -> Tensor:
        if mode == "zero":
            value = torch.zeros((), dtype=act.dtype, device=act.device)
        elif means is not None:
            value = by_name[name]
        else:
            value = act.mean(dim=(0, 1))
        return _write(act, where, value, name)

    with _hooks_at(model, dict.fromkeys(resolved, fn), positions):
        yield
