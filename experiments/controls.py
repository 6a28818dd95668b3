"""Controls that a "reproduced" must survive: the model moved as far as the tune, at random.

:func:`noisy_copy` is ``base`` plus seeded Gaussian noise of the tune's relative weight change
(per tensor), the organism's analogue of the real suite's ``matched_noise``: a tune's effect
counts only where it exceeds what the same amount of random change does.
"""

import copy
import math

import torch

from experiments.verdicts import Interval
from interp.models import Model

NOISE_SEED = 0


def noisy_copy(model: Model, relative_change: float, seed: int = NOISE_SEED) -> Model:
    """A copy of ``model`` plus seeded Gaussian noise, every parameter tensor moved by
    ``relative_change`` times its own norm, so that the whole relative weight change
    (:func:`interp.organism.rl.relative_weight_change`) is ``relative_change`` as well.

    Raises:
        ValueError: a ``relative_change`` that is not a finite number >= 0.
    """
    if not (
        isinstance(relative_change, int | float) and math.isfinite(relative_change) and relative_change >= 0
    ):
        raise ValueError(f"relative_change={relative_change!r}; expected a finite number >= 0")
    module = copy.deepcopy(model.module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            norm, z_norm = float(p.double().norm()), float(z.norm())
            if norm > 0 and z_norm > 0:
                p.add_((z * (relative_change * norm / z_norm)).to(p.dtype))
    return Model(module, model.tokenizer, f"{model.spec} + noise of relative norm {relative_change:.4g}")


def noise_like(ctx, name: str) -> tuple[float, Model]:
    """``base`` moved at random as far as zoo model ``name`` moved from it: ``(change, model)``,
    the change read from ``name``'s card (:func:`noisy_copy`)."""
    change = float(ctx.card(name).get("relative_weight_change") or 0.0)
    return change, noisy_copy(ctx.model("base"), change)


def beyond_control(fall: Interval | None, vs_control: Interval | None, direction: int = -1) -> str:
    """A tune's part of a finding: its change against base (``fall``) counts only when its change
    against the same-size control (``vs_control``) is beyond zero on the same side too.

    ``not reproduced`` when the change against base is not beyond zero, or it is but not against
    the control; ``not testable`` when it is and no control was measured (no evidence either way).

    Example:
        >>> down = {"estimate": -0.3, "low": -0.4, "high": -0.2}
        >>> flat = {"estimate": 0.0, "low": -0.1, "high": 0.1}
        >>> beyond_control(down, down), beyond_control(down, flat), beyond_control(down, None)
        ('reproduced', 'not reproduced', 'not testable')
    """
    from experiments.verdicts import interval_verdict

    if fall is None or interval_verdict(fall, direction) == "not reproduced":
        return "not reproduced"
    return interval_verdict(vs_control, direction) if vs_control else "not testable"
