"""The state of a build in progress on disk: partial manifests (one per rank), their merge and
checks on resume, shards dropped for recomputation, and cleanup of what a build wrote."""

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from interp.atomic import atomic_write_json
from interp.cache.format import PARTIAL, SHARD_DIR, safe_member, shard_name
from interp.cache.integrity import shard_entry_problem
from interp.cache.lock import LOCK
from interp.errors import CacheError
from interp.fingerprint import sha256_file

log = logging.getLogger(__name__)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return keys


# A rank other than 0 of a distributed build records its shards here (rank 0 uses PARTIAL), so
# each file has one writer; the next build, on any number of ranks, merges them.
RANK_PARTIAL = re.compile(r"manifest\.partial\.rank[0-9]+\.json(\.tmp)?")


def partial_name(rank: int) -> str:
    """The partial manifest that ``rank`` writes: ``PARTIAL`` for rank 0 (and a single process)."""
    return PARTIAL if rank == 0 else f"manifest.partial.rank{rank}.json"


def check_not_foreign(root: Path) -> None:
    """Refuse a directory that holds anything but a (partial) build's own files."""
    # A build killed before its first partial manifest leaves an empty shards/ and maybe the
    # manifest's temporary file: those are its own, and a rerun must resume over them.
    own = {SHARD_DIR, PARTIAL, PARTIAL + ".tmp", LOCK}
    if root.exists() and any(
        (p.name not in own and not RANK_PARTIAL.fullmatch(p.name)) or (p.name == SHARD_DIR and not p.is_dir())
        for p in root.iterdir()
    ):
        raise CacheError(f"{str(root)!r} exists and is not an activation cache; refusing to write there")


def load_state(root: Path, header: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The partial build to resume (every rank's record merged), checked and re-hashed.

    Returns ``(state, merged)``: ``merged`` names the ranks' own partial manifests that
    :func:`save_state` removes once the merged state is written.

    Raises:
        CacheError: a partial build with other settings, or a damaged partial manifest.
    """
    partial_path = root / PARTIAL
    state = None
    sources = [PARTIAL] if partial_path.is_file() else []
    sources += sorted(
        p.name
        for p in root.iterdir()
        if RANK_PARTIAL.fullmatch(p.name) and p.is_file() and not p.name.endswith(".tmp")
    )
    for name in sources:
        other = read_partial(root, name)
        diff = diff_keys(other["header"], header)
        if diff:
            raise CacheError(
                f"{str(root)!r} holds a partial build with other settings ("
                + "; ".join(diff[:5])
                + "); rerun the original command or delete the directory"
            )
        if state is None:
            state = other
            continue
        for i, entry in enumerate(other["shards"]):
            if entry is not None:
                set_entry(state["shards"], i, entry, replace=False)
        state["shapes"] = state["shapes"] or other["shapes"]
    if state is not None:
        drop_bad_shards(root, state["shards"])
        log.info("resuming %s after %d complete shards", root, sum(e is not None for e in state["shards"]))
    else:
        state = {"header": header, "shards": [], "shapes": {}}
    (root / SHARD_DIR).mkdir(exist_ok=True)
    for tmp in (root / SHARD_DIR).glob("*.tmp"):
        tmp.unlink()  # a shard whose write was interrupted
    return state, [name for name in sources if name != PARTIAL]


def save_state(root: Path, state: dict[str, Any], merged: list[str]) -> None:
    """Write ``state`` as ``PARTIAL``, then remove the ranks' partial manifests merged into it."""
    atomic_write_json(root / PARTIAL, state)
    for name in merged:
        (root / name).unlink(missing_ok=True)


def set_entry(entries: list, index: int, entry, replace: bool = True) -> None:
    while len(entries) <= index:
        entries.append(None)
    if replace or entries[index] is None:
        entries[index] = entry


def discard(root: Path) -> None:
    """Remove everything a build writes (not the directory, which may be the user's)."""
    shutil.rmtree(root / SHARD_DIR, ignore_errors=True)
    for name in (PARTIAL, PARTIAL + ".tmp"):
        (root / name).unlink(missing_ok=True)
    if root.is_dir():
        for p in root.iterdir():
            if RANK_PARTIAL.fullmatch(p.name):
                p.unlink(missing_ok=True)


def drop_bad_shards(root: Path, entries: list[dict[str, Any] | None], rehash: bool = True) -> bool:
    """Forget (so that the build recomputes) every shard that is missing or altered on disk.

    With ``rehash`` every shard is read and hashed against its recorded sha256; without it
    only existence and size are checked. Returns whether any shard was dropped.
    """
    dropped = False
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        path = safe_member(root, entry["file"])
        if not path.is_file():
            why = "is missing"
        elif path.stat().st_size != entry["bytes"]:
            why = "has the wrong size"
        elif rehash and sha256_file(path) != entry["sha256"]:
            why = "does not match its checksum"
        else:
            continue
        log.warning("shard %s in %s %s; recomputing it", entry["file"], root, why)
        path.unlink(missing_ok=True)
        entries[i] = None
        dropped = True
    return dropped


def read_partial(root: Path, name: str = PARTIAL) -> dict[str, Any]:
    """Load and check a partial manifest; ``None`` entries are shards to recompute."""
    try:
        state = json.loads((root / name).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        state = exc
    damaged = f"{root / name} is damaged"
    if not isinstance(state, dict) or not {"header", "shards", "shapes"} <= set(state):
        raise CacheError(f"{damaged}; delete {str(root)!r} and rebuild")
    if (
        not isinstance(state["header"], dict)
        or not isinstance(state["shapes"], dict)
        or not isinstance(state["shards"], list)
    ):
        raise CacheError(f"{damaged} (wrong types); delete {str(root)!r} and rebuild")
    for i, entry in enumerate(state["shards"]):
        if entry is None:
            continue
        problem = shard_entry_problem(entry, i)
        if problem is None and entry["file"] != shard_name(i):
            problem = f"shard entry {i} names {entry['file']!r}, not {shard_name(i)!r}"
        if problem:
            raise CacheError(f"{damaged}: {problem}; delete {str(root)!r} and rebuild")
    return state
