"""Steering with SAE features: a feature's decoder row as a steering vector, and feature clamping.

:func:`from_sae_feature` turns ``W_dec[feature]`` into a
:class:`~steering.steering_vector.SteeringVector`; :func:`clamp_feature` sets one feature's
activation at the SAE's hook for the forward passes in its body, and :func:`amplify_feature`
multiplies it (both at any ``positions``, which may be a selector of the tokens seen so far).
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from interp.errors import ModelMismatchError
from interp.hooks import Positions, patch, resolve_hook_names
from steering.steering_vector import SteeringVector, model_meta


def _sae_hook(sae, hook_name: str | None) -> str:
    if hook_name is not None:
        return hook_name
    name = getattr(getattr(getattr(sae, "cfg", None), "metadata", None), "hook_name", None)
    if not name:
        raise ValueError("the SAE does not say which hook it reads (cfg.metadata.hook_name); pass hook_name")
    return str(name)


def _decoder_row(sae, feature: int | None) -> Tensor:
    W = sae.W_dec if hasattr(sae, "W_dec") else sae
    if not isinstance(W, Tensor):
        raise TypeError(f"expected a tensor or an object with W_dec, got {type(sae).__name__}")
    if W.dim() == 1:
        return W.detach().float()
    if feature is None or not 0 <= feature < W.shape[0]:
        raise ValueError(f"feature={feature!r}; expected an index in [0, {W.shape[0]}) of W_dec")
    return W[feature].detach().float()


def from_sae_feature(
    sae,
    feature: int | None = None,
    hook_name: str | None = None,
    model=None,
) -> SteeringVector:
    """A steering vector along an SAE feature's decoder direction ``W_dec[feature]``.

    Args:
        sae: an object with ``W_dec`` ``[d_sae, d_model]`` (an sae-lens SAE), a ``W_dec`` tensor,
            or one direction ``[d_model]``.
        feature: the feature's index (not needed for a single direction).
        hook_name: where to add it; default ``sae.cfg.metadata.hook_name``.
        model: the model it is meant for, recorded in the metadata (``None``: only ``d_model`` is
            checked on apply).

    Raises:
        ValueError: a feature out of range, or no hook name.

    Example:
        >>> v = from_sae_feature(torch.eye(3), 1, hook_name="blocks.0.hook_resid_post")
        >>> v.directions["blocks.0.hook_resid_post"].tolist()
        [0.0, 1.0, 0.0]
    """
    direction = _decoder_row(sae, feature)
    hook = _sae_hook(sae, hook_name)
    meta = {
        "method": "sae_feature",
        "d_model": direction.shape[0],
        "model": model_meta(model) if model is not None else None,
        "provenance": {"source": "sae", "feature": feature, "hook_name": hook, "sae": type(sae).__name__},
    }
    return SteeringVector({hook: direction.clone()}, meta)


@contextmanager
def clamp_feature(
    model,
    sae,
    feature: int,
    value: float,
    positions: Positions = None,
    hook_name: str | None = None,
) -> Iterator[None]:
    """Set an SAE feature's activation to ``value`` at the chosen positions.

    At the SAE's hook, ``x`` becomes ``x + (value - f(x)) * W_dec[feature]`` where ``f(x)`` is the
    feature's current activation (``sae.encode``): only the feature's share of the
    reconstruction changes, and the SAE's reconstruction error stays in ``x``. Re-encoding gives
    exactly ``value`` when ``W_enc[:, feature] . W_dec[feature] = 1`` and the other features do not
    see ``W_dec[feature]`` (e.g. a tied, orthonormal dictionary); otherwise approximately.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        sae: an object with ``encode(x)`` and ``W_dec`` (an sae-lens SAE).
        feature: the feature's index.
        value: its new activation (``0`` ablates it).
        positions: where (see :mod:`interp.hooks`); ``None``: everywhere.
        hook_name: default ``sae.cfg.metadata.hook_name``.

    Raises:
        ValueError: a feature out of range or no hook name.
        ModelMismatchError: the SAE's width differs from the hook's.
    """
    with _rewrite_feature(model, sae, feature, lambda f: torch.full_like(f, value), positions, hook_name):
        yield


@contextmanager
def amplify_feature(
    model,
    sae,
    feature: int,
    factor: float,
    positions: Positions = None,
    hook_name: str | None = None,
) -> Iterator[None]:
    """Multiply an SAE feature's activation by ``factor`` at the chosen positions (Galichin et al.
    2025 amplify reasoning features found by ReasonScore in the model they came from).

    At the SAE's hook, ``x`` becomes ``x + (factor - 1) * f(x) * W_dec[feature]``: where the
    feature is silent nothing changes; ``factor = 0`` ablates it, ``1`` leaves ``x`` as it is.
    Re-encoding gives exactly ``factor * f(x)`` under the condition :func:`clamp_feature` states.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens module.
        sae: an object with ``encode(x)`` and ``W_dec`` (an sae-lens SAE).
        feature: the feature's index.
        factor: the multiplier (a finite number).
        positions: where (see :mod:`interp.hooks`); ``None``: everywhere.
        hook_name: default ``sae.cfg.metadata.hook_name``.

    Raises:
        ValueError: a feature out of range, a non-finite factor or no hook name.
        ModelMismatchError: the SAE's width differs from the hook's.
    """
    if not math.isfinite(factor):
        raise ValueError(f"factor={factor!r}; expected a finite number")
    with _rewrite_feature(model, sae, feature, lambda f: factor * f, positions, hook_name):
        yield


def _decoded_row(sae, feature: int) -> Tensor:
    """What one unit of ``feature`` adds to the SAE's reconstruction: ``decode(e_f) - decode(0)``.

    This is ``W_dec[feature]`` for a plain decoder, and ``W_dec[feature] / |W_dec[feature]|`` for
    an sae-lens TopK SAE with ``rescale_acts_by_decoder_norm`` (whose decode divides by the row's
    norm), so a clamp moves the feature by what the SAE's own decode means by it."""
    row = _decoder_row(sae, feature)
    if not callable(getattr(sae, "decode", None)):
        return row
    W = sae.W_dec
    units = torch.zeros(2, W.shape[0], dtype=W.dtype, device=W.device)
    units[0, feature] = 1.0
    with torch.no_grad():
        out = sae.decode(units)
    return (out[0] - out[1]).detach().reshape(-1)


@contextmanager
def _rewrite_feature(model, sae, feature: int, new_value, positions: Positions, hook_name: str | None):
    """Move the SAE's reconstruction along the feature's decoded row so the feature reads ``new_value(f)``."""
    direction = _decoded_row(sae, feature)
    hook = _sae_hook(sae, hook_name)
    resolve_hook_names(model, hook)

    def rewrite(x: Tensor) -> Tensor:
        if x.shape[-1] != direction.shape[0]:
            raise ModelMismatchError(
                f"SAE of width {direction.shape[0]} cannot read {hook!r}, whose width is {x.shape[-1]}"
            )
        with torch.no_grad():
            f = sae.encode(x)[..., feature]
        d = direction.to(device=x.device, dtype=x.dtype)
        return x + (new_value(f) - f).to(x.dtype)[..., None] * d

    with patch(model, {hook: rewrite}, positions=positions):
        yield
