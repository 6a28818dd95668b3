"""Controls that a "reproduced" must survive: the model moved as far as the tune, at random.

:func:`noisy_copy` is ``base`` plus seeded Gaussian noise of the tune's relative weight change
(per tensor), the organism's analogue of the real suite's ``matched_noise``: a tune's effect
counts only where it exceeds what the same amount of random change does.
"""

import copy
import math

import torch

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
