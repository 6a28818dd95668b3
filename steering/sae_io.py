"""SAEs on disk and on cached activations: save, load, check the fit, encode.

An SAE is kept in sae-lens's on-disk format (``cfg.json`` + ``sae_weights.safetensors``), so
``sae_lens.SAE.load_from_disk`` opens it; where it came from (cache ID, model fingerprint, hook)
rides in ``cfg.json``'s ``metadata``, which sae-lens keeps as it is.
"""

import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from interp.atomic import fsync_dir
from interp.cache import Cache, open_cache
from interp.errors import SAEError

# The name these warnings were always logged under, before this module was split out of it.
log = logging.getLogger("steering.sae")

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


def _as_cache(cache: "Cache | str | Path") -> Cache:
    return cache if isinstance(cache, Cache) else open_cache(cache)


def _cache_d_in(cache: Cache, hook: str) -> int:
    """Size of one activation at ``hook`` (trailing axes flattened); HookNameError if absent."""
    return math.prod(cache[hook].shape[1:])


def _flat(x: Tensor) -> Tensor:
    return x.reshape(len(x), -1).float()


def save_sae(sae, path: str | Path) -> Path:
    """Save an sae-lens SAE in sae-lens's format (``cfg.json``, ``sae_weights.safetensors``).

    Each file is written under a temporary name and renamed, the config last, so a killed save
    never leaves a config beside half-written weights.

    Args:
        sae: an ``sae_lens.SAE``.
        path: the directory (created).

    Returns:
        The directory.

    Example:
        >>> import tempfile
        >>> from sae_lens import SAE, StandardSAE, StandardSAEConfig
        >>> sae = StandardSAE(StandardSAEConfig(d_in=4, d_sae=8))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     SAE.load_from_disk(str(save_sae(sae, tmp))).cfg.d_sae
        8
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp:
        sae.save_model(tmp)
        for name in (WEIGHTS_FILE, CFG_FILE):
            with open(Path(tmp) / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(Path(tmp) / name, path / name)
    fsync_dir(path)
    return path


def load_sae(path: str | Path, device: str = "cpu"):
    """Load an SAE saved by :func:`save_sae` or by sae-lens itself.

    Args:
        path: the directory holding ``cfg.json`` and ``sae_weights.safetensors``.
        device: where to put it.

    Returns:
        An ``sae_lens.SAE``.

    Raises:
        SAEError: the directory or a file is missing, or a file cannot be read.

    Example:
        >>> load_sae("/nonexistent")
        Traceback (most recent call last):
        ...
        interp.errors.SAEError: '/nonexistent' is not an SAE directory: cfg.json is missing
    """
    path = Path(path)
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise SAEError(f"{str(path)!r} is not an SAE directory: {name} is missing")
    from sae_lens import SAE

    try:
        return SAE.load_from_disk(str(path), device=device)
    except Exception as exc:  # json, safetensors and state-dict errors all mean a bad file
        raise SAEError(f"cannot load the SAE in {str(path)!r}: {type(exc).__name__}: {exc}") from exc


def check_sae_fits(sae, cache: "Cache | str | Path", hook: str) -> None:
    """Refuse an SAE whose input size differs from the cache's activations at ``hook``.

    Args:
        sae: an ``sae_lens.SAE``.
        cache: an opened cache or its directory.
        hook: the hook the SAE is to read.

    Raises:
        CacheError: no cache at that path.
        HookNameError: the cache lacks ``hook``.
        SAEError: ``d_in`` differs.

    Example:
        >>> check_sae_fits(None, "/nonexistent", "blocks.0.hook_resid_post")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    cache = _as_cache(cache)
    d_in = _cache_d_in(cache, hook)
    if int(sae.cfg.d_in) != d_in:
        raise SAEError(
            f"the SAE takes inputs of size d_in={sae.cfg.d_in}, but {hook!r} in cache "
            f"{str(cache.root)!r} has activations of size {d_in}"
        )
    trained_on = sae.cfg.metadata.get("hook_name")
    if trained_on not in (None, hook):
        log.warning("SAE was trained on %r, applied here to %r", trained_on, hook)


def encode(sae, acts: Float[Tensor, "batch ..."]) -> Float[Tensor, "batch d_sae"]:
    """Feature activations of a batch of cached activations (trailing axes flattened), no grad.

    Args:
        sae: an ``sae_lens.SAE``.
        acts: activations as read from a cache, any dtype.

    Returns:
        ``sae.encode`` of them as float32 on the SAE's device.

    Example:
        >>> from types import SimpleNamespace
        >>> double = SimpleNamespace(device="cpu", encode=lambda x: 2 * x)
        >>> encode(double, torch.ones(2, 1, 3, dtype=torch.bfloat16)).shape
        torch.Size([2, 3])
    """
    with torch.no_grad():
        return sae.encode(_flat(acts).to(sae.device))
