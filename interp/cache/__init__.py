"""Activation caches on disk: the citable artifact (see DESIGN.md, "Activation caches")."""

from interp.cache.build import build_cache
from interp.cache.config import CacheConfig
from interp.cache.paired import PairedCache, build_paired_cache, open_paired_cache
from interp.cache.reader import Cache, HookActivations, open_cache
from interp.cache.verify import VerifyReport, verify_cache

__all__ = [
    "Cache",
    "CacheConfig",
    "HookActivations",
    "PairedCache",
    "VerifyReport",
    "build_cache",
    "build_paired_cache",
    "open_cache",
    "open_paired_cache",
    "verify_cache",
]
