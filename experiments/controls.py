"""Controls that a "reproduced" must survive: the model moved as far as the tune, at random.

The noise itself is :mod:`probes.damage.noise`, shared with the real-model suite:
:func:`noise_like` is ``base`` plus seeded Gaussian noise of the tune's own change, tensor by
tensor (:func:`probes.damage.noise.matched_noise`); :func:`noisy_copy` is ``base`` plus noise of
one relative size (for a dose where no tune of that size exists). A tune's effect counts only
where it exceeds what the same amount of random change does.
"""

from experiments.verdicts import Interval
from interp.models import Model
from probes.damage.noise import NOISE_SEED, matched_noise, noisy_copy

__all__ = ["NOISE_SEED", "beyond_control", "noise_like", "noisy_copy"]


def noise_like(ctx, name: str) -> tuple[float, Model]:
    """``base`` moved at random as far as zoo model ``name`` moved from it, tensor by tensor:
    ``(change, model)``, ``change`` the relative weight change on ``name``'s card
    (:func:`probes.damage.noise.matched_noise`)."""
    change = float(ctx.card(name).get("relative_weight_change") or 0.0)
    return change, matched_noise(ctx.model("base"), ctx.model(name))


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
