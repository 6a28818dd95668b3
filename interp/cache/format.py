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
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\0" in rel:
        raise CacheError(f"shard path {rel!r} in the manifest is not a relative path")
    try:
        root_r = root.resolve()
        full = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise CacheError(f"shard path {rel!r} in {str(root)!r} cannot be resolved: {exc}") from None
    if full != root_r and root_r not in full.parents:
        raise CacheError(f"shard path {rel!r} in the manifest leaves the cache directory {root}")
    return full


def read_manifest(root: Path) -> dict[str, Any]:
    """Load ``manifest.json``, explaining a missing, partial or unreadable one."""
    path = root / MANIFEST
    if root.exists() and not root.is_dir():
        raise CacheError(f"{str(root)!r} is a file, not a cache directory")
    if not root.is_dir():
        raise CacheError(f"cache directory {str(root)!r} does not exist")
    if not path.is_file():
        if (root / PARTIAL).is_file():
            from interp.cache.lock import describe, holder_alive, read_lock

            holder = read_lock(root)
            if holder and holder_alive(holder):
                raise CacheError(
                    f"{str(root)!r} is being built by {describe(holder)}; wait for it to finish"
                )
            raise CacheError(
                f"{str(root)!r} holds an incomplete cache build; rerun the same "
                "`interp cache build` command to resume it"
            )
        raise CacheError(f"{str(root)!r} is not an activation cache (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
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


# A shard's header lists a few tensors; anything near this size is not one of ours.
MAX_HEADER_BYTES = 1 << 20


def read_header(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Parse and check a safetensors header without trusting any number in it.

    Returns:
        ``(tensors, data_start)``: name -> ``{"dtype", "shape", "data_offsets"}`` (offsets
        relative to ``data_start``), every entry checked against the file's size.

    Raises:
        CacheError: a header that is too long, not JSON, or describes tensors that do not fit.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CacheError(
                f"{path}: {size} bytes is too short for a safetensors file; the shard is corrupt"
            )
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise CacheError(
                f"{path}: header length {n} does not fit the file's {size} bytes; the shard is corrupt"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise CacheError(f"{path}: the safetensors header is not a JSON object; the shard is corrupt")
    base, room = 8 + n, size - 8 - n
    out: dict[str, dict[str, Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        out[name] = _check_entry(path, name, info, base, room)
    return out, base


def _check_entry(path: Path, name: str, info: Any, base: int, room: int) -> dict[str, Any]:
    def bad(why: str) -> CacheError:
        return CacheError(f"{path}: tensor {name!r} {why}; the shard is corrupt")

    if not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPES:
        raise bad(f"has no dtype among {sorted(_ST_DTYPES)}")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise bad(f"has shape {shape!r}, not a list of non-negative integers")
    if (
        not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
        or not offsets[0] <= offsets[1] <= room
    ):
        raise bad(f"has data offsets {offsets!r} outside the file's {room} data bytes")
    itemsize = torch.empty((), dtype=_ST_DTYPES[info["dtype"]]).element_size()
    numel = 1
    for d in shape:
        numel *= d
    if offsets[1] - offsets[0] != numel * itemsize:
        raise bad(f"of shape {shape} does not fill its {offsets[1] - offsets[0]} bytes")
    if (base + offsets[0]) % itemsize:
        raise bad("is not aligned")
    return {"dtype": info["dtype"], "shape": shape, "data_offsets": offsets}


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_tensor(path: Path, info: dict[str, Any], base: int) -> torch.Tensor:
    """Read one (checked) tensor of a shard into memory with plain file reads."""
    start, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(base + start)
        data = bytearray(f.read(end - start))
    if len(data) != end - start:
        raise CacheError(f"{path}: the file ended inside a tensor; the shard is corrupt")
    dtype = _ST_DTYPES[info["dtype"]]
    if not data:
        return torch.empty(info["shape"], dtype=dtype)
    return torch.frombuffer(data, dtype=dtype).reshape(info["shape"])


def mmap_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map every tensor of a safetensors file without reading its data.

    Pages are read from disk only when a tensor's elements are touched. Every offset and
    length in the header is checked against the file's size first.

    Raises:
        CacheError: a header that does not describe this file.
    """
    infos, base = read_header(path)
    size = path.stat().st_size
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    out: dict[str, torch.Tensor] = {}
    for name, info in infos.items():
        dtype = _ST_DTYPES[info["dtype"]]
        itemsize = torch.empty((), dtype=dtype).element_size()
        t = torch.empty(0, dtype=dtype)
        t.set_(storage, (base + info["data_offsets"][0]) // itemsize, tuple(info["shape"]))
        out[name] = t
    return out
