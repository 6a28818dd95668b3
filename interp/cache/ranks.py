"""A cache build split over the ranks of ``torch.distributed``: the same shards, the same ID.

Every rank reads the whole prompt source and cuts it into the shards a single process would
(tokenizing is cheap next to the forward passes); shard ``k`` is rank ``k % world_size``'s.
The build runs in four steps, each ended by a sync point at which a failure on any rank stops
every rank with one line naming it (:func:`interp.cache.distributed.settle`), so no rank waits
forever on one that failed:

1. every rank checks its arguments; unless all ranks have the same settings (the manifest's
   header: model fingerprint, tokenizer, hooks, prompts, config) and output directory, every
   rank refuses, naming the first difference;
2. rank 0 checks the directory, takes ``build.lock`` and holds it to the end (the other ranks
   write under it, after checking that they see it: that shows the directory is shared), and
   merges every partial manifest of an earlier run, re-hashing the shards they name;
3. every rank computes and writes its shards that no record names (atomically, as a single
   process does), recording each in its own partial manifest (rank 0 ``manifest.partial.json``,
   rank ``r`` ``manifest.partial.rank{r}.json``: one writer per file), so a rerun after any rank
   was killed, on any number of ranks or in one process, recomputes only the missing shards;
4. rank 0 checks every shard (size, header, token rows against the rows it cut itself) and
   writes the manifest; a shard that vanished meanwhile sends every rank back to step 3.

Nothing about the ranks enters the manifest, so the ID is the single-process build's.
"""

import logging
import shutil
import socket
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

from interp.cache.build import _RowStats, _stream_shards, existing_cache, finish, prepare_build, write_error
from interp.cache.config import CacheConfig
from interp.cache.distributed import World, settle
from interp.cache.format import SHARD_DIR, read_header, safe_member
from interp.cache.integrity import header_problem, shard_rows_sha256
from interp.cache.lock import build_lock, describe, read_lock
from interp.cache.resume import check_not_foreign, diff_keys, discard, load_state, save_state, set_entry
from interp.errors import CacheError

log = logging.getLogger(__name__)

ROUNDS = 3


def build_across_ranks(world: World, model, prompts, root: Path, config: CacheConfig, progress: bool):
    """:func:`interp.cache.build_cache` on every rank of ``world`` (see the module's docstring)."""
    from interp.cache.reader import open_cache

    parts: dict[str, Any] = {}

    def check_args() -> dict[str, Any]:
        parts["model"], parts["hooks"], parts["source"], parts["header"] = prepare_build(
            model, prompts, root, config
        )
        return {
            "settings": {"header": parts["header"], "out": str(root)},
            "place": [socket.gethostname(), str(parts["model"].device)],
        }

    seen = settle(world, check_args)
    _agree(world, [s["settings"] for s in seen])
    _warn_shared_devices(world, [s["place"] for s in seen])
    lead = _Lead(root, parts["header"], parts["model"]) if world.lead else None
    with ExitStack() as stack:
        try:
            start = settle(world, (lambda: lead.prepare(stack)) if lead else None)[0]
            if start["complete"]:
                return existing_cache(root, parts["header"], parts["model"])
            _rounds(world, root, parts, config, progress, start, lead)
        except BaseException:
            if lead is not None:
                lead.clean_up()
            raise
    return open_cache(root, model=parts["model"])


def _agree(world: World, settings: list[dict[str, Any]]) -> None:
    for rank, other in enumerate(settings[1:], 1):
        if other != settings[0]:
            diff = diff_keys(settings[0], other)
            raise CacheError(
                f"rank {rank} of {world.size} was given other build settings than rank 0 ("
                + "; ".join(diff[:3])
                + "); every rank must run the same command on the same inputs"
            )


def _warn_shared_devices(world: World, places: list[list[str]]) -> None:
    owners: dict[tuple[str, str], list[int]] = {}
    for rank, (host, device) in enumerate(places):
        owners.setdefault((host, device), []).append(rank)
    for (host, device), ranks in owners.items():
        if world.lead and device.startswith("cuda") and len(ranks) > 1:
            log.warning(
                "ranks %s all run on %s of %s; give each rank its own GPU (cuda:LOCAL_RANK)",
                ranks,
                device,
                host,
            )


class _Lead:
    """What rank 0 alone does: the directory, the lock, the partial state, the manifest."""

    def __init__(self, root: Path, header: dict[str, Any], model) -> None:
        self.root, self.header, self.model = root, header, model
        self.created = self.locked = self.resumed = False

    def prepare(self, stack: ExitStack) -> dict[str, Any]:
        root = self.root
        if existing_cache(root, self.header, self.model) is not None:
            return {"complete": True}
        check_not_foreign(root)
        self.created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        stack.enter_context(build_lock(root))
        self.locked = True
        state, merged = load_state(root, self.header)
        self.resumed = any(e is not None for e in state["shards"])
        try:
            save_state(root, state, merged)
        except OSError as exc:
            raise write_error(root, exc, 0) from exc
        return {"complete": False, "state": state, "lock": read_lock(root)}

    def check_and_finish(
        self,
        world: World,
        results: list[dict[str, Any]],
        state: dict[str, Any],
        layout: list,
        hooks: list[str],
        config: CacheConfig,
        stats: _RowStats,
    ) -> dict[str, Any]:
        """Merge the ranks' entries, check every shard, and write the manifest if all are there."""
        for result in results:
            for index, entry in result["entries"].items():
                set_entry(state["shards"], int(index), entry)
            state["shapes"] = state["shapes"] or result["shapes"]
        dropped = False
        for index, want in enumerate(layout):
            owner = index % world.size
            entry = state["shards"][index] if index < len(state["shards"]) else None
            if entry is None:
                raise CacheError(f"shard {index} of {str(self.root)!r} was not written by rank {owner}")
            if any(entry[k] != v for k, v in want.items()):
                raise CacheError(
                    f"shard {index} of {str(self.root)!r}, written by rank {owner}, holds other token "
                    "rows than rank 0 cuts from the prompts; every rank must read the same prompts"
                )
            problem = _shard_problem(self.root, entry, hooks, state["shapes"], config.dtype)
            if problem:
                log.warning("shard %s in %s %s; recomputing it", entry["file"], self.root, problem)
                safe_member(self.root, entry["file"]).unlink(missing_ok=True)
                state["shards"][index] = None
                dropped = True
        if dropped:
            save_state(self.root, state, [])
            return {"done": False, "state": state}
        ours = results[0]
        finish(self.root, self.model, self.header, state, ours["row"], ours["n_shards"], stats, config)
        return {"done": True}

    def clean_up(self) -> None:
        """After a failure: leave nothing behind unless complete shards were written."""
        if not self.locked or self.resumed or any((self.root / SHARD_DIR).glob("*.safetensors")):
            return
        if self.created:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            discard(self.root)


def _shard_problem(root: Path, entry: dict[str, Any], hooks, shapes, dtype: str) -> str | None:
    """What ``open_cache`` would find wrong with a shard just written, or ``None``."""
    path = safe_member(root, entry["file"])
    if not path.is_file():
        return "is missing"
    if path.stat().st_size != entry["bytes"]:
        return "has the wrong size"
    try:
        infos, base = read_header(path)
        problem = header_problem(infos, entry, {"hooks": hooks, "shapes": shapes, "config": {"dtype": dtype}})
        if problem is None and shard_rows_sha256(path, infos, base) != entry["tokens_sha256"]:
            problem = "holds other token rows than its record"
    except CacheError as exc:
        problem = str(exc)
    return problem


def _rounds(world: World, root: Path, parts, config: CacheConfig, progress: bool, start, lead) -> None:
    """Steps 3 and 4 of the module's docstring, repeated while shards vanish."""
    state = start["state"]
    for _ in range(ROUNDS):
        stats = _RowStats()
        layout: list = []
        results = settle(
            world,
            partial(_stream_mine, world, root, state, parts, config, progress, stats, layout, start["lock"]),
        )
        check = lead and partial(
            lead.check_and_finish, world, results, state, layout, parts["hooks"], config, stats
        )
        verdict = settle(world, check)[0]
        if verdict["done"]:
            return
        state = verdict["state"]
    raise CacheError(f"shards in {str(root)!r} keep disappearing while the build runs")


def _stream_mine(
    world: World,
    root: Path,
    state,
    parts,
    config: CacheConfig,
    progress: bool,
    stats: _RowStats,
    layout: list,
    lock,
) -> dict[str, Any]:
    """Step 3 on this rank: compute and write its missing shards; return what it recorded."""
    if not world.lead and read_lock(root) != lock:
        raise CacheError(
            f"rank {world.rank} does not see the lock that rank 0 ({describe(lock or {})}) holds in "
            f"{str(root)!r}; the output directory must be on a file system every rank shares"
        )
    try:
        row, n_shards = _stream_shards(
            root,
            state,
            parts["model"],
            parts["hooks"],
            parts["source"],
            config,
            progress and world.lead,
            stats,
            world,
            layout if world.lead else None,
        )
    except OSError as exc:
        raise write_error(root, exc, sum(e is not None for e in state["shards"])) from exc
    entries = {str(i): e for i, e in enumerate(state["shards"]) if e is not None and world.mine(i)}
    return {"entries": entries, "shapes": state["shapes"], "row": row, "n_shards": n_shards}
