"""Random weight changes of a tune's size: the control a fine-tune's effect must beat.

A tune's effect on a model (knowledge lost, markers gone, KL moved onto some tokens) counts only
where it exceeds what the same amount of *random* change does. Both test beds use the same two
controls from here:

- :func:`matched_noise`: ``base`` plus seeded Gaussian noise whose norm, tensor by tensor, is the
  norm of the tune's own change of that tensor (so where the tune moved a layer a lot, the noise
  moves it as much; the whole relative change is the tune's too);
- :func:`noisy_copy`: ``base`` plus noise of one relative size for every tensor, for a dose where
  no tune of that size exists (finding 7's matched-size comparison).

Both return a new :class:`interp.models.Model` (``base`` is left unchanged) with its fingerprint
recomputed, so a cache built from the control never passes for one of ``base``.
"""

import copy
import math

import torch

from interp.errors import DamageError
from interp.models import Model
from probes.damage.weights import check_same_architecture

NOISE_SEED = 0


def matched_noise(base: Model, tuned: Model, seed: int = NOISE_SEED) -> Model:
    """``base`` plus seeded Gaussian noise with, in every parameter tensor, the norm of
    ``tuned``'s change of that tensor (``||W_tuned - W_base||``).

    Raises:
        DamageError: the two models differ in architecture, tokenizer or parameter shapes.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=4, d_head=4, d_vocab=5, act_fn="relu")
        >>> a = Model(HookedTransformer(cfg), None, "a"); b = Model(HookedTransformer(cfg), None, "b")
        >>> _ = b.module.load_state_dict(a.module.state_dict()); _ = b.module.blocks[0].mlp.W_in.data.add_(1)
        >>> n = matched_noise(a, b)
        >>> w = "blocks.0.mlp.W_in"
        >>> p = lambda m: dict(m.module.named_parameters())[w]
        >>> round(float((p(n) - p(a)).norm() / (p(b) - p(a)).norm()), 4)
        1.0
    """
    check_same_architecture(base, tuned)
    theirs = dict(tuned.module.named_parameters())
    with torch.no_grad():
        norms = {
            name: float((theirs[name].double() - p.double().to(theirs[name].device)).norm())
            for name, p in base.module.named_parameters()
        }
    return _with_noise(base, norms, seed, f"{base.spec} + noise matched to {tuned.spec}")


def noisy_copy(model: Model, relative_change: float, seed: int = NOISE_SEED) -> Model:
    """``model`` plus seeded Gaussian noise, every parameter tensor moved by ``relative_change``
    times its own norm, so that the whole relative weight change
    (:func:`interp.organism.rl.relative_weight_change`) is ``relative_change`` as well.

    Raises:
        DamageError: a ``relative_change`` that is not a finite number >= 0.
    """
    ok = isinstance(relative_change, int | float)
    if not (ok and math.isfinite(relative_change) and relative_change >= 0):
        raise DamageError(f"relative_change={relative_change!r}; expected a finite number >= 0")
    with torch.no_grad():
        norms = {
            name: relative_change * float(p.double().norm()) for name, p in model.module.named_parameters()
        }
    return _with_noise(model, norms, seed, f"{model.spec} + noise of relative norm {relative_change:.4g}")


def _with_noise(model: Model, norms: dict[str, float], seed: int, spec: str) -> Model:
    """A deep copy of ``model`` with ``norms[name]`` of seeded Gaussian noise added to each tensor
    (drawn in float64, in the order of ``named_parameters``, so a seed gives the same control)."""
    module = copy.deepcopy(model.module)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            z_norm = float(z.norm())
            if norms[name] > 0 and z_norm > 0:
                p.add_((z * (norms[name] / z_norm)).to(device=p.device, dtype=p.dtype))
    control = Model(module, model.tokenizer, spec)
    control.refresh_fingerprint()
    return control
