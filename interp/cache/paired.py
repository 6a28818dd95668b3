"""Paired caches: two or more models over the same token rows, aligned position by position."""

import json
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.atomic import atomic_write_json
from interp.cache.build import build_cache
from interp.cache.config import CacheConfig
from interp.cache.distributed import current_world, settle
from interp.cache.format import safe_member
from interp.cache.reader import Cache, open_cache
from interp.errors import CacheError
from interp.models import load_model

PAIR_FORMAT = "interp.paired-cache/1"
PAIR_FILE = "pair.json"
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a label names a subdirectory

log = logging.getLogger(__name__)


def check_labels(labels) -> None:
    """Refuse labels that cannot name a subdirectory of the pair, or that repeat.

    Raises:
        CacheError: naming the label and what is accepted.

    Example:
        >>> check_labels(["base", "../tuned"])
        Traceback (most recent call last):
        ...
        interp.errors.CacheError: label '../tuned' cannot name a cache in the pair; expected ...
    """
    seen: set[str] = set()
    for label in labels:
        if not isinstance(label, str) or not LABEL_PATTERN.fullmatch(label) or label == PAIR_FILE:
            raise CacheError(
                f"label {label!r} cannot name a cache in the pair; expected letters, digits, '_', "
                f"'.' or '-', starting with a letter or digit (at most 64), like base or sft-50"
            )
        if label in seen:
            raise CacheError(f"label {label!r} is given twice; each model of a pair needs its own label")
        seen.add(label)


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
    progress: bool = True, load_options: Mapping[str, Any] | None = None,
) -> PairedCache:
    """Cache several models over the same token rows: ``out_dir/LABEL`` each, plus ``pair.json``.

    The first model tokenizes the prompts; the others run on its cached token rows, so the
    rows are identical even if tokenizers differ in settings (a warning says when they do; a
    model whose vocabulary lacks a token of the rows is refused before it runs). Models given
    as specs are loaded one at a time. ``pair.json`` is written last: a build that fails part
    way leaves complete caches (and resumable partial ones) but no pair, and rerunning the same
    call reuses them. Under ``torchrun`` every rank makes the same call: each cache is built
    across the ranks (see :func:`build_cache`) and rank 0 writes ``pair.json``.

    Args:
        models: label -> model or spec, e.g. ``{"base": ..., "tuned": ...}``; each label names
            a subdirectory (letters, digits, ``_ . -``).
        prompts: any prompt source, used for the first model.
        out_dir: the parent directory.
        config: the same settings for every model.
        progress: show progress bars.
        load_options: keyword arguments for :func:`interp.models.load_model` (``device``,
            ``dtype``, ``prepend_bos``), for the models given as specs.

    Returns:
        The :class:`PairedCache`.

    Raises:
        ValueError: fewer than two models.
        CacheError: a bad or repeated label; a model whose vocabulary cannot read the rows; the
            caches do not align; and whatever :func:`build_cache` raises.
    """
    if len(models) < 2:
        raise ValueError(f"a paired cache needs at least two models, got {list(models)}")
    check_labels(list(models))
    root = Path(out_dir)
    caches: dict[str, Cache] = {}
    first_label = next(iter(models))
    for i, (label, spec) in enumerate(models.items()):
        model = load_model(spec, **(load_options or {})) if isinstance(spec, str) else load_model(spec)
        if i:
            _check_reads_rows(model, label, caches[first_label], first_label)
        source = prompts if i == 0 else f"cache:{root / first_label}"
        caches[label] = build_cache(model, source, root / label, config, progress)
        del model  # one model in memory at a time
    _check_aligned(caches)
    pair = {
        "format": PAIR_FORMAT,
        "labels": list(caches),
        "caches": {k: {"dir": k, "id": c.id} for k, c in caches.items()},
        "rows_sha256": next(iter(caches.values())).manifest["prompts"]["sha256"],
    }
    world = current_world()  # under torchrun each cache above was built by every rank
    settle(world, (lambda: atomic_write_json(root / PAIR_FILE, pair)) if world.lead else None)
    return PairedCache(root, caches)


def _check_reads_rows(model, label: str, first: Cache, first_label: str) -> None:
    """Refuse a model whose vocabulary lacks a token of the first cache's rows; warn on another tokenizer."""
    top = max((max(row) for row in first.iter_row_tokens() if row), default=-1)
    if top >= model.d_vocab:
        raise CacheError(
            f"model {label!r} ({model.spec}) has a vocabulary of {model.d_vocab} tokens, but the "
            f"token rows of {first_label!r} use id {top}; a paired cache needs models that share "
            "a tokenizer"
        )
    theirs, ours = first.manifest["tokenizer"].get("hash"), model.tokenizer_hash()
    if theirs and ours and theirs != ours:
        log.warning(
            "model %r (%s) has another tokenizer (%s) than %r (%s); it runs on %r's token rows",
            label, model.spec, ours, first_label, theirs, first_label,
        )


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
