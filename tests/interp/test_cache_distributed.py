"""Cache builds and verification split over two gloo ranks give the single-process results.

The ranks are two processes forked from the test (``torch.multiprocessing``, ``fork``: nothing
is re-imported), each joining a gloo process group through a rendezvous file; the resume after
a killed rank goes through the real command line under ``torchrun``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import interp.cache.build as build_mod
from interp.cache import CacheConfig, build_cache, build_paired_cache, open_cache, verify_cache
from interp.cache.format import MANIFEST, PARTIAL, SHARD_DIR
from interp.cache.lock import LOCK
from interp.cache.resume import RANK_PARTIAL, partial_name, read_partial
from interp.errors import CacheError
from interp.fingerprint import sha256_file

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "fork") and torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs fork and torch.distributed with gloo",
)

HOOKS = ("blocks.*.hook_resid_post",)
CONFIG = CacheConfig(hooks=HOOKS, shard_tokens=40, batch_size=16)
RECOMPUTE = 40


def _run_ranks(tmp: Path, fn, *args) -> list:
    """Run ``fn(rank, *args)`` on two forked gloo ranks; return each rank's (JSON) result."""
    rendezvous = tmp / f"rendezvous-{uuid.uuid4().hex}"
    mp.start_processes(_rank_main, args=(rendezvous, tmp, fn, *args), nprocs=2, start_method="fork")
    return [json.loads((tmp / f"result{rank}.json").read_text()) for rank in range(2)]


def _rank_main(rank: int, rendezvous: Path, tmp: Path, fn, *args) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2
    )
    try:
        result = fn(rank, *args)
    finally:
        torch.distributed.destroy_process_group()
    (tmp / f"result{rank}.json").write_text(json.dumps(result))


def _count_computed() -> list[int]:
    """Count shards computed in this process (a forked rank: the patch stays in it)."""
    count = [0]
    real = build_mod._compute_shard

    def compute(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    build_mod._compute_shard = compute
    return count


def _as_json(report) -> dict:
    return json.loads(json.dumps(report.to_dict()))


def _refusal(call) -> list[str]:
    try:
        call()
    except CacheError as exc:
        return [type(exc).__name__, str(exc)]
    return ["no error", ""]


@pytest.fixture(scope="module")
def many_prompts(make_prompts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("many") / "many.txt"
    path.write_text("\n".join(make_prompts(200, seed=11)) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(gpt2, many_prompts, tmp_path_factory):
    """The single-process build."""
    cache = build_cache(gpt2, many_prompts, tmp_path_factory.mktemp("ref") / "c", CONFIG, progress=False)
    assert len(cache.manifest["shards"]) >= 20
    return cache


def _scenarios(rank, model, other, prompts, small_prompts, tmp: Path, tampered: Path) -> dict:
    computed = _count_computed()
    out: dict = {}
    cache = build_cache(model, prompts, tmp / "two", CONFIG, progress=False)
    out["id"], out["computed"] = cache.id, computed[0]
    out["again"] = build_cache(model, prompts, tmp / "two", CONFIG, progress=False).id
    out["computed_again"] = computed[0] - out["computed"]
    out["verify"] = _as_json(verify_cache(tmp / "two", model=model, recompute=RECOMPUTE, progress=False))
    out["tampered"] = _as_json(verify_cache(tampered, model=model, recompute=RECOMPUTE, progress=False))
    mine = CacheConfig(hooks=HOOKS, shard_tokens=40 + rank, batch_size=16)
    out["disagree"] = _refusal(lambda: build_cache(model, prompts, tmp / "disagree", mine, progress=False))
    out["locked"] = _refusal(lambda: build_cache(model, prompts, tmp / "locked", CONFIG, progress=False))
    models = {"base": model, "other": other}
    pair = build_paired_cache(models, small_prompts, tmp / "pair", CONFIG, progress=False)
    out["pair"] = {label: pair[label].id for label in pair.labels}
    return out


@pytest.fixture(scope="module")
def two_ranks(gpt2, gpt2_other, many_prompts, prompts_file, reference, tmp_path_factory):
    """One run of two ranks through every scenario, beside their single-process answers."""
    tmp = tmp_path_factory.mktemp("ranks")
    tampered = Path(shutil.copytree(reference.root, tmp / "tampered"))
    shard = tampered / reference.manifest["shards"][3]["file"]
    data = bytearray(shard.read_bytes())
    data[-4] ^= 0xFF  # one activation byte: the checksum fails
    shard.write_bytes(bytes(data))
    (tmp / "locked").mkdir()
    (tmp / "locked" / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    results = _run_ranks(tmp, _scenarios, gpt2, gpt2_other, many_prompts, prompts_file, tmp, tampered)
    single = {  # as the ranks' results, through JSON
        "verify": _as_json(verify_cache(reference.root, model=gpt2, recompute=RECOMPUTE, progress=False)),
        "tampered": _as_json(verify_cache(tampered, model=gpt2, recompute=RECOMPUTE, progress=False)),
        "pair": {
            label: c.id
            for label, c in build_paired_cache(
                {"base": gpt2, "other": gpt2_other}, prompts_file, tmp / "pair1", CONFIG, progress=False
            ).caches.items()
        },
    }
    return tmp, results, single


def test_two_ranks_build_the_single_process_cache(two_ranks, reference):
    tmp, results, _ = two_ranks
    n_shards = len(reference.manifest["shards"])
    assert [r["id"] for r in results] == [reference.id, reference.id]
    assert sorted(r["computed"] for r in results) == [n_shards // 2, n_shards - n_shards // 2]
    assert [r["again"] for r in results] == [reference.id] * 2  # complete: returned as is
    assert [r["computed_again"] for r in results] == [0, 0]
    root = tmp / "two"
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST, SHARD_DIR]  # no lock, no partials
    assert open_cache(root).manifest["shards"] == reference.manifest["shards"]


def test_verify_split_over_ranks_gives_the_single_process_report(two_ranks, reference):
    tmp, results, single = two_ranks
    for r in results:
        assert r["verify"] == {**single["verify"], "root": str(tmp / "two")}
        assert r["verify"]["ok"] and r["verify"]["rows_recomputed"] == RECOMPUTE
        assert r["tampered"] == single["tampered"]
    assert not single["tampered"]["ok"]
    assert single["tampered"]["problems"][0].startswith("shard 'shards/shard_00003.safetensors': checksum")


def test_ranks_that_disagree_on_the_config_both_refuse_in_one_line(two_ranks):
    tmp, results, _ = two_ranks
    for kind, message in (r["disagree"] for r in results):
        assert kind == "CacheError"
        assert "rank 1 of 2 was given other build settings than rank 0" in message
        assert "config.shard_tokens: 40 -> 41" in message and "\n" not in message
    assert not (tmp / "disagree").exists()


def test_a_held_lock_stops_every_rank_without_a_deadlock(two_ranks):
    tmp, results, _ = two_ranks
    (kind0, msg0), (kind1, msg1) = results[0]["locked"], results[1]["locked"]
    assert kind0 == "CacheError" and "another build (PID" in msg0
    assert kind1 == "RankError" and msg1.startswith("rank 0 of 2 failed: CacheError: another build (PID")
    assert sorted(p.name for p in (tmp / "locked").iterdir()) == [LOCK]  # nothing written


def test_paired_cache_over_ranks_has_the_single_process_ids(two_ranks):
    _, results, single = two_ranks
    assert [r["pair"] for r in results] == [single["pair"]] * 2


# --- a rank killed mid-build, resumed by the command line under torchrun ---------------------


def _killed_rank(rank, model, prompts, root) -> dict:
    if rank == 1:
        real = build_mod.atomic_write_json

        def write(path, obj):
            real(path, obj)
            if Path(path).name == partial_name(1):  # its first shard is recorded: die now
                os._exit(3)

        build_mod.atomic_write_json = write
    build_cache(model, prompts, root, CONFIG, progress=False)
    return {}


def test_killed_rank_resumes_under_torchrun_to_the_same_id(
    gpt2, gpt2_dir, many_prompts, reference, tmp_path, cli_env
):
    root = tmp_path / "killed"
    with pytest.raises(mp.ProcessExitedException):
        _run_ranks(tmp_path, _killed_rank, gpt2, many_prompts, root)
    assert not (root / MANIFEST).exists()
    rank1 = read_partial(root, partial_name(1))
    assert sum(e is not None for e in rank1["shards"]) == 1
    kept = {}  # every shard a record names, as the kill left it
    for name in (PARTIAL, partial_name(1)):
        for entry in read_partial(root, name)["shards"]:
            path = root / entry["file"] if entry else None
            if path and path.is_file() and sha256_file(path) == entry["sha256"]:
                kept[entry["file"]] = (path.stat().st_ino, path.stat().st_mtime_ns)
    assert 1 < len(kept) < len(reference.manifest["shards"])

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "interp.cli", "cache", "build", "--model", f"hf:{gpt2_dir}", "--prompts",
        str(many_prompts), "--hooks", *HOOKS, "--out", str(root), "--shard-tokens", "40",
        "--batch-size", "16", "-q",
    ]
    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == reference.id
    cache = open_cache(root)
    assert cache.id == reference.id
    for file, stamp in kept.items():  # recorded shards were not recomputed
        path = root / file
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, file
    assert not [p.name for p in root.iterdir() if RANK_PARTIAL.fullmatch(p.name) or p.name == PARTIAL]
    assert verify_cache(root, progress=False).ok
