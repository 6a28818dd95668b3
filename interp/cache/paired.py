"""Paired caches: two or more models over the same token rows, aligned position by position."""

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from torch import Tensor

from interp.atomic import atomic_write_json
from interp.cache.build import build_cache
from interp.cache.config import CacheConfig
from interp.cache.format import safe_member
from interp.cache.reader import Cache, open_cache
from interp.errors import CacheError
from interp.models import load_model

PAIR_FORMAT = "interp.paired-cache/1"
PAIR_FILE = "pair.json"


class PairedCache:
    """Caches of several models over identical token rows (e.g. ``base`` and ``tuned``)."""

    def __init__(self, root: Path, caches: dict[str, Cache]) -> None:
        self.root = root
        self.caches = caches

    def __getitem__(self, label: str) -> Cache:
        if label not in self.caches:
            raise KeyError(f"no cache labelled {label!r}; labels are {list(self.caches)}")
        return self.caches[label]

    @property
    def labels(self) -> list[str]:
        return list(self.caches)

    def __repr__(self) -> str:
        ids = ", ".join(f"{k}={c.id[:15]}" for k, c in self.caches.items())
        return f"PairedCache({str(self.root)!r}, {ids})"

    def batches(
        self, hook: str, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> Iterator[dict[str, Tensor]]:
        """Aligned batches: the i-th rows of every label's batch are the same token position."""
        iters = {k: c.batches(hook, batch_size, shuffle, seed) for k, c in self.caches.items()}
        yield from (dict(zip(iters, parts, strict=False)) for parts in zip(*iters.values(), strict=True))


def _check_aligned(caches: Mapping[str, Cache]) -> None:
    first_label, first = next(iter(caches.items()))
    for label, cache in caches.items():
        same_rows = cache.manifest["prompts"]["sha256"] == first.manifest["prompts"]["sha256"]
        same_shards = [s["n_positions"] for s in cache.manifest["shards"]] == [
            s["n_positions"] for s in first.manifest["shards"]
        ]
        if not (same_rows and same_shards):
            raise CacheError(
                f"caches {first_label!r} and {label!r} are not over the same token rows and "
                "positions; they cannot be paired"
            )


def build_paired_cache(
    models: Mapping[str, object], prompts, out_dir: str | Path, config: CacheConfig,
    progress: bool = True,
) -> PairedCache:
    """Cache several models over the same token rows: ``out_dir/LABEL`` each, plus ``pair.json``.

    The first model tokenizes the prompts; the others run on its cached token rows, so the
    rows are identical even if tokenizers differ in settings.

    Args:
        models: label -> model or spec, e.g. ``{"base": ..., "tuned": ...}``.
        prompts: any prompt source, used for the first model.
        out_dir: the parent directory.
        config: the same settings for every model.
    """
    if len(models) < 2:
        raise ValueError(f"a paired cache needs at least two models, got {list(models)}")
    root = Path(out_dir)
    caches: dict[str, Cache] = {}
    for i, (label, model) in enumerate(models.items()):
        source = prompts if i == 0 else f"cache:{root / next(iter(models))}"
        caches[label] = build_cache(load_model(model), source, root / label, config, progress)
    _check_aligned(caches)
    atomic_write_json(
        root / PAIR_FILE,
        {
            "format": PAIR_FORMAT,
            "labels": list(caches),
            "caches": {k: {"dir": k, "id": c.id} for k, c in caches.items()},
            "rows_sha256": next(iter(caches.values())).manifest["prompts"]["sha256"],
        },
    )
    return PairedCache(root, caches)


def _well_formed(labels, entries) -> bool:
    if not isinstance(labels, list) or len(labels) < 2 or not isinstance(entries, dict):
        return False
    for label in labels:
        entry = entries.get(label) if isinstance(label, str) else None
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("dir", "id")):
            return False
    return True


def open_paired_cache(root: str | Path) -> PairedCache:
    """Open a paired cache written by :func:`build_paired_cache`, checking IDs and alignment."""
    root = Path(root)
    path = root / PAIR_FILE
    if not path.is_file():
        raise CacheError(f"{str(root)!r} is not a paired cache (no {PAIR_FILE})")
    try:
        pair = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(pair, dict) or pair.get("format") != PAIR_FORMAT:
        found = pair.get("format") if isinstance(pair, dict) else type(pair).__name__
        raise CacheError(f"{path}: format {found!r} is not {PAIR_FORMAT!r}")
    labels, entries = pair.get("labels"), pair.get("caches")
    if not _well_formed(labels, entries):
        raise CacheError(f"{path} is malformed: expected two or more labels, each with a dir and an id")
    caches = {}
    for label in labels:
        cache = open_cache(safe_member(root, entries[label]["dir"]))
        if cache.id != pair["caches"][label]["id"]:
            raise CacheError(
                f"cache {label!r} has ID {cache.id}, but {PAIR_FILE} records "
                f"{pair['caches'][label]['id']}"
            )
        caches[label] = cache
    _check_aligned(caches)
    return PairedCache(root, caches)
