"""One writer per cache directory: ``build.lock`` names its holder for the build's lifetime."""

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

import interp.cache.build as build_mod
from interp.cache import CacheConfig, build_cache, open_cache
from interp.cache.format import MANIFEST, PARTIAL, SHARD_DIR
from interp.cache.lock import LOCK
from interp.errors import CacheError

CONFIG = CacheConfig(hooks=("blocks.0.hook_resid_post",), shard_tokens=30, batch_size=4)


@pytest.fixture(scope="module")
def texts(make_prompts) -> list[str]:
    return make_prompts(12, seed=5)


@pytest.fixture(scope="module")
def ref(gpt2, texts, tmp_path_factory):
    return build_cache(gpt2, texts, tmp_path_factory.mktemp("ref") / "c", CONFIG, progress=False)


def _write_lock(root: Path, pid: int, host: str | None = None) -> bytes:
    root.mkdir(parents=True, exist_ok=True)
    raw = json.dumps({"pid": pid, "host": host or socket.gethostname()}).encode()
    (root / LOCK).write_bytes(raw)
    return raw


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_live_holder_makes_a_second_build_fail_at_once(gpt2, texts, tmp_path, live_pid):
    root = tmp_path / "c"
    raw = _write_lock(root, live_pid)
    start = time.monotonic()
    with pytest.raises(CacheError, match=rf"another build \(PID {live_pid} on host .*\) is writing"):
        build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert time.monotonic() - start < 2
    assert sorted(p.name for p in root.iterdir()) == [LOCK], "nothing written, nothing removed"
    assert (root / LOCK).read_bytes() == raw


def test_a_lock_of_another_host_is_not_taken_over(gpt2, texts, tmp_path):
    root = tmp_path / "c"
    _write_lock(root, 1, host="elsewhere.example")
    with pytest.raises(CacheError, match=r"PID 1 on host 'elsewhere.example'.*delete .*build.lock"):
        build_cache(gpt2, texts, root, CONFIG, progress=False)


def test_a_stale_lock_of_a_dead_process_is_taken_over(gpt2, texts, ref, tmp_path, caplog):
    dead = subprocess.Popen(["true"])
    dead.wait()
    root = tmp_path / "c"
    _write_lock(root, dead.pid)
    with caplog.at_level(logging.WARNING, logger="interp.cache.lock"):
        cache = build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert any(f"PID {dead.pid}" in r.getMessage() and "died" in r.getMessage() for r in caplog.records)
    assert cache.id == ref.id
    assert not (root / LOCK).exists()
    assert LOCK not in (root / MANIFEST).read_text()


def test_a_second_build_during_a_build_is_refused_and_the_first_finishes(
    gpt2, texts, ref, tmp_path, monkeypatch
):
    root = tmp_path / "c"
    real, seen = build_mod.write_shard, []

    def write(path, tensors, metadata):
        if not seen:  # while the first build holds the lock, a second one starts
            with pytest.raises(CacheError, match=rf"PID {os.getpid()} on host") as exc:
                build_cache(gpt2, texts, root, CONFIG, progress=False)
            seen.append(str(exc.value))
            holder = json.loads((root / LOCK).read_text())
            assert holder == {"pid": os.getpid(), "host": socket.gethostname()}
            with pytest.raises(CacheError, match=rf"is being built by PID {os.getpid()}"):
                open_cache(root)
        return real(path, tensors, metadata)

    monkeypatch.setattr(build_mod, "write_shard", write)
    cache = build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert seen and cache.id == ref.id
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST, SHARD_DIR]


def test_the_lock_is_removed_when_a_build_fails(gpt2, texts, tmp_path, monkeypatch):
    root = tmp_path / "c"
    calls = [0]
    real = build_mod.write_shard

    def write(path, tensors, metadata):
        calls[0] += 1
        if calls[0] == 2:
            raise ValueError("boom")
        return real(path, tensors, metadata)

    monkeypatch.setattr(build_mod, "write_shard", write)
    with pytest.raises(ValueError, match="boom"):
        build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert not (root / LOCK).exists()
    assert (root / PARTIAL).exists(), "a complete shard was written: the partial build stays resumable"
