"""What a cache's bytes must satisfy before anything in them is trusted.

Three levels, from cheap to complete:

- the manifest's structure (every key, type and range; rows and positions that add up), checked
  whenever a manifest is read, so no number in it is used before it is checked;
- each shard's safetensors header against the manifest (tensor names, dtypes, shapes) and the
  shard's token rows against the manifest's ``tokens_sha256``: cheap, done by ``open_cache``;
- each shard's full sha256: done by ``verify``, on resume, and lazily by the reader the first
  time a shard's tensors are read.
"""

import hashlib
from pathlib import Path
from typing import Any

import torch

from interp.cache.format import DTYPES, FORMAT, read_header, read_tensor
from interp.errors import CacheError
from interp.fingerprint import hash_token_rows

BOOKKEEPING = {"tokens": "I32", "row": "I64", "pos": "I32", "row_tokens": "I32", "row_offsets": "I64"}
_STORE_CODES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
_SHARD_KEYS = ("file", "sha256", "bytes", "rows", "n_positions", "tokens_sha256")


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _digest(x: Any) -> bool:
    return isinstance(x, str) and x.startswith("sha256:") and len(x) == 71


def rows_sha256(entries: list[dict[str, Any]]) -> str:
    """The manifest's ``prompts.sha256``: a hash over every shard's ``tokens_sha256``, in order."""
    return "sha256:" + hashlib.sha256("".join(e["tokens_sha256"] for e in entries).encode()).hexdigest()


def shard_entry_problem(entry: Any, index: int) -> str | None:
    """Why a manifest's (or partial manifest's) shard entry is malformed, or ``None``."""
    where = f"shard entry {index}"
    if not isinstance(entry, dict):
        return f"{where} is {type(entry).__name__}, not an object"
    missing = [k for k in _SHARD_KEYS if k not in entry]
    if missing:
        return f"{where} lacks {missing}"
    if not isinstance(entry["file"], str) or not _digest(entry["sha256"]) or not _digest(
        entry["tokens_sha256"]
    ):
        return f"{where} has a malformed file name or sha256"
    rows = entry["rows"]
    if not (isinstance(rows, list) and len(rows) == 2 and all(_count(r) for r in rows) and rows[0] < rows[1]):
        return f"{where} has rows {rows!r}, not [start, end] with 0 <= start < end"
    for key in ("bytes", "n_positions"):
        if not _count(entry[key]):
            return f"{where} has {key} {entry[key]!r}, not a non-negative integer"
    return None


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """The first structural problem of a complete manifest, or ``None`` if it is well formed.

    Checks keys and types, that shard row ranges are contiguous from 0 to ``n_rows``, that
    positions add up to ``n_positions``, and that ``prompts.sha256`` covers the shards' rows.
    Allocates nothing from the numbers it checks.
    """
    top = {
        "format": str, "id": str, "model": dict, "tokenizer": dict, "hooks": list, "prompts": dict,
        "config": dict, "versions": dict, "n_rows": int, "n_positions": int, "shapes": dict,
        "shards": list,
    }
    missing = [k for k in top if k not in manifest]
    if missing:
        return f"the manifest lacks {missing}"
    for key, kind in top.items():
        if not isinstance(manifest[key], kind) or isinstance(manifest[key], bool):
            return f"the manifest's {key!r} is {type(manifest[key]).__name__}, not {kind.__name__}"
    if manifest["format"] != FORMAT:
        return f"format {manifest['format']!r} is not {FORMAT!r}"
    model = manifest["model"]
    if not isinstance(model.get("fingerprint"), str) or not isinstance(model.get("spec"), str):
        return "the manifest's model lacks a fingerprint or spec"
    hooks = manifest["hooks"]
    if not hooks or not all(isinstance(h, str) for h in hooks) or len(set(hooks)) != len(hooks):
        return f"the manifest's hooks {hooks!r} are not a non-empty list of distinct names"
    shapes = manifest["shapes"]
    if set(shapes) != set(hooks):
        return f"the manifest's shapes name {sorted(shapes)}, not its hooks {sorted(hooks)}"
    for h, shape in shapes.items():
        if not isinstance(shape, list) or not all(_count(d) and d > 0 for d in shape):
            return f"the manifest's shape of {h!r} is {shape!r}, not a list of positive integers"
    config = manifest["config"]
    if config.get("dtype") not in DTYPES:
        return f"the manifest's dtype {config.get('dtype')!r} is not one of {sorted(DTYPES)}"
    batch = config.get("batch_size")
    if not _count(batch) or batch < 1:
        return f"the manifest's batch_size {batch!r} is not a positive integer"
    positions = config.get("positions")
    if positions not in ("all", "last") and not (
        isinstance(positions, list) and positions
        and all(isinstance(p, int) and not isinstance(p, bool) for p in positions)
    ):
        return f"the manifest's positions {positions!r} are not 'all', 'last' or a list of integers"
    prompts = manifest["prompts"]
    if not _count(prompts.get("count")) or not _digest(prompts.get("sha256")):
        return "the manifest's prompts lack a row count or sha256"
    for key in ("n_rows", "n_positions"):
        if not _count(manifest[key]):
            return f"the manifest's {key} {manifest[key]!r} is not a non-negative integer"
    shards = manifest["shards"]
    if not shards:
        return "the manifest lists no shards"
    end = 0
    for i, entry in enumerate(shards):
        problem = shard_entry_problem(entry, i)
        if problem:
            return problem
        if entry["rows"][0] != end:
            return f"shard entry {i} starts at row {entry['rows'][0]}, not {end} where the previous ended"
        end = entry["rows"][1]
    if end != manifest["n_rows"] or prompts["count"] != manifest["n_rows"]:
        return (
            f"the shards cover {end} rows but the manifest records n_rows {manifest['n_rows']} "
            f"and {prompts['count']} prompts"
        )
    if sum(e["n_positions"] for e in shards) != manifest["n_positions"]:
        return "the shards' positions do not add up to the manifest's n_positions"
    if rows_sha256(shards) != prompts["sha256"]:
        return "the manifest's prompts.sha256 does not cover its shards' token rows"
    return None


def check_manifest(manifest: dict[str, Any], root: Path) -> None:
    """Raise :class:`CacheError` naming the manifest's first structural problem."""
    problem = manifest_problem(manifest)
    if problem:
        raise CacheError(f"{root / 'manifest.json'} is malformed: {problem}")


def header_problem(
    infos: dict[str, dict[str, Any]], entry: dict[str, Any], manifest: dict[str, Any]
) -> str | None:
    """How a shard's safetensors header disagrees with its manifest entry, or ``None``."""
    hooks = manifest["hooks"]
    want_names = set(hooks) | set(BOOKKEEPING)
    if set(infos) != want_names:
        extra, lacking = sorted(set(infos) - want_names), sorted(want_names - set(infos))
        parts = ([f"holds tensors {extra} the manifest does not name"] if extra else []) + (
            [f"lacks tensors {lacking} the manifest names"] if lacking else []
        )
        return " and ".join(parts)
    n_pos, n_rows = entry["n_positions"], entry["rows"][1] - entry["rows"][0]
    store = _STORE_CODES[manifest["config"]["dtype"]]
    want = {
        "tokens": [n_pos], "row": [n_pos], "pos": [n_pos], "row_offsets": [n_rows + 1],
        **{h: [n_pos, *manifest["shapes"][h]] for h in hooks},
    }
    for name, info in infos.items():
        dtype = BOOKKEEPING.get(name, store)
        if info["dtype"] != dtype:
            return f"stores {name!r} as {info['dtype']}, not {dtype}"
        if name in want and info["shape"] != want[name]:
            return f"holds {name!r} of shape {info['shape']}, but the manifest says {want[name]}"
    if len(infos["row_tokens"]["shape"]) != 1:
        return f"holds 'row_tokens' of shape {infos['row_tokens']['shape']}, not one dimension"
    return None


def shard_rows_sha256(path: Path, infos: dict[str, dict[str, Any]], base: int) -> str:
    """Hash a shard's token rows (``row_tokens`` cut at ``row_offsets``), reading only those."""
    flat = read_tensor(path, infos["row_tokens"], base)
    offsets = read_tensor(path, infos["row_offsets"], base)
    return rows_hash(flat, offsets, path)


def rows_hash(flat: torch.Tensor, offsets: torch.Tensor, where: Path) -> str:
    """``hash_token_rows`` of the rows that ``offsets`` cut ``flat`` into, after checking the cuts."""
    if (
        len(offsets) < 2 or int(offsets[0]) != 0 or int(offsets[-1]) != len(flat)
        or bool((offsets[1:] <= offsets[:-1]).any())
    ):
        raise CacheError(f"{where}: row_offsets do not cut row_tokens into rows; the shard is corrupt")
    cuts = offsets.tolist()
    return hash_token_rows(flat[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True))


def check_shard(root: Path, path: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The cheap checks ``open_cache`` makes of one shard: size, header, token rows.

    They show that the shard holds the manifest's token rows in the manifest's layout; they
    cannot show that its activations are the ones hashed into the ID (a shard of another cache
    over the same rows passes): that takes the full sha256 (``verify``, or the reader's lazy
    check on first read).

    Raises:
        CacheError: naming the shard and what disagrees.
    """
    name = entry["file"]
    if not path.is_file() or path.stat().st_size != entry["bytes"]:
        raise CacheError(
            f"shard {name!r} in {str(root)!r} is missing or has the wrong size; "
            "run `interp cache verify` for details"
        )
    infos, base = read_header(path)
    problem = header_problem(infos, entry, manifest)
    if problem:
        raise CacheError(f"shard {name!r} in {str(root)!r} {problem}; it does not belong to this cache")
    if shard_rows_sha256(path, infos, base) != entry["tokens_sha256"]:
        raise CacheError(
            f"shard {name!r} in {str(root)!r} holds other token rows than the manifest records "
            f"({entry['tokens_sha256']}); it does not belong to this cache"
        )
