"""Conditional steering: add a vector only where a probe or an SAE feature says the behaviour is due.

Venhoff et al. 2025 ("Base models know how to reason, thinking models learn *when*", arXiv
2510.07364) steer a base model with reasoning vectors only at the tokens where a small
classifier says a reasoning step belongs, and recover most of the gap to the thinking model
while steering about 12% of the tokens. :func:`steer_when` is that mechanism: a *gate* reads the
activation at one hook point (a linear probe, :class:`LinearGate`, or an SAE feature,
:class:`FeatureGate`) and, in the same forward pass, the vector is added at the steering hooks
only at the positions where the gate fires. Because the gate is evaluated on each pass's own
activations, it works the same on a full pass and on every cached decoding step; the share of
positions steered is counted (:attr:`GateStats.share`), so conditional steering can be compared
with always-on steering at equal effect.

The gate's hook must run before (or be) every steering hook in the forward pass; a steering hook
reached before the gate in a pass is refused with :class:`GateOrderError` rather than steered
with the previous pass's decisions.
"""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from interp.errors import InterpError
from interp.hooks import hooks, resolve_hook_names
from interp.models import as_model
from interp.token_tracker import entry_modules
from steering.steering_vector import SteeringVector


class GateError(InterpError, ValueError):
    """A gate or conditional-steering setting that cannot be used (shape, value, order)."""


class GateOrderError(GateError):
    """A steering hook ran before the gate's hook in a forward pass."""


@dataclass(frozen=True)
class LinearGate:
    """Fires where a linear probe's margin exceeds ``threshold``.

    The score at a position is ``((x - mean) / std) @ weight + bias`` (``mean``/``std``: the
    probe's standardisation, ``None`` for none); with a ``weight`` of ``[d_model, n_class]`` the
    margin is the ``positive`` class's logit minus the largest other logit, with ``[d_model]``
    it is the score itself.

    Example:
        >>> gate = LinearGate("blocks.0.hook_resid_post", torch.tensor([1.0, 0.0]), threshold=0.5)
        >>> gate(torch.tensor([[[1.0, 9.0], [0.2, 9.0]]])).tolist()
        [[True, False]]
    """

    hook: str
    weight: Float[Tensor, "d_model *n_class"]  # noqa: F722, F821
    bias: float | Tensor = 0.0
    threshold: float = 0.0
    positive: int = 1
    mean: Tensor | None = field(default=None, repr=False)
    std: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.weight.dim() not in (1, 2):
            raise GateError(
                f"weight of shape {tuple(self.weight.shape)}; expected [d_model] or [d_model, n_class]"
            )
        if self.weight.dim() == 2 and not 0 <= self.positive < self.weight.shape[1]:
            raise GateError(f"positive={self.positive!r}; expected a class in 0..{self.weight.shape[1] - 1}")
        if not math.isfinite(self.threshold):
            raise GateError(f"threshold={self.threshold!r}; expected a finite number")

    @property
    def d_model(self) -> int:
        return int(self.weight.shape[0])

    def score(self, x: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos"]:
        if x.shape[-1] != self.d_model:
            raise GateError(f"the gate reads width {self.d_model}, but {self.hook!r} has width {x.shape[-1]}")
        x = x.float()
        if self.mean is not None:
            x = x - self.mean.to(x.device, x.dtype)
        if self.std is not None:
            x = x / self.std.to(x.device, x.dtype)
        w = self.weight.to(x.device, x.dtype)
        b = torch.as_tensor(self.bias, dtype=x.dtype, device=x.device)
        logits = x @ w + b
        if w.dim() == 1:
            return logits
        others = torch.cat([logits[..., : self.positive], logits[..., self.positive + 1 :]], dim=-1)
        return logits[..., self.positive] - others.max(-1).values

    def __call__(self, x: Float[Tensor, "batch pos d_model"]) -> Bool[Tensor, "batch pos"]:
        return self.score(x) > self.threshold

    @classmethod
    def from_probe(
        cls, probe: Any, site: str | int = 0, positive: int = 1, threshold: float = 0.0
    ) -> "LinearGate":
        """The gate of one site of a :class:`probes.linear.ProbeResult` (its hook name is the site).

        Raises:
            GateError: a site the probe does not have.
        """
        sites = list(probe.sites)
        if isinstance(site, str):
            if site not in sites:
                raise GateError(f"the probe has no site {site!r}; it has {sites}")
            site = sites.index(site)
        if not 0 <= site < len(sites):
            raise GateError(f"site index {site!r}; the probe has {len(sites)} sites")
        return cls(
            sites[site],
            probe.W[site].detach(),
            probe.b[site].detach(),
            threshold,
            positive,
            probe.mean[site].detach(),
            probe.std[site].detach(),
        )


@dataclass(frozen=True)
class FeatureGate:
    """Fires where an SAE feature's activation (``sae.encode(x)[..., feature]``) exceeds ``threshold``."""

    hook: str
    sae: Any = field(repr=False)
    feature: int = 0
    threshold: float = 0.0

    def __post_init__(self) -> None:
        d_sae = int(self.sae.W_dec.shape[0])
        if (
            isinstance(self.feature, bool)
            or not isinstance(self.feature, int)
            or not 0 <= self.feature < d_sae
        ):
            raise GateError(f"feature={self.feature!r}; expected an index in 0..{d_sae - 1}")
        if not math.isfinite(self.threshold):
            raise GateError(f"threshold={self.threshold!r}; expected a finite number")

    def __call__(self, x: Float[Tensor, "batch pos d_model"]) -> Bool[Tensor, "batch pos"]:
        d_in = int(self.sae.W_dec.shape[1])
        if x.shape[-1] != d_in:
            raise GateError(f"the SAE reads width {d_in}, but {self.hook!r} has width {x.shape[-1]}")
        with torch.no_grad():
            return self.sae.encode(x)[..., self.feature] > self.threshold


@dataclass
class GateStats:
    """Positions the gate saw and fired at, over every pass inside :func:`steer_when`."""

    seen: int = 0
    steered: int = 0
    passes: int = 0

    @property
    def share(self) -> float:
        """Share of positions steered (nan before any pass)."""
        return self.steered / self.seen if self.seen else float("nan")


@contextmanager
def steer_when(
    model: Any,
    vector: SteeringVector,
    gate: "LinearGate | FeatureGate",
    scale: float = 1.0,
    layers: Sequence[int | str] | None = None,
) -> Iterator[GateStats]:
    """Add ``scale * direction`` at the vector's hooks only where ``gate`` fires, in the same pass.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        vector: the steering vector (each of its hooks, or those of ``layers``, is steered).
        gate: where to steer: a :class:`LinearGate` or :class:`FeatureGate` (any object with a
            ``hook`` and ``__call__(activation) -> Bool[batch, pos]``).
        scale: multiplies every direction.
        layers: which of the vector's layers or hook names (``None``: all).

    Yields:
        A :class:`GateStats`, updated as passes run.

    Raises:
        GateError: a non-finite scale, or a direction of another width than its hook.
        GateOrderError: in a pass, a steering hook ran before the gate's hook.
        HookNameError: the gate's hook or a steering hook is not a hook point of the model.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=2, d_model=4, n_ctx=8, d_head=2, d_vocab=6, act_fn="relu")
        >>> m = HookedTransformer(cfg)
        >>> v = SteeringVector({"blocks.1.hook_resid_post": torch.ones(4)}, {"method": "manual"})
        >>> never = LinearGate("blocks.0.hook_resid_post", torch.zeros(4), threshold=1.0)
        >>> with steer_when(m, v, never) as stats:
        ...     _ = m(torch.tensor([[1, 2, 3]]))
        >>> stats.steered, stats.seen
        (0, 3)
    """
    if not math.isfinite(scale):
        raise GateError(f"scale={scale!r}; expected a finite number")
    directions = vector.select(layers)
    gate_names = resolve_hook_names(model, gate.hook)
    if len(gate_names) != 1:
        raise GateError(f"the gate's hook {gate.hook!r} names {len(gate_names)} hook points; expected one")
    gate_hook = gate_names[0]
    steer_hooks = [name for key in directions for name in resolve_hook_names(model, key)]
    stats = GateStats()
    state: dict[str, Tensor | None] = {"mask": None}

    def new_pass(module: nn.Module, args: tuple) -> None:
        state["mask"] = None

    def read_gate(act: Tensor) -> None:
        mask = gate(act)
        if tuple(mask.shape) != tuple(act.shape[:2]):
            raise GateError(
                f"the gate gave a mask of shape {tuple(mask.shape)}; expected {tuple(act.shape[:2])}"
            )
        state["mask"] = mask
        stats.passes += 1
        stats.seen += int(mask.numel())
        stats.steered += int(mask.sum())

    def steer(act: Tensor, name: str, direction: Tensor) -> Tensor:
        mask = state["mask"]
        if mask is None:
            raise GateOrderError(
                f"steering hook {name!r} ran before the gate's hook {gate_hook!r} in this pass; "
                "read the gate at an earlier hook point (or at the steering hook itself)"
            )
        if direction.shape[-1] != act.shape[-1]:
            raise GateError(
                f"a direction of width {direction.shape[-1]} cannot steer {name!r} (width {act.shape[-1]})"
            )
        add = (scale * direction).to(act.device, act.dtype)
        return act + mask.to(act.device)[..., None].to(act.dtype) * add

    def make(name: str):
        direction = directions.get(name)
        if direction is None:  # a glob key of the vector resolved to this name
            direction = next(d for key, d in directions.items() if name in resolve_hook_names(model, key))

        def fn(act: Tensor, hook_name: str) -> Tensor | None:
            if name == gate_hook:
                read_gate(act)
            return steer(act, hook_name, direction) if name in steer_hooks else None

        return fn

    fns = {name: make(name) for name in dict.fromkeys([*steer_hooks, gate_hook]) if name in steer_hooks}
    if gate_hook not in fns:
        fns[gate_hook] = lambda act, name: read_gate(act)
    handle = entry_modules(as_model(model).module)[0].register_forward_pre_hook(new_pass)
    try:
        with hooks(model, fns):
            yield stats
    finally:
        handle.remove()
