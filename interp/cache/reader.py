"""Reading a cache: lazy memory-mapped tensors per hook, batch iterators, model checks."""

from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache.format import check_id, mmap_tensors, read_manifest, safe_member
from interp.errors import CacheError, HookNameError, ModelMismatchError
from interp.hooks import _unknown_message


class HookActivations:
    """The activations of one hook across all shards, memory-mapped, read on access.

    Indexing with an int, a slice or an index tensor returns a tensor ``[n, ...]``; only the
    pages touched are read from disk.
    """

    def __init__(self, name: str, shards: Sequence[Tensor]) -> None:
        self.name = name
        self.shards = list(shards)
        sizes = torch.tensor([len(s) for s in self.shards], dtype=torch.long)
        self._starts = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.shards[0].shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return self.shards[0].dtype

    def __repr__(self) -> str:
        return f"HookActivations({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, idx: int | slice | Sequence[int] | Tensor) -> Tensor:
        if isinstance(idx, int):
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} out of range for {len(self)} positions")
            return self[torch.tensor([idx % len(self)])][0]
        if isinstance(idx, slice):
            idx = torch.arange(len(self))[idx]
        if isinstance(idx, Tensor) and idx.dtype == torch.bool:  # a mask selects, as in torch
            if tuple(idx.shape) != (len(self),):
                raise IndexError(f"mask of shape {tuple(idx.shape)} for {len(self)} positions")
            idx = idx.nonzero().squeeze(1)
        idx = torch.as_tensor(idx, dtype=torch.long)
        if idx.numel() and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} positions")
        idx = idx % max(len(self), 1)
        shard = torch.searchsorted(self._starts, idx, right=True) - 1
        out = torch.empty((len(idx), *self.shape[1:]), dtype=self.dtype)
        for s in shard.unique().tolist():
            sel = shard == s
            out[sel] = self.shards[s][idx[sel] - self._starts[s]]
        return out

    def to_tensor(self) -> Float[Tensor, "n ..."]:
        """Read everything into memory."""
        return torch.cat(self.shards)  # one copy out of the memory maps


class Cache:
    """An opened activation cache. Use :func:`open_cache`.

    Attributes:
        root: the directory.
        manifest: the parsed ``manifest.json``.
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self._paths = [safe_member(root, s["file"]) for s in manifest["shards"]]

    def __repr__(self) -> str:
        return (
            f"Cache({str(self.root)!r}, id={self.id[:19]}..., hooks={len(self.hooks)}, "
            f"rows={self.n_rows}, positions={self.n_positions})"
        )

    @property
    def id(self) -> str:
        return self.manifest["id"]

    @property
    def hooks(self) -> list[str]:
        return list(self.manifest["hooks"])

    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def n_positions(self) -> int:
        return int(self.manifest["n_positions"])

    @property
    def model_fingerprint(self) -> str:
        return self.manifest["model"]["fingerprint"]

    @cached_property
    def _shards(self) -> list[dict[str, Tensor]]:
        out = []
        for path, entry in zip(self._paths, self.manifest["shards"], strict=True):
            if not path.is_file():
                raise CacheError(f"shard {entry['file']!r} is missing from {str(self.root)!r}")
            out.append(mmap_tensors(path))
        return out

    def __getitem__(self, hook: str) -> HookActivations:
        if hook not in self.manifest["hooks"]:
            raise HookNameError(_unknown_message(hook, self.hooks))
        return HookActivations(hook, [s[hook] for s in self._shards])

    def _column(self, key: str) -> Tensor:
        return torch.cat([s[key] for s in self._shards])

    @property
    def tokens(self) -> Int[Tensor, "n"]:  # noqa: F821
        """Token id at every cached position."""
        return self._column("tokens")

    @property
    def rows(self) -> Int[Tensor, "n"]:  # noqa: F821
        """Row (prompt) index of every cached position."""
        return self._column("row")

    @property
    def positions(self) -> Int[Tensor, "n"]:  # noqa: F821
        """Position within its row of every cached position."""
        return self._column("pos")

    def iter_row_tokens(self) -> Iterator[list[int]]:
        """The full token rows the activations were computed on, in order."""
        for shard in self._shards:
            flat, offsets = shard["row_tokens"], shard["row_offsets"].tolist()
            for a, b in zip(offsets[:-1], offsets[1:], strict=False):
                yield flat[a:b].tolist()

    def row_tokens(self, row: int) -> list[int]:
        for entry, shard in zip(self.manifest["shards"], self._shards, strict=False):
            start, end = entry["rows"]
            if start <= row < end:
                offsets = shard["row_offsets"]
                return shard["row_tokens"][offsets[row - start] : offsets[row - start + 1]].tolist()
        raise IndexError(f"row {row} out of range for {self.n_rows} rows")

    def batches(
        self,
        hook: str,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> Iterator[Float[Tensor, "batch ..."]]:
        """Iterate over a hook's activations in batches, reading one shard at a time.

        With ``shuffle``, shards are visited in a seeded random order and positions are
        permuted within each shard, so memory stays bounded by one shard.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        acts = self[hook]
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(acts.shards), generator=gen) if shuffle else range(len(acts.shards))
        carry: Tensor | None = None
        for s in order:
            shard = acts.shards[int(s)]
            block = shard[torch.randperm(len(shard), generator=gen)] if shuffle else shard.clone()
            if carry is not None:
                block = torch.cat([carry, block])
            n_full = len(block) // batch_size * batch_size
            for i in range(0, n_full, batch_size):
                yield block[i : i + batch_size]
            carry = block[n_full:]
        if carry is not None and len(carry) and not drop_last:
            yield carry

    def check_model(self, model) -> None:
        """Refuse a model whose weights differ from the ones the cache was built from.

        Raises:
            ModelMismatchError: naming both fingerprints.
        """
        fp = getattr(model, "fingerprint", None)
        if fp is None:
            from interp.models import as_model

            fp = as_model(model).fingerprint
        if fp != self.model_fingerprint:
            raise ModelMismatchError(
                f"cache {str(self.root)!r} was built from model {self.model_fingerprint} "
                f"({self.manifest['model']['spec']}), not from the given model {fp} "
                f"({getattr(model, 'spec', type(model).__name__)})"
            )


def open_cache(root: str | Path, model=None) -> Cache:
    """Open a complete cache lazily (nothing is read until a tensor is touched).

    Args:
        root: the cache directory.
        model: if given, refuse unless the cache came from this model.

    Raises:
        CacheError: no cache there, an incomplete build, an edited manifest (ID mismatch), a
            shard path leaving the directory, or a missing shard.
        ModelMismatchError: ``model`` is not the model the cache was built from.

    Example:
        >>> open_cache("/nonexistent")
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: cache directory '/nonexistent' does not exist
    """
    root = Path(root)
    manifest = read_manifest(root)
    check_id(manifest, root)
    cache = Cache(root, manifest)
    for path, entry in zip(cache._paths, manifest["shards"], strict=True):
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise CacheError(
                f"shard {entry['file']!r} in {str(root)!r} is missing or has the wrong size; "
                "run `interp cache verify` for details"
            )
    if model is not None:
        cache.check_model(model)
    return cache
