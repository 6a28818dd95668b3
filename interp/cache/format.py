"""The on-disk format of an activation cache: manifest, canonical ID, shard files.

A cache directory holds ``manifest.json`` and ``shards/shard_NNNNN.safetensors``. The cache ID
is ``sha256:`` of the canonical manifest (sorted keys, no whitespace, the ``id`` and ``locator``
fields left out). The hashed part holds no timestamps and no host paths (a local checkpoint is
named by its directory's name; its full path is kept in ``locator`` as a hint for reloading),
so the same inputs give the same ID on any machine.
"""

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from interp.errors import CacheError
from interp.fingerprint import sha256_json

FORMAT = "interp.activation-cache/1"
MANIFEST = "manifest.json"
PARTIAL = "manifest.partial.json"
SHARD_DIR = "shards"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_ST_DTYPES = {
    "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
    "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool,
}


# Fields left out of the canonical form: the ID itself, and where this host found the model
# (an absolute checkpoint path), which says nothing about the content.
NOT_HASHED = ("id", "locator")


def cache_id(manifest: dict[str, Any]) -> str:
    """``sha256:`` of the canonical manifest, without its ``id`` and ``locator`` fields."""
    return sha256_json({k: v for k, v in manifest.items() if k not in NOT_HASHED})


def shard_name(index: int) -> str:
    return f"{SHARD_DIR}/shard_{index:05d}.safetensors"


def safe_member(root: Path, rel: str) -> Path:
    """Resolve a path named in a manifest, refusing any that leaves the cache directory."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise CacheError(f"shard path {rel!r} in the manifest is not a relative path")
    root_r = root.resolve()
    full = (root / rel).resolve()
    if full != root_r and root_r not in full.parents:
        raise CacheError(f"shard path {rel!r} in the manifest leaves the cache directory {root}")
    return full


def read_manifest(root: Path) -> dict[str, Any]:
    """Load ``manifest.json``, explaining a missing, partial or unreadable one."""
    path = root / MANIFEST
    if not root.is_dir():
        raise CacheError(f"cache directory {str(root)!r} does not exist")
    if not path.is_file():
        if (root / PARTIAL).is_file():
            raise CacheError(
                f"{str(root)!r} holds an incomplete cache build; rerun the same "
                "`interp cache build` command to resume it"
            )
        raise CacheError(f"{str(root)!r} is not an activation cache (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CacheError(f"{path}: format {found!r} is not {FORMAT!r}")
    return manifest


def check_id(manifest: dict[str, Any], where: Path) -> None:
    computed = cache_id(manifest)
    if manifest.get("id") != computed:
        raise CacheError(
            f"ID mismatch in {where / MANIFEST}: it records {manifest.get('id')!r} but its "
            f"content hashes to {computed!r}; the manifest was edited after the build"
        )


def mmap_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map every tensor of a safetensors file without reading its data.

    Pages are read from disk only when a tensor's elements are touched.
    """
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    size = path.stat().st_size
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    base = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        itemsize = torch.empty((), dtype=dtype).element_size()
        offset = base + start
        if offset % itemsize:
            raise CacheError(f"{path}: tensor {name!r} is not aligned; the shard is corrupt")
        t = torch.empty(0, dtype=dtype)
        t.set_(storage, offset // itemsize, tuple(info["shape"]))
        if (end - start) != t.numel() * itemsize:
            raise CacheError(f"{path}: tensor {name!r} has inconsistent size; the shard is corrupt")
        out[name] = t
    return out
