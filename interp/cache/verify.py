"""Checking a cache: the manifest's ID, every shard's checksum, and rows recomputed from the model."""

import json
import random
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.cache.capture import capture_rows
from interp.cache.distributed import World, current_world, settle
from interp.cache.format import DTYPES, cache_id, mmap_tensors, read_header, read_manifest, safe_member
from interp.cache.integrity import header_problem, manifest_problem, shard_rows_sha256
from interp.cache.reader import Cache
from interp.errors import CacheError, InterpError, ModelMismatchError
from interp.fingerprint import sha256_file

# Relative tolerance for recomputed activations, per stored dtype: batching and padding change
# float32 results in the last bits, and a cast to a 16-bit type can then round either way.
RTOL = {"float32": 1e-4, "float16": 2e-3, "bfloat16": 2e-2}


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_cache` checked and what it found."""

    root: str
    cache_id: str | None
    shards_checked: int
    rows_recomputed: int
    max_rel_error: dict[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"cache        {self.root}",
            f"id           {self.cache_id}",
            f"shards       {self.shards_checked} checksummed",
            f"recomputed   {self.rows_recomputed} rows",
        ]
        lines += [f"  {h:<40} max rel. error {e:.2e}" for h, e in self.max_rel_error.items()]
        lines.append("result       " + ("OK" if self.ok else f"FAILED ({len(self.problems)} problems)"))
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def verify_cache(
    root: str | Path, model=None, recompute: int = 0, seed: int = 0, progress: bool = True,
    load_options: dict | None = None,
) -> VerifyReport:
    """Check a cache: its manifest, every shard's checksum and header, and recomputed rows.

    A manifest that fails its ID or its structure (missing keys, wrong types, row ranges or
    positions that do not add up) ends the check at once with that one problem: nothing in an
    untrusted manifest is used. Otherwise every shard is checked (all bad shards are reported),
    then ``recompute`` rows chosen at random from the good shards are recomputed with the
    cache's model and compared within the stored dtype's tolerance. Row ranges are checked
    against each shard's header before any is used, and rows are sampled without listing them.

    When ``torch.distributed`` is initialised (``torchrun``), every rank must make the same
    call: the shards' checksums and the recomputed rows (whole batches of the same sample) are
    split round robin over the ranks, and every rank returns the same report, which is the one
    a single process would give.

    Args:
        root: the cache directory.
        model: the model to recompute rows with; default: the model the manifest's locator
            names, used only if its fingerprint matches the manifest's.
        recompute: how many randomly chosen rows to recompute and compare (0: none).
        seed: chooses the rows.
        progress: show a progress bar over shards.
        load_options: keyword arguments for :func:`interp.models.load_model` when a model is
            loaded by spec (e.g. ``device``).

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is true only if everything checks.

    Raises:
        CacheError: there is no readable manifest at all.
        ValueError: ``recompute`` is negative.
    """
    if not isinstance(recompute, int) or recompute < 0:
        raise ValueError(f"recompute must be a non-negative number of rows, got {recompute!r}")
    root = Path(root)
    world = current_world()
    read: dict = {}

    def head() -> str | None:
        read["manifest"] = manifest = read_manifest(root)
        computed = cache_id(manifest)
        if manifest.get("id") != computed:
            return (
                f"ID mismatch: manifest records {manifest.get('id')!r} but its content hashes to "
                f"{computed!r} (edited after the build); nothing else was checked"
            )
        structural = manifest_problem(manifest)
        return f"malformed manifest: {structural}; nothing else was checked" if structural else None

    problem = settle(world, head)[world.rank]
    manifest = read["manifest"]
    recorded_id = manifest.get("id") if isinstance(manifest.get("id"), str) else None
    if problem:
        return VerifyReport(str(root), recorded_id, 0, 0, {}, (problem,))

    shards = manifest["shards"]
    found: dict[str, str | None] = {}
    for part in settle(world, lambda: _check_shards(root, manifest, world, progress)):
        found.update(part)
    problems = [found[str(i)] for i in range(len(shards)) if found[str(i)]]
    good = {i: safe_member(root, e["file"]) for i, e in enumerate(shards) if found[str(i)] is None}

    errors: dict[str, float] = {}
    n_rows = 0
    if recompute > 0 and good:
        cache = Cache(root, manifest)
        parts = settle(
            world,
            lambda: _recompute(cache, good, model, recompute, seed, load_options or {}, world),
        )
        n_rows = parts[0]["rows"]
        for part in parts:
            problems += [p for p in part["problems"] if p not in problems]
        for h in manifest["hooks"]:
            worst = [part["errors"][h] for part in parts if h in part["errors"]]
            if worst:
                errors[h] = max(worst)
        problems += _tolerance_problems(errors, manifest["config"]["dtype"])
    return VerifyReport(str(root), recorded_id, len(shards), n_rows, errors, tuple(problems))


def _check_shards(root: Path, manifest, world: World, progress: bool) -> dict[str, str | None]:
    """This rank's shards (round robin): index -> the problem found, or ``None`` for a good one."""
    found: dict[str, str | None] = {}
    mine = [(i, e) for i, e in enumerate(manifest["shards"]) if world.mine(i)]
    for i, entry in tqdm(mine, desc="checksums", unit="shard", disable=not progress):
        found[str(i)] = _shard_problem(root, entry, manifest)
    return found


def _shard_problem(root: Path, entry, manifest) -> str | None:
    try:
        path = safe_member(root, entry["file"])
    except CacheError as exc:
        return str(exc)
    if not path.is_file():
        return f"shard {entry['file']!r} is missing"
    if (digest := sha256_file(path)) != entry["sha256"]:
        return (
            f"shard {entry['file']!r}: checksum {digest} does not match the manifest's "
            f"{entry['sha256']}"
        )
    try:
        infos, base = read_header(path)
        mismatch = header_problem(infos, entry, manifest)
        if not mismatch and shard_rows_sha256(path, infos, base) != entry["tokens_sha256"]:
            mismatch = "holds other token rows than the manifest records"
    except CacheError as exc:
        return str(exc)
    return f"shard {entry['file']!r} {mismatch}" if mismatch else None


def _choose_rows(manifest, good: dict[int, Path], n: int, seed: int) -> list[tuple[int, int]]:
    """``n`` distinct (shard, row) pairs from the good shards, seeded, in memory O(n)."""
    order = sorted(good)
    counts = [manifest["shards"][i]["rows"][1] - manifest["shards"][i]["rows"][0] for i in order]
    ends = list(accumulate(counts))
    picks = random.Random(seed).sample(range(ends[-1]), min(n, ends[-1]))
    chosen = []
    for k in sorted(picks):
        j = bisect_right(ends, k)
        shard = order[j]
        chosen.append((shard, manifest["shards"][shard]["rows"][0] + k - (ends[j] - counts[j])))
    return chosen


def _recompute(cache: Cache, good, model, n, seed, load_options, world: World) -> dict:
    """Recompute this rank's batches of the sample: ``{"rows", "problems", "errors"}``."""
    problems: list[str] = []
    errors: dict[str, float] = {}
    manifest = cache.manifest
    chosen = _choose_rows(manifest, good, n, seed)
    batch = manifest["config"]["batch_size"]
    starts = [s for k, s in enumerate(range(0, len(chosen), batch)) if world.mine(k)]
    if not starts:
        return {"rows": len(chosen), "problems": problems, "errors": errors}
    try:
        model = cache.load_model(model, **load_options)
    except ModelMismatchError as exc:
        problems.append(f"model mismatch: {exc}")
        return {"rows": 0, "problems": problems, "errors": errors}
    except InterpError as exc:
        problems.append(f"cannot load the cache's model {cache.model_locator!r} to recompute rows: {exc}")
        return {"rows": 0, "problems": problems, "errors": errors}
    _compare(manifest, good, model, chosen, starts, problems, errors)
    return {"rows": len(chosen), "problems": problems, "errors": errors}


def _compare(manifest, good, model, chosen, starts, problems, errors) -> None:
    hooks = manifest["hooks"]
    dtype = manifest["config"]["dtype"]
    batch = manifest["config"]["batch_size"]
    mapped: dict[int, dict[str, torch.Tensor]] = {}
    for start in starts:
        group = chosen[start : start + batch]
        rows, kept, stored = [], [], {h: [] for h in hooks}
        for shard_i, row in group:
            if shard_i not in mapped:
                mapped = {shard_i: mmap_tensors(good[shard_i])}  # one shard mapped at a time
            t = mapped[shard_i]
            offsets = t["row_offsets"]
            local = row - manifest["shards"][shard_i]["rows"][0]
            rows.append(t["row_tokens"][offsets[local] : offsets[local + 1]].tolist())
            sel = t["row"] == row
            kept.append(t["pos"][sel].tolist())
            if any(not 0 <= p < len(rows[-1]) for p in kept[-1]):
                problems.append(
                    f"shard {manifest['shards'][shard_i]['file']!r}: row {row} keeps positions "
                    f"{kept[-1]} outside its {len(rows[-1])} tokens"
                )
                return
            for h in hooks:
                stored[h].append(t[h][sel])
        fresh = capture_rows(model, rows, kept, hooks)
        for h in hooks:
            want = torch.cat(stored[h]).float()
            got = fresh[h].to(DTYPES[dtype]).float()
            if got.shape != want.shape:
                problems.append(
                    f"hook {h!r}: recomputed activations have shape {tuple(got.shape)}, the stored "
                    f"ones {tuple(want.shape)}"
                )
                return
            if not want.numel():
                continue
            scale = want.abs().max().clamp_min(1e-6)
            rel = float((got - want).abs().max() / scale)
            errors[h] = max(errors.get(h, 0.0), rel)


def _tolerance_problems(errors: dict[str, float], dtype: str) -> list[str]:
    rtol = RTOL[dtype]
    return [
        f"hook {h!r}: recomputed activations differ from the stored ones by {rel:.2e} "
        f"of their scale (tolerance {rtol:.0e} for {dtype})"
        for h, rel in errors.items() if rel > rtol
    ]
