"""Writing a shard: safetensors streamed from the tensors to disk, hashed on the way.

Writing the format directly (rather than ``safetensors.torch.save``) avoids holding a second
copy of the shard as one ``bytes`` object, and fixes the byte layout (tensors ordered by
element size then name, one metadata map with sorted keys), so the same tensors always give
the same file and checksum. Files open with ``safetensors`` as usual.
"""

import hashlib
import json
import struct
from pathlib import Path

import torch

from interp.atomic import atomic_open
from interp.fingerprint import tensor_bytes

ST_CODES = {
    torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
    torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
}
_CHUNK = 1 << 24


def write_shard(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> tuple[str, int]:
    """Write ``tensors`` atomically (temporary name, fsync, rename) as safetensors.

    Returns:
        ``("sha256:<hex>", size_in_bytes)`` of the file written.
    """
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for name in order:
        t = tensors[name]
        if t.dtype not in ST_CODES:
            raise TypeError(f"tensor {name!r} has dtype {t.dtype}, not one of {list(ST_CODES)}")
        n = t.numel() * t.element_size()
        header[name] = {
            "dtype": ST_CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]
        }
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned for memory-mapping
    h = hashlib.sha256()
    size = 0
    with atomic_open(path) as f:
        for piece in (struct.pack("<Q", len(raw)), raw):
            f.write(piece)
            h.update(piece)
            size += len(piece)
        for name in order:
            data = tensor_bytes(tensors[name])
            for i in range(0, len(data), _CHUNK):
                chunk = data[i : i + _CHUNK]
                f.write(chunk)
                h.update(chunk)
            size += len(data)
    return "sha256:" + h.hexdigest(), size
