"""Content hashes that say exactly which model, tokenizer or token rows an artifact came from."""

import hashlib
import json
from collections.abc import Iterable, Mapping

import torch
from torch import nn

_CHUNK = 1 << 24  # hash big tensors in 16 MiB pieces to keep the extra memory small


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor, for any dtype (bfloat16 included)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def fingerprint_state(state: Mapping[str, torch.Tensor]) -> str:
    """Hash names, shapes, dtypes and bytes of every tensor, in sorted name order.

    Args:
        state: a state dict (``module.state_dict()``).

    Returns:
        ``"sha256:<hex>"``.

    Example:
        >>> import torch
        >>> a = fingerprint_state({"w": torch.zeros(2)})
        >>> a == fingerprint_state({"w": torch.zeros(2)}), a == fingerprint_state({"w": torch.ones(2)})
        (True, False)
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        header = json.dumps([name, list(t.shape), str(t.dtype).removeprefix("torch.")])
        h.update(header.encode() + b"\0")
        data = tensor_bytes(t)
        for i in range(0, len(data), _CHUNK):
            h.update(data[i : i + _CHUNK])
    return "sha256:" + h.hexdigest()


def fingerprint_module(module: nn.Module) -> str:
    """Fingerprint of a module's weights and buffers (see :func:`fingerprint_state`)."""
    return fingerprint_state(module.state_dict())


def sha256_file(path) -> str:
    """``sha256:`` of a file's bytes, read in pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical_json(obj: object) -> bytes:
    """JSON with sorted keys and no whitespace: the form that IDs are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256_json(obj: object) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(obj)).hexdigest()


def tokenizer_hash(vocab: Mapping[str, int], extra: Mapping[str, object] | None = None) -> str:
    """Hash of a tokenizer's vocabulary (and any special-token settings in ``extra``)."""
    return sha256_json({"vocab": sorted(vocab.items(), key=lambda kv: kv[1]), "extra": extra or {}})


def hash_token_rows(rows: Iterable[Iterable[int]] | torch.Tensor) -> str:
    """Hash of token rows, with row boundaries, as int32."""
    h = hashlib.sha256()
    for row in rows:
        if isinstance(row, torch.Tensor):
            arr = row.to(torch.int32)
        else:
            arr = torch.as_tensor(list(row), dtype=torch.int32)
        h.update(len(arr).to_bytes(4, "little"))
        h.update(tensor_bytes(arr))
    return "sha256:" + h.hexdigest()
