"""Sparse autoencoders trained through sae-lens on this toolkit's disk caches, and their quality.

This module gathers the SAE API under one name. The pieces live in :mod:`steering.sae_io` (the
on-disk format, sae-lens's own: :func:`save_sae`, :func:`load_sae`, :func:`check_sae_fits`,
:func:`encode`), :mod:`steering.sae_training` (:func:`train_sae` with sae-lens's ``SAETrainer``
on cached activations, the model never re-run) and :mod:`steering.sae_eval` (:func:`evaluate_sae`:
explained variance, L0, dead features, and the CE with the SAE spliced in).
"""

from interp.errors import SAEError
from steering.sae_eval import SAEEval, evaluate_sae
from steering.sae_io import CFG_FILE, WEIGHTS_FILE, check_sae_fits, encode, load_sae, save_sae
from steering.sae_training import (
    ARCHITECTURES,
    SAETrainConfig,
    SAETrainResult,
    _training_batches,  # benchmarks/sae_training.py times it
    train_sae,
)

__all__ = [
    "ARCHITECTURES",
    "CFG_FILE",
    "WEIGHTS_FILE",
    "SAEError",
    "SAEEval",
    "SAETrainConfig",
    "SAETrainResult",
    "_training_batches",
    "check_sae_fits",
    "encode",
    "evaluate_sae",
    "load_sae",
    "save_sae",
    "train_sae",
]
