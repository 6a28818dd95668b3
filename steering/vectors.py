"""Steering vectors: per-layer directions added to the residual stream, and SAE-feature clamping.

This module gathers the steering-vector API under one name. The pieces live in
:mod:`steering.steering_vector` (:class:`SteeringVector`: save, load, the model policy and
``apply``), :mod:`steering.contrastive` (difference of means and PCA over prompts or cached
positions) and :mod:`steering.sae_steering` (an SAE feature's decoder row, feature clamping)::

    vec = from_prompts(model, positive, negative, layer_hooks([4]))
    with vec.apply(model, scale=4.0):
        model(tokens)
"""

from interp.errors import VectorFileError
from steering.contrastive import (
    PromptPositions,
    from_cache,
    from_prompts,
    mean_difference,
    pca_difference,
    prompt_activations,
)
from steering.sae_steering import amplify_feature, clamp_feature, from_sae_feature
from steering.steering_vector import (
    ARCH_KEYS,
    META_FILE,
    TENSORS_FILE,
    SteeringVector,
    layer_hooks,
    model_meta,
    random_direction,
)

__all__ = [
    "ARCH_KEYS",
    "META_FILE",
    "TENSORS_FILE",
    "PromptPositions",
    "SteeringVector",
    "VectorFileError",
    "amplify_feature",
    "clamp_feature",
    "from_cache",
    "from_prompts",
    "from_sae_feature",
    "layer_hooks",
    "mean_difference",
    "model_meta",
    "pca_difference",
    "prompt_activations",
    "random_direction",
]
