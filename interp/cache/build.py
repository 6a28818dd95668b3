"""Streaming, resumable, atomic construction of an activation cache."""

import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import interp
from interp.architecture import architecture_of
from interp.atomic import atomic_write_json
from interp.cache.capture import capture_rows, check_per_position
from interp.cache.config import CacheConfig
from interp.cache.distributed import World, current_world
from interp.cache.format import (
    DTYPES,
    FORMAT,
    MANIFEST,
    PARTIAL,
    SHARD_DIR,
    cache_id,
    shard_name,
)
from interp.cache.integrity import rows_sha256
from interp.cache.lock import build_lock
from interp.cache.resume import (
    RANK_PARTIAL,
    check_not_foreign,
    diff_keys,
    discard,
    drop_bad_shards,
    load_state,
    partial_name,
    save_state,
    set_entry,
)
from interp.cache.shardio import write_shard
from interp.errors import CacheError, InterpError
from interp.fingerprint import hash_token_rows
from interp.hooks import resolve_hook_names
from interp.models import as_model
from interp.prompts import resolve_prompts

log = logging.getLogger(__name__)


@dataclass
class _RowStats:
    """What the row stream saw, for the warnings and refusals after a build."""

    rows: int = 0
    cut: int = 0
    longest: int = 0


def _token_rows(model, source, config: CacheConfig, stats: _RowStats) -> Iterator[list[int]]:
    """Token rows from the source, cut to ``max_seq_len`` and capped at ``max_tokens``."""
    limit = config.max_seq_len or model.n_ctx
    stream = source.token_rows(model)  # chat messages are rendered through the model's template
    budget = config.max_tokens
    for row in stream:
        row = list(row)
        if len(row) > limit:
            stats.cut += 1
            row = row[:limit]
        if not row:
            continue
        stats.rows += 1
        stats.longest = max(stats.longest, len(row))
        if budget is not None:
            if budget <= 0:
                return
            row = row[:budget]
            budget -= len(row)
        yield row


def _shards(rows: Iterator[list[int]], config: CacheConfig) -> Iterator[list[list[int]]]:
    """Group rows into shards of at most ``shard_tokens`` kept positions (rows never split)."""
    shard: list[list[int]] = []
    kept = 0
    for row in rows:
        n = len(config.kept_positions(len(row)))
        if shard and kept + n > config.shard_tokens:
            yield shard
            shard, kept = [], 0
        shard.append(row)
        kept += n
    if shard:
        yield shard


def _tokenizer_record(model) -> dict[str, Any]:
    record = getattr(model, "tokenizer_record", None)
    return dict(record()) if callable(record) else {"hash": model.tokenizer_hash()}


def _header(model, hooks: list[str], source, config: CacheConfig) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": {**model.describe(), "architecture": architecture_of(model)},
        "tokenizer": _tokenizer_record(model),
        "hooks": hooks,
        "prompts": {"source": source.description},
        "config": config.recipe(),
        "versions": {"interp": interp.__version__, "torch": torch.__version__.split("+")[0]},
    }


def _compute_shard(
    rows: list[list[int]], model, hooks: list[str], config: CacheConfig, row_start: int, bar
) -> dict[str, torch.Tensor]:
    """Run the model over one shard's rows and gather everything the shard file holds."""
    kept = [config.kept_positions(len(r)) for r in rows]
    n_pos = sum(len(k) for k in kept)
    store = DTYPES[config.dtype]
    buffers: dict[str, torch.Tensor] = {}
    offset = 0
    for b in range(0, len(rows), config.batch_size):
        batch, batch_kept = rows[b : b + config.batch_size], kept[b : b + config.batch_size]
        acts = capture_rows(model, batch, batch_kept, hooks, config.early_stop, dtype=store)
        n = sum(len(k) for k in batch_kept)
        for name, act in acts.items():
            if name not in buffers:
                buffers[name] = torch.empty((n_pos, *act.shape[1:]), dtype=store)
            buffers[name][offset : offset + n] = act
        offset += n
        bar.update(sum(len(r) for r in batch))
    return {
        "tokens": torch.tensor([r[p] for r, k in zip(rows, kept, strict=True) for p in k], dtype=torch.int32),
        "row": torch.tensor([row_start + i for i, k in enumerate(kept) for _ in k], dtype=torch.int64),
        "pos": torch.tensor([p for k in kept for p in k], dtype=torch.int32),
        "row_tokens": torch.tensor([t for r in rows for t in r], dtype=torch.int32),
        "row_offsets": torch.tensor([0, *torch.tensor([len(r) for r in rows]).cumsum(0).tolist()]),
        **buffers,
    }


def _write_shard(
    root: Path, index: int, tensors: dict[str, torch.Tensor], rows: list[list[int]], row_start: int
) -> dict[str, Any]:
    """Write one shard file (atomically) and return its manifest entry."""
    name = shard_name(index)
    digest, size = write_shard(root / name, tensors, {"format": FORMAT})
    return {
        "file": name,
        "sha256": digest,
        "bytes": size,
        "rows": [row_start, row_start + len(rows)],
        "n_positions": len(tensors["pos"]),
        "tokens_sha256": hash_token_rows(rows),
    }


def build_cache(model, prompts, out_dir: str | Path, config: CacheConfig, progress: bool = True):
    """Stream activations into a cache directory; rerunning on a partial one resumes it.

    Memory stays bounded by two shards (one being computed, one being hashed and written on a
    writer thread), whatever the number of tokens. Shards are written under a temporary name
    and renamed when complete; a build killed at any point resumes where it stopped and ends
    with the same cache ID as an uninterrupted build. Resuming re-hashes every shard already
    written against the partial manifest and recomputes any that is missing or altered, and no
    manifest is written while a shard it names is missing. The build holds ``build.lock`` in
    the directory for its whole lifetime, so a second build into it fails at once.

    When ``torch.distributed`` is initialised (``torchrun``, or ``init_process_group`` before
    the call), every rank must call this with the same arguments: the shards (the same ones a
    single process cuts) are dealt round robin to the ranks, each rank computes and writes its
    own, and rank 0, which holds the lock, checks them all and writes the manifest. The cache
    ID is the single-process build's. See :mod:`interp.cache.ranks`.

    Args:
        model: a :class:`interp.models.Model` or TransformerLens model.
        prompts: any prompt source :func:`interp.prompts.resolve_prompts` accepts.
        out_dir: the cache directory (created; an existing complete cache with the same settings
            is returned as is).
        config: what to cache.
        progress: show a progress bar.

    Returns:
        The finished :class:`interp.cache.Cache`.

    Raises:
        HookNameError: an unknown hook, before anything is written.
        CacheError: ``out_dir`` is a file, holds something else, a cache or partial build with
            other settings, or another build's lock; the prompts give no tokens or the
            positions keep none; writing failed (disk full, read-only); ranks were given
            different settings. Nothing is left behind unless complete shards were written,
            which a rerun resumes.
    """
    world = current_world()
    if world.distributed:
        from interp.cache.ranks import build_across_ranks

        return build_across_ranks(world, model, prompts, Path(out_dir), config, progress)

    model, hooks, source, header = prepare_build(model, prompts, Path(out_dir), config)
    root = Path(out_dir)
    cache = existing_cache(root, header, model)
    if cache is not None:
        return cache
    check_not_foreign(root)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    with build_lock(root):
        try:
            return _build_locked(root, model, hooks, source, header, config, progress)
        except BaseException:
            if created and not any((root / SHARD_DIR).glob("*.safetensors")):
                shutil.rmtree(root, ignore_errors=True)  # nothing worth resuming: leave nothing
            raise


def prepare_build(model, prompts, root: Path, config: CacheConfig):
    """``(model, hooks, source, header)``: everything checked before the directory is touched."""
    model = as_model(model)
    hooks = resolve_hook_names(model, config.hooks)
    check_per_position(hooks)
    source = resolve_prompts(prompts)
    header = _header(model, hooks, source, config)
    if root.exists() and not root.is_dir():
        raise CacheError(f"output directory {str(root)!r} is a file; give a directory for the cache")
    return model, hooks, source, header


def existing_cache(root: Path, header: dict[str, Any], model):
    """The complete cache in ``root`` if it has these settings, ``None`` if there is none.

    Raises:
        CacheError: a complete cache with other settings (or of another model).
    """
    from interp.cache.reader import open_cache

    if not (root / MANIFEST).is_file():
        return None
    cache = open_cache(root)
    existing = cache.manifest
    recorded = {k: existing.get(k) for k in header}
    recorded["prompts"] = {"source": existing["prompts"].get("source")}
    diff = diff_keys(recorded, header)
    if diff:
        raise CacheError(
            f"{str(root)!r} already holds a complete cache with other settings ("
            + "; ".join(diff[:5])
            + "); choose another output directory"
        )
    cache.check_model(model)
    return cache


def _build_locked(root: Path, model, hooks, source, header, config: CacheConfig, progress: bool):
    from interp.cache.reader import open_cache

    state, merged = load_state(root, header)
    resumed = any(e is not None for e in state["shards"])
    stats = _RowStats()
    try:
        save_state(root, state, merged)
        for _ in range(3):
            stats = _RowStats()
            row, n_shards = _stream_shards(root, state, model, hooks, source, config, progress, stats)
            if not drop_bad_shards(root, state["shards"], rehash=False):
                break  # every shard named is on disk
        else:
            raise CacheError(f"shards in {str(root)!r} keep disappearing while the build runs")
    except (InterpError, ValueError, OSError) as exc:
        # Bad input found mid-stream (an unknown word, a hook of the wrong shape) or a failed
        # write: leave nothing half-written. Complete shards stay for a rerun to resume.
        kept = [e for e in state["shards"] if e is not None]
        if not kept and not resumed:
            discard(root)
        if isinstance(exc, OSError):
            raise write_error(root, exc, len(kept)) from exc
        raise
    finish(root, model, header, state, row, n_shards, stats, config)
    return open_cache(root, model=model)


def write_error(root: Path, exc: OSError, kept: int) -> CacheError:
    """One line for a failed write, saying what a rerun will resume."""
    where = f": {exc.filename!r}" if exc.filename else ""
    hint = (
        f"; the {kept} complete shards are kept: fix that and rerun the same command to resume"
        if kept
        else "; nothing was written"
    )
    return CacheError(f"cannot write the cache in {str(root)!r}: {exc.strerror or exc}{where}{hint}")


def finish(
    root: Path,
    model,
    header: dict[str, Any],
    state: dict[str, Any],
    row: int,
    n_shards: int,
    stats: _RowStats,
    config: CacheConfig,
) -> str:
    """Write the manifest over the complete shards of ``state``; return the cache ID."""
    done = state["shards"]
    if not done:
        discard(root)
        raise CacheError("the prompt source gave no tokens; nothing to cache (nothing was written)")
    if len(done) > n_shards:
        raise CacheError(f"the partial build in {str(root)!r} has more shards than the prompts give")
    if stats.cut:
        limit = config.max_seq_len or model.n_ctx
        (log.info if config.max_seq_len else log.warning)(
            "%d of %d rows were longer than %d tokens (%s) and were cut to that length",
            stats.cut,
            stats.rows,
            limit,
            "--max-seq-len" if config.max_seq_len else "the model's context length",
        )
    n_positions = sum(s["n_positions"] for s in done)
    if n_positions == 0:
        discard(root)
        raise CacheError(
            f"positions {config.recipe()['positions']} keep no position of any of the {row} rows "
            f"(the longest has {stats.longest} tokens); nothing was cached"
        )

    manifest = {
        **header,
        "prompts": {**header["prompts"], "count": row, "sha256": rows_sha256(done)},
        "n_rows": row,
        "n_positions": n_positions,
        "shapes": state["shapes"],
        "shards": done,
    }
    manifest["locator"] = {"model_spec": model.spec}
    manifest["id"] = cache_id(manifest)
    atomic_write_json(root / MANIFEST, manifest)
    (root / PARTIAL).unlink()
    for p in root.iterdir():
        if RANK_PARTIAL.fullmatch(p.name):
            p.unlink(missing_ok=True)
    log.info("cache %s complete: %s", root, manifest["id"])
    return manifest["id"]


def shard_layout(index: int, rows: list[list[int]], row_start: int, config: CacheConfig) -> dict[str, Any]:
    """What a shard's manifest entry must say about its rows (all but the file's own bytes)."""
    return {
        "file": shard_name(index),
        "rows": [row_start, row_start + len(rows)],
        "n_positions": sum(len(config.kept_positions(len(r))) for r in rows),
        "tokens_sha256": hash_token_rows(rows),
    }


def _stream_shards(
    root: Path,
    state: dict[str, Any],
    model,
    hooks: list[str],
    source,
    config: CacheConfig,
    progress: bool,
    stats: _RowStats,
    world: World | None = None,
    layout: list | None = None,
) -> tuple[int, int]:
    """Compute and write every shard not yet in ``state``; return (rows seen, shards seen).

    ``state["shards"]`` may hold ``None`` for a shard dropped on resume: it is recomputed in
    its place. Under several ranks only this rank's shards (``world.mine``) are computed, and
    recorded in this rank's partial manifest; ``layout``, if given, receives every shard's
    :func:`shard_layout`.
    """
    world = world or World()
    torch.manual_seed(config.seed)
    partial_path = root / partial_name(world.rank)
    done = state["shards"]
    row = n_shards = 0

    def commit(index: int, entry: dict[str, Any], shapes: dict[str, list[int]]) -> None:
        set_entry(done, index, entry)
        state["shapes"] = state["shapes"] or shapes
        atomic_write_json(partial_path, state)

    # One writer thread hashes and writes shard k while the model computes shard k+1; waiting
    # for it before queueing the next keeps at most two shards in memory.
    with (
        ThreadPoolExecutor(max_workers=1) as writer,
        tqdm(desc=f"cache {root.name}", unit="tok", disable=not progress) as bar,
    ):
        pending = None
        for index, rows in enumerate(_shards(_token_rows(model, source, config, stats), config)):
            if layout is not None:
                layout.append(shard_layout(index, rows, row, config))
            if not world.mine(index):
                pass
            elif index < len(done) and done[index] is not None:
                if hash_token_rows(rows) != done[index]["tokens_sha256"]:
                    raise CacheError(
                        f"the prompts no longer match shard {index} of the partial build in "
                        f"{str(root)!r}; the prompt source changed since the build started"
                    )
                bar.update(sum(len(r) for r in rows))
            else:
                tensors = _compute_shard(rows, model, hooks, config, row, bar)
                shapes = {h: list(tensors[h].shape[1:]) for h in hooks}
                if pending is not None:
                    commit(pending[0], pending[1].result(), pending[2])
                pending = (index, writer.submit(_write_shard, root, index, tensors, rows, row), shapes)
                del tensors
            row += len(rows)
            n_shards += 1
        if pending is not None:
            commit(pending[0], pending[1].result(), pending[2])
    return row, n_shards
