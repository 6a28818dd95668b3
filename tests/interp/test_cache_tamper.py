"""Nothing on disk is trusted without its hash: resume, open, reads, ``cache:DIR`` and verify.

Each test builds the bad input (a corrupted, deleted or swapped shard, a forged manifest or
header, an edited locator) and asserts the exact refusal, or that the build repaired it.
"""

import json
import logging
import shutil
import struct
from pathlib import Path

import pytest
import torch

import interp.cache.build as build_mod
from interp.cache import CacheConfig, build_cache, open_cache, verify_cache
from interp.cache.format import MANIFEST, PARTIAL, SHARD_DIR, cache_id, mmap_tensors
from interp.errors import CacheError, ModelMismatchError
from interp.fingerprint import sha256_file
from interp.prompts import resolve_prompts

HOOK = "blocks.1.hook_resid_post"
CONFIG = CacheConfig(hooks=("blocks.*.hook_resid_post",), shard_tokens=30, batch_size=4)


class _Crash(BaseException):
    """Stands in for a kill (not an Exception, so nothing in the builder swallows it)."""


@pytest.fixture(scope="module")
def texts(make_prompts) -> list[str]:
    return make_prompts(24, seed=11)


@pytest.fixture(scope="module")
def ref(gpt2, texts, tmp_path_factory):
    cache = build_cache(gpt2, texts, tmp_path_factory.mktemp("ref") / "c", CONFIG, progress=False)
    assert len(cache.manifest["shards"]) >= 5
    return cache


def _kill_at_write(monkeypatch, at: int) -> None:
    real, calls = build_mod.write_shard, [0]

    def write(path, tensors, metadata):
        calls[0] += 1
        if calls[0] == at:
            raise _Crash
        return real(path, tensors, metadata)

    monkeypatch.setattr(build_mod, "write_shard", write)


def _partial(gpt2, texts, root: Path, monkeypatch, at: int = 5) -> None:
    """A build killed while writing shard ``at - 1``: shards before it are on disk."""
    _kill_at_write(monkeypatch, at)
    with pytest.raises(_Crash):
        build_cache(gpt2, texts, root, CONFIG, progress=False)
    monkeypatch.undo()
    assert (root / PARTIAL).is_file() and not (root / MANIFEST).exists()


def _flip(path: Path, at: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _rewrite_manifest(root: Path, edit) -> dict:
    manifest = json.loads((root / MANIFEST).read_text())
    edit(manifest)
    manifest["id"] = cache_id(manifest)  # a careful forger rehashes the ID
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


# --- resume -----------------------------------------------------------------------------


def test_resume_recomputes_a_shard_corrupted_after_the_kill(gpt2, texts, ref, tmp_path, monkeypatch, caplog):
    root = tmp_path / "c"
    _partial(gpt2, texts, root, monkeypatch)
    victim = root / SHARD_DIR / "shard_00001.safetensors"
    _flip(victim)
    with caplog.at_level(logging.WARNING, logger="interp.cache.build"):
        cache = build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert any("shard_00001" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
    assert cache.id == ref.id
    assert verify_cache(root, progress=False).ok
    assert sha256_file(victim) == cache.manifest["shards"][1]["sha256"]


def test_resume_recomputes_a_shard_deleted_after_the_kill(gpt2, texts, ref, tmp_path, monkeypatch, caplog):
    root = tmp_path / "c"
    _partial(gpt2, texts, root, monkeypatch)
    (root / SHARD_DIR / "shard_00000.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="interp.cache.build"):
        cache = build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert any("shard_00000" in r.getMessage() and "missing" in r.getMessage() for r in caplog.records)
    assert cache.id == ref.id
    assert open_cache(root).id == ref.id and verify_cache(root, progress=False).ok


def test_a_shard_deleted_during_the_build_is_recomputed_before_the_manifest(
    gpt2, texts, ref, tmp_path, monkeypatch
):
    root = tmp_path / "c"
    real, calls = build_mod.write_shard, [0]

    def write(path, tensors, metadata):
        calls[0] += 1
        if calls[0] == 3:  # someone removes an already committed shard mid-build
            (root / SHARD_DIR / "shard_00000.safetensors").unlink()
        return real(path, tensors, metadata)

    monkeypatch.setattr(build_mod, "write_shard", write)
    cache = build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert calls[0] == len(ref.manifest["shards"]) + 1  # shard 0 written twice
    assert cache.id == ref.id
    assert (root / SHARD_DIR / "shard_00000.safetensors").is_file()
    assert verify_cache(root, progress=False).ok


def test_a_damaged_partial_manifest_entry_is_refused(gpt2, texts, tmp_path, monkeypatch):
    root = tmp_path / "c"
    _partial(gpt2, texts, root, monkeypatch)
    state = json.loads((root / PARTIAL).read_text())
    state["shards"][1] = {"file": "shards/shard_00001.safetensors"}
    (root / PARTIAL).write_text(json.dumps(state))
    with pytest.raises(CacheError, match=r"manifest.partial.json is damaged: shard entry 1 lacks"):
        build_cache(gpt2, texts, root, CONFIG, progress=False)
    state["shards"][1] = {**json.loads((root / PARTIAL).read_text())["shards"][0]}  # index 0's file
    (root / PARTIAL).write_text(json.dumps(state))
    with pytest.raises(CacheError, match=r"entry 1 names 'shards/shard_00000.safetensors'"):
        build_cache(gpt2, texts, root, CONFIG, progress=False)
    assert not (root / MANIFEST).exists()


# --- open and read ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_rows(gpt2, texts, ref, tmp_path_factory):
    """The same build over rows that differ in one token of shard 1 (same shard sizes)."""
    first = ref.manifest["shards"][1]["rows"][0]
    changed = list(texts)
    words = changed[first].split()
    words[0] = "w1" if words[0] != "w1" else "w2"
    changed[first] = " ".join(words)
    cache = build_cache(gpt2, changed, tmp_path_factory.mktemp("other") / "c", CONFIG, progress=False)
    assert cache.manifest["shards"][1]["bytes"] == ref.manifest["shards"][1]["bytes"]
    assert cache.manifest["shards"][1]["tokens_sha256"] != ref.manifest["shards"][1]["tokens_sha256"]
    return cache


@pytest.fixture(scope="module")
def other_model(gpt2_other, texts, tmp_path_factory):
    """Another model's cache over the very same rows."""
    return build_cache(gpt2_other, texts, tmp_path_factory.mktemp("om") / "c", CONFIG, progress=False)


def _swap(ref, donor, tmp_path: Path, index: int = 1) -> Path:
    root = Path(shutil.copytree(ref.root, tmp_path / "swapped"))
    name = ref.manifest["shards"][index]["file"]
    shutil.copy(donor.root / name, root / name)
    return root


def test_open_refuses_a_shard_with_other_token_rows(ref, other_rows, tmp_path, gpt2):
    root = _swap(ref, other_rows, tmp_path)
    with pytest.raises(CacheError, match=r"shard_00001.safetensors.*holds other token rows"):
        open_cache(root)
    with pytest.raises(CacheError, match="holds other token rows"):
        resolve_prompts(f"cache:{root}")
    out = tmp_path / "from_swapped"
    with pytest.raises(CacheError, match="holds other token rows"):
        build_cache(gpt2, f"cache:{root}", out, CONFIG, progress=False)
    assert not out.exists()
    report = verify_cache(root, progress=False)
    assert not report.ok and any("shard_00001" in p and "checksum" in p for p in report.problems)


def test_a_same_rows_shard_of_another_model_is_refused_on_first_read(ref, other_model, tmp_path):
    """Open cannot tell (same rows, same layout); the first read of that shard's bytes can."""
    root = _swap(ref, other_model, tmp_path)
    cache = open_cache(root)  # documented: the cheap checks pass
    acts = cache[HOOK]
    torch.testing.assert_close(acts[0], ref[HOOK][0], atol=0, rtol=0)  # shard 0 is fine
    start = int(acts._starts[1])
    with pytest.raises(CacheError, match=r"shard_00001.safetensors.*does not match its checksum"):
        acts[start]
    with pytest.raises(CacheError, match="does not match its checksum"):
        acts.to_tensor()
    with pytest.raises(CacheError, match="does not match its checksum"):
        list(open_cache(root).batches(HOOK, 8))
    with pytest.raises(CacheError, match="does not match its checksum"):
        _ = open_cache(root).tokens
    unchecked = open_cache(root, lazy_checksums=False)[HOOK].to_tensor()  # opted out
    assert not torch.equal(unchecked, ref[HOOK].to_tensor())


def test_the_cache_prompt_source_checks_rows_before_yielding_them(ref, other_rows, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    src = resolve_prompts(f"cache:{root}")
    assert src.description["cache_id"] == ref.id
    name = ref.manifest["shards"][1]["file"]
    (root / name).unlink()
    shutil.copy(other_rows.root / name, root / name)  # swapped after the source was opened
    rows = src.tokens()
    with pytest.raises(CacheError, match="holds other token rows"):
        next(rows)  # not even shard 0's rows are yielded before every shard's rows check


# --- malformed manifests and headers --------------------------------------------------


def _last(m):
    return m["shards"][-1]


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.pop("hooks"), r"lacks \['hooks'\]"),
        (lambda m: m.pop("model"), r"lacks \['model'\]"),
        (lambda m: m["config"].__setitem__("dtype", "float64"), "dtype 'float64' is not one of"),
        (lambda m: m.__setitem__("shards", "abc"), "'shards' is str, not list"),
        (lambda m: m.__setitem__("shards", []), "lists no shards"),
        (lambda m: m["shards"][0].pop("sha256"), r"shard entry 0 lacks \['sha256'\]"),
        (lambda m: m["shards"][1].__setitem__("rows", [0, 10**12]), "starts at row 0"),
        (lambda m: m["shards"][0].__setitem__("n_positions", 10**12), "do not add up"),
        (lambda m: m.__setitem__("n_rows", True), "n_rows"),
        (lambda m: m["shapes"].__setitem__("blocks.0.hook_resid_post", [-1]), "not a list of positive"),
    ],
    ids=["no-hooks", "no-model", "float64", "shards-str", "no-shards", "entry-key", "rows-1e12",
         "n_positions", "bool", "negative-shape"],
)
def test_a_malformed_manifest_is_one_clear_refusal(ref, tmp_path, edit, match):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    _rewrite_manifest(root, edit)
    with pytest.raises(CacheError, match="malformed: .*" + match):
        open_cache(root)
    report = verify_cache(root, recompute=4, progress=False)
    assert len(report.problems) == 1 and "malformed manifest" in report.problems[0]
    assert report.shards_checked == 0 and report.rows_recomputed == 0


def test_a_consistent_forged_row_count_is_caught_by_the_shard_header(ref, tmp_path):
    """Rows ``[.., 10**12]`` that add up everywhere in the manifest: the header disagrees, and
    verify samples rows without ever listing the claimed trillion."""

    def forge(m):
        _last(m)["rows"][1] = 10**12
        m["n_rows"] = m["prompts"]["count"] = 10**12

    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    _rewrite_manifest(root, forge)
    with pytest.raises(CacheError, match=r"row_offsets.*of shape \[\d+\], but the manifest says \[\d{12}\]"):
        open_cache(root)
    report = verify_cache(root, recompute=3, progress=False)
    last = ref.manifest["shards"][-1]["file"]
    assert any(last in p and "row_offsets" in p for p in report.problems)
    assert report.rows_recomputed == 3  # from the good shards only


def test_forged_manifest_shapes_are_refused(ref, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    _rewrite_manifest(root, lambda m: m["shapes"].__setitem__(HOOK, [64]))
    expected = rf"holds '{HOOK}' of shape \[\d+, 32\], but the manifest says \[\d+, 64\]"
    with pytest.raises(CacheError, match=expected):
        open_cache(root)
    report = verify_cache(root, progress=False)
    assert not report.ok and all("of shape" in p for p in report.problems)


def _forge_header(root: Path, index: int, patch) -> None:
    """Rewrite a shard's safetensors header, then rehash it into the manifest and the ID."""
    manifest = json.loads((root / MANIFEST).read_text())
    entry = manifest["shards"][index]
    path = root / entry["file"]
    data = path.read_bytes()
    patched = patch(data)
    path.write_bytes(patched)
    entry["sha256"], entry["bytes"] = sha256_file(path), len(patched)
    manifest["id"] = cache_id(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def test_a_header_length_of_2_to_the_62_is_refused_without_reading_it(ref, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    _forge_header(root, 0, lambda d: struct.pack("<Q", 1 << 62) + d[8:])
    expected = r"header length 4611686018427387904 does not fit the file's \d+ bytes"
    with pytest.raises(CacheError, match=expected):
        open_cache(root)
    with pytest.raises(CacheError, match="header length"):
        mmap_tensors(root / ref.manifest["shards"][0]["file"])
    report = verify_cache(root, recompute=2, progress=False)
    assert any("header length" in p for p in report.problems)


def test_a_forged_header_shape_is_refused(ref, tmp_path):
    def patch(data: bytes) -> bytes:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        header[HOOK]["shape"][0] *= 1000  # claims more rows than its bytes hold
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (n - len(raw))
        assert len(raw) == n
        return data[:8] + raw + data[8 + n :]

    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    _forge_header(root, 0, patch)
    with pytest.raises(CacheError, match=rf"tensor '{HOOK}' of shape .* does not fill its \d+ bytes"):
        open_cache(root)
    assert any("does not fill" in p for p in verify_cache(root, progress=False).problems)


def test_a_truncated_shard_file(ref, tmp_path):
    from interp.cache.format import read_header

    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(CacheError, match="3 bytes is too short"):
        read_header(path)
    path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}")
    with pytest.raises(CacheError, match="not a JSON object"):
        read_header(path)


# --- verify is bounded --------------------------------------------------------------------


def test_verify_stops_at_an_id_mismatch(ref, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["n_rows"] += 1
    (root / MANIFEST).write_text(json.dumps(manifest))
    _flip(root / manifest["shards"][0]["file"])  # would be a second problem if it went on
    report = verify_cache(root, recompute=4, progress=False)
    assert len(report.problems) == 1
    assert report.problems[0].startswith("ID mismatch") and "nothing else was checked" in report.problems[0]
    assert report.shards_checked == 0 and report.rows_recomputed == 0


def test_verify_refuses_a_negative_recompute(ref):
    with pytest.raises(ValueError, match="recompute must be a non-negative number of rows, got -5"):
        verify_cache(ref.root, recompute=-5, progress=False)


def test_recompute_samples_distinct_rows_without_listing_them(ref):
    from interp.cache.verify import _choose_rows

    manifest = {"shards": [{"rows": [0, 10**12]}, {"rows": [10**12, 10**12 + 5]}]}
    chosen = _choose_rows(manifest, {0: Path("a"), 1: Path("b")}, 50, seed=0)
    assert len(set(chosen)) == 50 and chosen == sorted(chosen)
    assert all((s == 0 and 0 <= r < 10**12) or (s == 1 and 10**12 <= r < 10**12 + 5) for s, r in chosen)
    assert chosen == _choose_rows(manifest, {0: Path("a"), 1: Path("b")}, 50, seed=0)
    assert len(_choose_rows(manifest, {1: Path("b")}, 50, seed=0)) == 5


# --- the unhashed locator -----------------------------------------------------------------


def test_an_edited_locator_never_yields_an_unchecked_model(ref, gpt2, gpt2_other_dir, gpt2_other, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "c"))
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["locator"] = {"model_spec": f"hf:{gpt2_other_dir}"}
    (root / MANIFEST).write_text(json.dumps(manifest))
    cache = open_cache(root)
    assert cache.id == ref.id, "the locator is not hashed: the ID cannot see the edit"
    assert cache.model_locator == f"hf:{gpt2_other_dir}"
    with pytest.raises(ModelMismatchError) as exc:
        cache.load_model(device="cpu")
    assert ref.model_fingerprint in str(exc.value) and gpt2_other.fingerprint in str(exc.value)
    report = verify_cache(root, recompute=2, progress=False)
    assert report.rows_recomputed == 0
    assert any(p.startswith("model mismatch") and gpt2_other.fingerprint in p for p in report.problems)
    assert cache.load_model(gpt2).fingerprint == ref.model_fingerprint  # an explicit model still works


def test_a_shard_path_that_cannot_be_resolved(ref, tmp_path):
    root = Path(shutil.copytree(ref.root, tmp_path / "loop"))
    shard = root / ref.manifest["shards"][0]["file"]
    shard.unlink()
    shard.symlink_to(shard)  # a symlink loop
    with pytest.raises(CacheError, match="cannot be resolved"):
        open_cache(root)
    assert any("cannot be resolved" in p for p in verify_cache(root, progress=False).problems)
    root = Path(shutil.copytree(ref.root, tmp_path / "nul"))
    _rewrite_manifest(root, lambda m: m["shards"][0].__setitem__("file", "shards/a\x00b"))
    with pytest.raises(CacheError, match="is not a relative path"):
        open_cache(root)
