"""interp: load a model with a fingerprint, hook it safely, cache its activations to disk.

The public names are imported lazily so that ``interp --help`` answers without importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "Model": "interp.models",
    "load_model": "interp.models",
    "as_model": "interp.models",
    "fingerprint_module": "interp.fingerprint",
    "resolve_hook_names": "interp.hooks",
    "hooks": "interp.hooks",
    "record": "interp.hooks",
    "patch": "interp.hooks",
    "add_vector": "interp.hooks",
    "ablate": "interp.hooks",
    "CacheConfig": "interp.cache",
    "build_cache": "interp.cache",
    "open_cache": "interp.cache",
    "verify_cache": "interp.cache",
    "build_paired_cache": "interp.cache",
    "open_paired_cache": "interp.cache",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'interp' has no attribute {name!r}") from None
    return getattr(import_module(module), name)
