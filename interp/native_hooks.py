"""Decoding steps of an ``hf:`` model on its plain Hugging Face modules, with the bridge's hooks.

A ``TransformerBridge`` wraps each Hugging Face module it knows (a decoder layer, its attention,
its MLP, each norm and projection) in a bridge component that runs the module between hook
points, partly in Python of its own (attention reimplemented eagerly so ``hook_pattern`` can
fire, keyword arguments filtered through ``inspect`` on every call): about 0.6 ms a layer per
decoding step, which made generation 1.2-1.4x slower than ``transformers``' own.

:func:`native_step` runs one decoding step without that layer: for the duration of the step
the bridge components are swapped out of ``bridge.original_model`` for the Hugging Face
modules they wrap (``parent._modules[name]``, put back in ``finally``), and each hook point
that carries hooks is served from the module it stands for, by calling the hook point itself
on the tensor the bridge would have handed it (so every hook on it runs as on the bridge path:
same function, same tensor, same name, and a returned replacement goes where the bridge would
have put it):

- ``hook_in`` of a layer, attention, MLP, norm, projection or the unembedding: the module's
  first input (``hidden_states``), via a forward pre-hook (``blocks.L.hook_resid_pre``,
  ``blocks.L.hook_resid_mid``, ``blocks.L.mlp.hook_post`` = ``down_proj``'s input, ...);
- ``hook_out`` of those and of the embedding: the module's output, or its first element when
  it returns a tuple (``hook_embed``, ``blocks.L.hook_resid_post``, ``blocks.L.hook_attn_out``,
  ``blocks.L.hook_mlp_out``, ``blocks.L.attn.hook_q``, ...).

When a hook point outside that list carries a hook (``hook_pattern``, ``hook_attn_scores``,
``hook_rot_q``, ``ln1.hook_scale``, ``hook_mlp_in``, ...: tensors only the bridge's own
reimplementation computes), when a bridge component carries a forward hook that is not the
bridge's own, when weights were processed (folded) by the bridge, or when the model is not
built from the components listed in ``_NATIVE_SITES``, :func:`native_step` returns ``None``
and the caller takes the bridge path (the reason is logged at debug level).

Positions are derived from the attention mask as the bridge derives them and attention stays
as the bridge loaded it (eager), so both paths give the same activations, padding positions
included. The swap lasts one forward pass: a hook that runs the same model again from inside
it, or another thread using the model meanwhile, would find the plain modules (no hook points).
"""

import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = ["hooked_points", "native_step"]

Kind = Literal["in", "out"]
Why = str | None  # why a model or a step cannot run natively (None: it can)

# Bridge component class -> its hook points with a native equivalent on the wrapped module.
# Only exact classes (a subclass may move its hooks), each checked against the bridge in
# tests/interp/test_generation_native.py.
_NATIVE_SITES: dict[str, tuple[tuple[str, Kind], ...]] = {
    "BlockBridge": (("hook_in", "in"), ("hook_out", "out")),
    "EmbeddingBridge": (("hook_out", "out"),),
    "PosEmbedBridge": (("hook_out", "out"),),
    "RotaryEmbeddingBridge": (),
    "NormalizationBridge": (("hook_in", "in"), ("hook_out", "out")),
    "RMSNormalizationBridge": (("hook_in", "in"), ("hook_out", "out")),
    "PositionEmbeddingsAttentionBridge": (("hook_in", "in"), ("hook_out", "out")),
    "JointQKVAttentionBridge": (("hook_in", "in"), ("hook_out", "out")),
    "MLPBridge": (("hook_in", "in"), ("hook_out", "out")),
    "GatedMLPBridge": (("hook_in", "in"), ("hook_out", "out")),
    "LinearBridge": (("hook_in", "in"), ("hook_out", "out")),
    "UnembeddingBridge": (("hook_in", "in"), ("hook_out", "out")),
}

# Components an enclosing bridge bypasses (it computes their output itself, so their hook
# points never fire on the bridge path): (enclosing class, its submodule name).
_BYPASSED = {("JointQKVAttentionBridge", "qkv")}

# Bridge config flags that change what the bridge computes (split inputs, per-head results).
_FLAGS = ("use_split_qkv_input", "use_attn_in", "use_attn_result", "use_hook_mlp_in")


@dataclass
class _Plan:
    """What one bridge needs for a native step, found once per bridge."""

    swaps: list[tuple[dict, str, nn.Module, nn.Module]]  # (parent._modules, name, component, wrapped)
    sites: dict[int, tuple[nn.Module, nn.Module, Kind]]  # id(hook point) -> (point, wrapped, kind)
    points: list[nn.Module]  # every hook point of the bridge
    components: list[nn.Module]  # every bridge component in the Hugging Face tree
    owners: list[nn.Module]  # the components that register hooks of their own (blocks)
    cache_kw: str  # "cache" (transformers 5) or "past_key_values"
    keeps_logits: bool  # the forward takes ``logits_to_keep``
    takes_positions: bool  # the forward takes ``position_ids``


_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Plan | str]" = weakref.WeakKeyDictionary()


def _plan(bridge: nn.Module) -> "_Plan | str":
    """The plan for ``bridge``, or why it has none (cached)."""
    plan = _PLANS.get(bridge)
    if plan is None:
        plan = _make_plan(bridge)
        _PLANS[bridge] = plan
        if isinstance(plan, str):
            log.debug("no native decoding for this model: %s", plan)
    return plan


def _make_plan(bridge: nn.Module) -> "_Plan | str":
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    root = getattr(bridge, "original_model", None)
    if not isinstance(root, nn.Module):
        return "the bridge has no original_model"
    swaps: list = []
    sites: dict = {}
    components: list = []

    def add(parent: nn.Module, name: str, child: nn.Module, where: str, outer: nn.Module | None) -> Why:
        cls, wrapped = type(child).__name__, child.original_component
        if cls not in _NATIVE_SITES:
            return f"{where} is a {cls}, whose hooks have no checked native equivalent"
        if not isinstance(wrapped, nn.Module):
            return f"{where} ({cls}) wraps no module"
        swaps.append((parent._modules, name, child, wrapped))
        components.append(child)
        subs = getattr(outer, "submodules", None) or {}
        if any(subs.get(sub) is child for kind, sub in _BYPASSED if kind == type(outer).__name__):
            return None
        for attr, kind in _NATIVE_SITES[cls]:
            point = child._modules.get(attr)
            if isinstance(point, HookPoint):
                sites[id(point)] = (point, wrapped, kind)
        return None

    def walk(module: nn.Module, path: str, outer: nn.Module | None) -> Why:
        for name, child in module._modules.items():
            where = f"{path}.{name}" if path else name
            if child is None:
                continue
            if isinstance(child, HookPoint):
                return f"a hook point sits in the Hugging Face tree at {where}"
            if isinstance(child, GeneralizedComponent):
                why = add(module, name, child, where, outer) or walk(child.original_component, where, child)
            else:
                why = walk(child, where, outer)
            if why:
                return why
        return None

    why = walk(root, "", None)
    if why:
        return why
    params = inspect.signature(root.forward).parameters
    return _Plan(
        swaps=swaps,
        sites=sites,
        points=[m for m in bridge.modules() if isinstance(m, HookPoint)],
        components=components,
        owners=[c for c in components if "_capture_hook_handles" in c.__dict__],
        cache_kw="cache" if "cache" in params else "past_key_values",
        keeps_logits="logits_to_keep" in params,
        takes_positions="position_ids" in params,
    )


def hooked_points(bridge: nn.Module) -> list[str]:
    """Names of the bridge's hook points that carry forward hooks (or forward pre-hooks) now.

    Args:
        bridge: a ``TransformerBridge``.

    Returns:
        Each hooked point's own name (``blocks.0.hook_out`` for ``blocks.0.hook_resid_post``),
        in module order; empty when nothing is hooked.

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from interp.hooks import add_vector
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> model = HookedTransformer(cfg)
        >>> with add_vector(model, "blocks.0.hook_resid_post", torch.ones(8)):
        ...     hooked_points(model)
        ['blocks.0.hook_resid_post']
        >>> hooked_points(model)
        []
    """
    from transformer_lens.hook_points import HookPoint

    plan = _PLANS.get(bridge)
    if isinstance(plan, _Plan):
        points = plan.points
    else:
        points = [m for m in bridge.modules() if isinstance(m, HookPoint)]
    return [str(p.name) for p in points if p._forward_hooks or p._forward_pre_hooks]


def _blocker(bridge: nn.Module, plan: _Plan) -> tuple[Why, list[nn.Module]]:
    """Why this step cannot run natively (``None`` if it can), and the hook points carrying hooks."""
    hooked = [p for p in plan.points if p._forward_hooks or p._forward_pre_hooks]
    for p in hooked:
        if id(p) not in plan.sites:
            return f"{p.name} carries a hook and has no native equivalent", hooked
    cfg = getattr(bridge, "cfg", None)
    for flag in _FLAGS:
        if getattr(cfg, flag, False):
            return f"the bridge's cfg.{flag} is set", hooked
    own = {h.id for c in plan.owners for h in c.__dict__["_capture_hook_handles"]}
    for c in plan.components:
        if c.__dict__.get("_use_processed_weights"):
            return f"{c.name} runs processed (folded) weights", hooked
        if (c._forward_hooks or c._forward_pre_hooks) and not own.issuperset(
            (*c._forward_hooks, *c._forward_pre_hooks)
        ):
            return f"the bridge component {c.name} carries a forward hook", hooked
    return None, hooked


def _out_hook(point: nn.Module) -> Callable:
    def hook(module: nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, Tensor):
            return point(output)
        if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
            return (point(output[0]), *output[1:])
        return None

    return hook


def _in_hook(point: nn.Module) -> Callable:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if args and isinstance(args[0], Tensor):
            return (point(args[0]), *args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), Tensor):
            return args, {**kwargs, "hidden_states": point(kwargs["hidden_states"])}
        return None

    return hook


def native_step(
    bridge: nn.Module, tokens: Tensor, mask: Tensor, cache: Any
) -> tuple[Tensor, Any] | None:
    """One forward pass of ``bridge.original_model`` on its own modules, the bridge's hooks served.

    Args:
        bridge: a ``TransformerBridge``.
        tokens: the new tokens ``[batch, pos]``.
        mask: the attention mask over the cached positions and the new ones ``[batch, all]``.
        cache: the Hugging Face cache from the previous step (``None`` for the prompt pass).

    Returns:
        ``(logits of the last position [batch, 1, d_vocab] or more, the updated cache)``, or
        ``None`` when the step must take the bridge path (nothing was run then; also for a
        module that is no bridge).

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, d_vocab=5, act_fn="relu")
        >>> native_step(HookedTransformer(cfg), torch.tensor([[1, 2]]), torch.ones(1, 2), None) is None
        True
    """
    plan = _plan(bridge)
    if isinstance(plan, str):
        return None
    why, hooked = _blocker(bridge, plan)
    if why:
        log.debug("bridge path for this step: %s", why)
        return None
    kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": True}
    if cache is not None:
        kwargs[plan.cache_kw] = cache
    if plan.keeps_logits:
        kwargs["logits_to_keep"] = 1
    if plan.takes_positions:  # as the bridge: each row counts from its first real token, padding at 0
        pos = (mask.long().cumsum(-1) - 1).clamp_(min=0)
        kwargs["position_ids"] = pos[:, -tokens.shape[1] :]
    handles: list = []
    swapped: list = []
    try:
        for parent, name, component, wrapped in plan.swaps:
            if parent.get(name) is not component:  # the model changed since the plan: make a new one
                _PLANS.pop(bridge, None)
                log.debug("bridge path for this step: the module tree changed at %s", component.name)
                return None
            parent[name] = wrapped
            swapped.append((parent, name, component))
        for point in hooked:
            _, wrapped, kind = plan.sites[id(point)]
            if kind == "in":
                handles.append(wrapped.register_forward_pre_hook(_in_hook(point), with_kwargs=True))
            else:
                handles.append(wrapped.register_forward_hook(_out_hook(point)))
        out = bridge.original_model(tokens, **kwargs)
    finally:
        for h in handles:
            h.remove()
        for parent, name, component in reversed(swapped):
            parent[name] = component
    new_cache = out.get(plan.cache_kw) if hasattr(out, "get") else None
    if new_cache is None:
        new_cache = getattr(out, "past_key_values", None)
    return out.logits, new_cache

