"""Reading a cache: lazy memory-mapped tensors per hook, batch iterators, model checks."""

import hashlib
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.cache.format import check_id, mmap_tensors, read_header, read_manifest, safe_member
from interp.cache.integrity import check_manifest, check_shard, header_problem, rows_hash
from interp.errors import CacheError, HookNameError, ModelMismatchError
from interp.hooks import _unknown_message


class HookActivations:
    """The activations of one hook across all shards, memory-mapped, read on access.

    Indexing with an int, a slice or an index tensor returns a tensor ``[n, ...]``; only the
    pages touched are read from disk (and, from a cache opened with ``lazy_checksums``, each
    shard touched is checksummed once before its values are returned). ``shards`` holds the
    raw memory-mapped tensors, which are not checked.
    """

    def __init__(
        self, name: str, shards: Sequence[Tensor], touch: Callable[[int], None] | None = None
    ) -> None:
        self.name = name
        self.shards = list(shards)
        self._touch = touch
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
            self.touch(s)
            sel = shard == s
            out[sel] = self.shards[s][idx[sel] - self._starts[s]]
        return out

    def touch(self, shard: int) -> None:
        """Check shard ``shard`` (once) before its values are read."""
        if self._touch is not None:
            self._touch(shard)

    def to_tensor(self) -> Float[Tensor, "n ..."]:
        """Read everything into memory."""
        for s in range(len(self.shards)):
            self.touch(s)
        return torch.cat(self.shards)  # one copy out of the memory maps


class Cache:
    """An opened activation cache. Use :func:`open_cache`.

    Attributes:
        root: the directory.
        manifest: the parsed ``manifest.json``.
        lazy_checksums: checksum each shard the first time its tensors are read.
    """

    def __init__(self, root: Path, manifest: dict[str, Any], lazy_checksums: bool = True) -> None:
        self.root = root
        self.manifest = manifest
        self.lazy_checksums = lazy_checksums
        self._paths = [safe_member(root, s["file"]) for s in manifest["shards"]]
        self._summed: set[int] = set()
        self._rows_checked: set[int] = set()

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
            # the header again, in case the file changed since open: shapes must fit the manifest
            problem = header_problem(read_header(path)[0], entry, self.manifest)
            if problem:
                raise CacheError(f"shard {entry['file']!r} in {str(self.root)!r} {problem}")
            out.append(mmap_tensors(path))
        return out

    def _checksum(self, index: int) -> None:
        """Hash shard ``index``'s mapped bytes (once) and refuse it unless they match the manifest."""
        if not self.lazy_checksums or index in self._summed:
            return
        storage = next(iter(self._shards[index].values())).untyped_storage()
        raw = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),))
        data = memoryview(raw.numpy())
        h = hashlib.sha256()
        for i in range(0, len(data), 1 << 24):
            h.update(data[i : i + (1 << 24)])
        entry = self.manifest["shards"][index]
        if "sha256:" + h.hexdigest() != entry["sha256"]:
            raise CacheError(
                f"shard {entry['file']!r} in {str(self.root)!r} does not match its checksum in the "
                "manifest (changed or swapped since the cache was opened or built); "
                "run `interp cache verify` for details"
            )
        self._summed.add(index)

    def _check_rows(self, index: int) -> None:
        if index in self._rows_checked:
            return
        shard, entry = self._shards[index], self.manifest["shards"][index]
        if rows_hash(shard["row_tokens"], shard["row_offsets"], self._paths[index]) != entry["tokens_sha256"]:
            raise CacheError(
                f"shard {entry['file']!r} in {str(self.root)!r} holds other token rows than the "
                "manifest records; run `interp cache verify` for details"
            )
        self._rows_checked.add(index)

    def __getitem__(self, hook: str) -> HookActivations:
        if hook not in self.manifest["hooks"]:
            raise HookNameError(_unknown_message(hook, self.hooks))
        return HookActivations(hook, [s[hook] for s in self._shards], self._checksum)

    def _column(self, key: str) -> Tensor:
        for i in range(len(self._shards)):
            self._checksum(i)
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
        """The full token rows the activations were computed on, in order.

        Every shard's rows are checked against the manifest's ``tokens_sha256`` (which the
        manifest's ``prompts.sha256`` covers) before the first row is yielded.
        """
        for i in range(len(self._shards)):
            self._check_rows(i)
        for shard in self._shards:
            flat, offsets = shard["row_tokens"], shard["row_offsets"].tolist()
            for a, b in zip(offsets[:-1], offsets[1:], strict=False):
                yield flat[a:b].tolist()

    def row_tokens(self, row: int) -> list[int]:
        for i, (entry, shard) in enumerate(zip(self.manifest["shards"], self._shards, strict=False)):
            start, end = entry["rows"]
            if start <= row < end:
                self._check_rows(i)
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
            acts.touch(int(s))
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

    def load_model(self, model=None, device: str | None = None, **options):
        """The model this cache was built from, checked against the manifest's fingerprint.

        The manifest's ``locator`` (a host path, not part of the ID) only says where to look;
        whatever loads from it is used only if its weights hash to the recorded fingerprint.

        Args:
            model: a spec or model to use instead of the locator's spec.
            device: where to load it.
            options: further keyword arguments for :func:`interp.models.load_model` (spec only).

        Returns:
            The :class:`interp.models.Model`.

        Raises:
            ModelMismatchError: the model found is not the one the cache was built from.
            SpecError: the model cannot be loaded (the message names where it looked).
        """
        from interp.models import load_model

        spec = model if model is not None else self.model_locator
        loaded = load_model(spec, device=device, **options) if isinstance(spec, str) else load_model(spec)
        self.check_model(loaded)
        return loaded

    @property
    def model_locator(self) -> str:
        """Where this host would load the cache's model from (unhashed; checked on load)."""
        locator = self.manifest.get("locator")
        spec = locator.get("model_spec") if isinstance(locator, dict) else None
        return spec if isinstance(spec, str) and spec else self.manifest["model"]["spec"]

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


def open_cache(root: str | Path, model=None, lazy_checksums: bool = True) -> Cache:
    """Open a complete cache, checking what is cheap to check; activations are read lazily.

    Opening checks the manifest (its ID, and its structure: keys, types, row ranges and
    positions that add up) and, for every shard, its size, its safetensors header (tensor names,
    dtypes and shapes as the manifest says) and its token rows (hashed against the manifest's
    ``tokens_sha256``: a few bytes per token). That proves each shard holds this cache's rows in
    this cache's layout, but not that its activations are this cache's: a shard of another
    cache over the same rows (same model family, other weights) passes. Those bytes are checked
    by their full sha256, which ``verify_cache`` does for every shard and which the reader does
    lazily, once per shard, the first time a shard's tensors are read (``cache[hook]`` indexing,
    ``batches``, ``tokens``/``rows``/``positions``). The lazy check costs about one extra read
    of each shard (sha256 runs at ~1.6 GB/s here, about as fast as copying out of the page
    cache); pass ``lazy_checksums=False`` to skip it where the cache was verified already.

    Args:
        root: the cache directory.
        model: if given, refuse unless the cache came from this model.
        lazy_checksums: checksum each shard the first time its tensors are read.

    Raises:
        CacheError: no cache there, an incomplete build, an edited manifest (ID mismatch), a
            malformed manifest, a shard path leaving the directory, or a shard that is missing,
            has the wrong size, a header that does not fit the manifest, or other token rows.
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
    check_manifest(manifest, root)
    cache = Cache(root, manifest, lazy_checksums=lazy_checksums)
    for path, entry in zip(cache._paths, manifest["shards"], strict=True):
        check_shard(root, path, entry, manifest)
    if model is not None:
        cache.check_model(model)
    return cache
