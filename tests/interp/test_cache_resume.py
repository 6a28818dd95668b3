"""Killed builds resume to the same cache ID, and no reader ever sees a partial shard.

Three layers:
- SIGKILL at several points of a build running in a forked child process (cheap: no
  re-import), each kill followed by a resume that is killed again later;
- SIGKILL of the real command line, ``python -m interp.cli cache build``, rerun to completion;
- crashes injected at exact points of the write protocol (mid-shard, after the rename but
  before the partial manifest, before the first partial manifest, before the final cleanup).
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch

import interp.cache.build as build_mod
import interp.cache.resume as resume_mod
from interp.cache import CacheConfig, build_cache, open_cache, verify_cache
from interp.cache.format import MANIFEST, PARTIAL, SHARD_DIR
from interp.errors import CacheError
from interp.prompts import PromptSource

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")

HOOKS = ("blocks.*.hook_resid_post",)
N_ROWS = 300
SHARD_TOKENS = 40


@pytest.fixture(scope="module")
def many_prompts(make_prompts, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("many") / "many.txt"
    path.write_text("\n".join(make_prompts(N_ROWS, seed=7)) + "\n")
    return path


@pytest.fixture(scope="module")
def config() -> CacheConfig:
    return CacheConfig(hooks=HOOKS, shard_tokens=SHARD_TOKENS, batch_size=16)


@pytest.fixture(scope="module")
def reference(gpt2, many_prompts, config, tmp_path_factory):
    """The uninterrupted build."""
    cache = build_cache(gpt2, many_prompts, tmp_path_factory.mktemp("ref") / "c", config, progress=False)
    assert len(cache.manifest["shards"]) >= 20
    return cache


def _complete_shards(root: Path) -> list[Path]:
    d = root / SHARD_DIR
    return sorted(p for p in d.iterdir() if not p.name.endswith(".tmp")) if d.is_dir() else []


def _check_killed_dir(root: Path) -> dict[str, str]:
    """What any reader may see after a kill: whole shards only, and a refusal to open.

    Returns the sha256 of every complete shard file found.
    """
    assert not (root / MANIFEST).exists()
    with pytest.raises(CacheError, match="resume"):
        open_cache(root)
    seen = {}
    for path in _complete_shards(root):
        tensors = safetensors.torch.load_file(str(path))  # parses header and every tensor
        n = len(tensors["pos"])
        assert all(len(tensors[k]) == n for k in ("tokens", "row", "blocks.1.hook_resid_post"))
        assert int(tensors["row_offsets"][-1]) == len(tensors["row_tokens"])
        seen[path.name] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def _final_checks(cache, reference, seen: dict[str, str]) -> None:
    assert cache.id == reference.id
    assert not list((cache.root / SHARD_DIR).glob("*.tmp"))
    assert not (cache.root / PARTIAL).exists()
    by_name = {Path(s["file"]).name: s["sha256"] for s in cache.manifest["shards"]}
    for name, digest in seen.items():
        assert by_name[name] == digest, f"{name} seen after a kill differs from the final shard"
    report = verify_cache(cache.root, progress=False)
    assert report.ok, report.problems


def _fork_build(model, prompts, root, config) -> int:
    pid = os.fork()
    if pid == 0:  # child: build, never return into pytest
        code = 1
        try:
            build_cache(model, prompts, root, config, progress=False)
            code = 0
        finally:
            os._exit(code)
    return pid


def _kill_when(pid: int, root: Path, n_shards: int, delay: float, timeout: float = 30.0) -> bool:
    """Wait until ``n_shards`` shard files exist, sleep ``delay``, SIGKILL. False if it finished."""
    deadline = time.monotonic() + timeout
    while len(_complete_shards(root)) < n_shards:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
        assert time.monotonic() < deadline, "the build made no progress"
        time.sleep(0.001)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_sigkill_at_several_points_resumes_to_the_same_id(gpt2, many_prompts, config, reference, tmp_path):
    root = tmp_path / "killed"
    rng = random.Random(1234)
    total = len(reference.manifest["shards"])
    targets = sorted(rng.sample(range(1, total * 3 // 4), 4))
    seen: dict[str, str] = {}
    kills = 0
    for target in targets:
        pid = _fork_build(gpt2, many_prompts, root, config)
        if _kill_when(pid, root, target, delay=rng.uniform(0, 0.02)):
            kills += 1
            for name, digest in _check_killed_dir(root).items():
                assert seen.setdefault(name, digest) == digest, f"{name} changed between kills"
    assert kills >= 3, "the build finished before it could be killed; make it longer"
    cache = build_cache(gpt2, many_prompts, root, config, progress=False)
    _final_checks(cache, reference, seen)


def _cli_build(out: Path, gpt2_dir: Path, prompts: Path) -> list[str]:
    return [
        sys.executable, "-m", "interp.cli", "cache", "build", "--model", f"hf:{gpt2_dir}",
        "--prompts", str(prompts), "--hooks", *HOOKS, "--out", str(out),
        "--shard-tokens", str(SHARD_TOKENS), "--batch-size", "16", "-q",
    ]


def test_sigkill_of_the_command_line_resumes_to_the_same_id(
    gpt2_dir, many_prompts, reference, tmp_path, cli_env
):
    root = tmp_path / "cli"
    cmd = _cli_build(root, gpt2_dir, many_prompts)
    total = len(reference.manifest["shards"])
    seen: dict[str, str] = {}
    kills = 0
    for target in (total // 3,):  # each start re-imports torch: one kill keeps this short
        proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if _kill_when(proc.pid, root, target, delay=0.003, timeout=60):
            kills += 1
            seen.update(_check_killed_dir(root))
        proc.communicate()
    assert kills >= 1, "the command finished before it could be killed"
    done = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == reference.id
    _final_checks(open_cache(root), reference, seen)


# --- injected crashes at exact points of the write protocol -----------------------------


class _Crash(BaseException):
    """Stands in for a kill: not an Exception, so nothing in the builder can swallow it."""


def _small(make_prompts):
    return make_prompts(60, seed=3)


@pytest.fixture
def small_ref(gpt2, make_prompts, tmp_path):
    cfg = CacheConfig(hooks=HOOKS, shard_tokens=30, batch_size=4)
    cache = build_cache(gpt2, _small(make_prompts), tmp_path / "ref", cfg, progress=False)
    assert len(cache.manifest["shards"]) >= 6
    return cache, cfg


def _crash_on_write(monkeypatch, at: int, after_rename: bool):
    """Crash during the ``at``-th shard write: mid-write (data on disk under the temporary name,
    truncated as a kill leaves it, not yet renamed) or just after the rename."""
    import interp.atomic as shardio  # where the fsync before the rename lives

    real_write, real_os = build_mod.write_shard, shardio.os
    calls = [0]

    class CrashingOs:
        def __getattr__(self, name):
            return getattr(real_os, name)

        @staticmethod
        def fsync(fd):  # the file's fsync, before the rename: the kill lands here
            path = Path(real_os.readlink(f"/proc/self/fd/{fd}"))
            real_os.truncate(fd, path.stat().st_size // 2)
            raise _Crash

    def write(path, tensors, metadata):
        calls[0] += 1
        if calls[0] != at:
            return real_write(path, tensors, metadata)
        if after_rename:
            real_write(path, tensors, metadata)
            raise _Crash
        monkeypatch.setattr(shardio, "os", CrashingOs())
        try:
            return real_write(path, tensors, metadata)
        finally:
            monkeypatch.setattr(shardio, "os", real_os)

    monkeypatch.setattr(build_mod, "write_shard", write)


@pytest.mark.parametrize("after_rename", [False, True], ids=["mid-write", "after-rename"])
def test_crash_while_writing_a_shard(gpt2, make_prompts, small_ref, tmp_path, monkeypatch, after_rename):
    ref, cfg = small_ref
    root = tmp_path / "c"
    _crash_on_write(monkeypatch, at=3, after_rename=after_rename)
    with pytest.raises(_Crash):
        build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    monkeypatch.undo()
    tmp = list((root / SHARD_DIR).glob("*.tmp"))
    if after_rename:
        assert not tmp
    else:
        # An exception removes the temporary file; a kill would leave it, truncated: put one
        # there so the rerun has to cope with it.
        (root / SHARD_DIR / "shard_00002.safetensors.tmp").write_bytes(b"\x00" * 100)
    seen = _check_killed_dir(root)
    assert ("shard_00002.safetensors" in seen) == after_rename
    cache = build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    _final_checks(cache, ref, seen)


def test_crash_before_the_first_partial_manifest(gpt2, make_prompts, small_ref, tmp_path, monkeypatch):
    """Killed between creating the directory and writing the partial manifest: rerun resumes."""
    ref, cfg = small_ref
    root = tmp_path / "c"
    real = build_mod.atomic_write_json

    def crash_first(path, obj):
        # as a kill during the first write leaves it: a temporary file, nothing renamed
        Path(str(path) + ".tmp").write_text("{")
        raise _Crash

    # the first partial manifest is written by the resume state (interp.cache.resume)
    for module in (build_mod, resume_mod):
        monkeypatch.setattr(module, "atomic_write_json", crash_first)
    with pytest.raises(_Crash):
        build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    for module in (build_mod, resume_mod):
        monkeypatch.setattr(module, "atomic_write_json", real)
    assert not (root / PARTIAL).exists()
    cache = build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    assert cache.id == ref.id


def test_crash_after_the_manifest_before_cleanup(gpt2, make_prompts, small_ref, tmp_path, monkeypatch):
    ref, cfg = small_ref
    root = tmp_path / "c"
    real = build_mod.atomic_write_json

    def crash_after_manifest(path, obj):
        real(path, obj)
        if Path(path).name == MANIFEST:
            raise _Crash

    monkeypatch.setattr(build_mod, "atomic_write_json", crash_after_manifest)
    with pytest.raises(_Crash):
        build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    monkeypatch.undo()
    assert open_cache(root).id == ref.id
    again = build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    assert again.id == ref.id


def test_resume_refuses_changed_prompts_or_settings(gpt2, make_prompts, small_ref, tmp_path, monkeypatch):
    _, cfg = small_ref
    root = tmp_path / "c"
    _crash_on_write(monkeypatch, at=4, after_rename=False)
    with pytest.raises(_Crash):
        build_cache(gpt2, _small(make_prompts), root, cfg, progress=False)
    monkeypatch.undo()
    other = CacheConfig(hooks=HOOKS, shard_tokens=30, batch_size=4, dtype="float16")
    with pytest.raises(CacheError, match="partial build with other settings.*dtype"):
        build_cache(gpt2, _small(make_prompts), root, other, progress=False)
    changed = list(_small(make_prompts))
    changed[0] = "w1 w2 w3"
    with pytest.raises(CacheError, match="partial build with other settings.*prompts"):
        build_cache(gpt2, changed, root, cfg, progress=False)


def test_resume_checks_the_rows_themselves(gpt2, make_prompts, tmp_path, monkeypatch):
    """A source whose description cannot see a change (e.g. an edited stream) is still caught."""
    cfg = CacheConfig(hooks=HOOKS, shard_tokens=30, batch_size=4)
    texts = _small(make_prompts)

    def source(items):
        return PromptSource({"kind": "stream", "name": "same description"}, texts=lambda: iter(items))

    root = tmp_path / "c"
    _crash_on_write(monkeypatch, at=4, after_rename=False)
    with pytest.raises(_Crash):
        build_cache(gpt2, source(texts), root, cfg, progress=False)
    monkeypatch.undo()
    changed = ["w1 w2 w3", *texts[1:]]
    with pytest.raises(CacheError, match="no longer match shard 0"):
        build_cache(gpt2, source(changed), root, cfg, progress=False)
    assert build_cache(gpt2, source(texts), root, cfg, progress=False).n_rows == len(texts)
