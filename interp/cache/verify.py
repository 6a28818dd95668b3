"""Checking a cache: the manifest's ID, every shard's checksum, and rows recomputed from the model."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from interp.cache.capture import capture_rows
from interp.cache.format import cache_id, mmap_tensors, read_manifest, safe_member
from interp.errors import CacheError, InterpError
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
    root: str | Path, model=None, recompute: int = 0, seed: int = 0, progress: bool = True
) -> VerifyReport:
    """Check a cache and report every problem found (does not stop at the first).

    Args:
        root: the cache directory.
        model: the model to recompute rows with; default: load the manifest's model spec.
        recompute: how many randomly chosen rows to recompute and compare.
        seed: chooses the rows.
        progress: show a progress bar over shards.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` is true only if everything checks.

    Raises:
        CacheError: there is no readable manifest at all.
    """
    root = Path(root)
    manifest = read_manifest(root)
    problems: list[str] = []
    if manifest.get("id") != cache_id(manifest):
        problems.append(
            f"ID mismatch: manifest records {manifest.get('id')!r} but its content hashes to "
            f"{cache_id(manifest)!r} (edited after the build)"
        )
    good: dict[int, Path] = {}
    shards = manifest.get("shards", [])
    for i, entry in enumerate(tqdm(shards, desc="checksums", unit="shard", disable=not progress)):
        try:
            path = safe_member(root, entry["file"])
        except CacheError as exc:
            problems.append(str(exc))
            continue
        if not path.is_file():
            problems.append(f"shard {entry['file']!r} is missing")
        elif (digest := sha256_file(path)) != entry["sha256"]:
            problems.append(
                f"shard {entry['file']!r}: checksum {digest} does not match the manifest's "
                f"{entry['sha256']}"
            )
        else:
            good[i] = path

    errors: dict[str, float] = {}
    n_rows = 0
    if recompute > 0 and good:
        n_rows = _recompute(root, manifest, good, model, recompute, seed, problems, errors)
    return VerifyReport(
        str(root), manifest.get("id"), len(shards), n_rows, errors, tuple(problems)
    )


def _recompute(root, manifest, good, model, n, seed, problems, errors) -> int:
    from interp.models import load_model

    spec = manifest.get("locator", {}).get("model_spec") or manifest["model"]["spec"]
    try:
        model = load_model(model if model is not None else spec)
    except InterpError as exc:
        problems.append(f"cannot load the cache's model {spec!r} to recompute rows: {exc}")
        return 0
    if model.fingerprint != manifest["model"]["fingerprint"]:
        problems.append(
            f"model mismatch: cache built from {manifest['model']['fingerprint']}, "
            f"recompute model {model.fingerprint} ({model.spec})"
        )
        return 0
    hooks = manifest["hooks"]
    rtol = RTOL[manifest["config"]["dtype"]]
    candidates = [
        (i, r) for i in sorted(good) for r in range(*manifest["shards"][i]["rows"])
    ]
    gen = torch.Generator().manual_seed(seed)
    chosen = sorted(candidates[j] for j in torch.randperm(len(candidates), generator=gen)[:n].tolist())
    batch = manifest["config"]["batch_size"]
    for start in range(0, len(chosen), batch):
        group = chosen[start : start + batch]
        rows, kept, stored = [], [], {h: [] for h in hooks}
        for shard_i, row in group:
            t = mmap_tensors(good[shard_i])
            offsets = t["row_offsets"]
            local = row - manifest["shards"][shard_i]["rows"][0]
            rows.append(t["row_tokens"][offsets[local] : offsets[local + 1]].tolist())
            sel = t["row"] == row
            kept.append(t["pos"][sel].tolist())
            for h in hooks:
                stored[h].append(t[h][sel])
        fresh = capture_rows(model, rows, kept, hooks)
        for h in hooks:
            want = torch.cat(stored[h]).float()
            got = fresh[h].to(t[h].dtype).float()
            scale = want.abs().max().clamp_min(1e-6)
            rel = float((got - want).abs().max() / scale)
            errors[h] = max(errors.get(h, 0.0), rel)
    for h, rel in errors.items():
        if rel > rtol:
            problems.append(
                f"hook {h!r}: recomputed activations differ from the stored ones by {rel:.2e} "
                f"of their scale (tolerance {rtol:.0e} for {manifest['config']['dtype']})"
            )
    return len(chosen)
