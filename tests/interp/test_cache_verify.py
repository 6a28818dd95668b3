"""interp.cache.verify (and the matching refusals of open_cache): tampering is caught."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from interp.cache import open_cache, verify_cache
from interp.cache.format import MANIFEST, cache_id
from interp.errors import CacheError, ModelMismatchError
from interp.fingerprint import sha256_file


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write_manifest(root: Path, manifest: dict, rehash: bool) -> None:
    if rehash:
        manifest["id"] = cache_id(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def test_an_untouched_cache_verifies_with_recomputation(built_cache, gpt2):
    report = verify_cache(built_cache.root, model=gpt2, recompute=6, progress=False)
    assert report.ok, report.problems
    assert report.cache_id == built_cache.id
    assert report.shards_checked == len(built_cache.manifest["shards"])
    assert report.rows_recomputed == 6
    assert set(report.max_rel_error) == set(built_cache.hooks)
    assert max(report.max_rel_error.values()) < 1e-4
    assert "OK" in str(report)


def test_recompute_loads_the_manifest_model_by_default(built_cache):
    report = verify_cache(built_cache.root, recompute=2, progress=False)
    assert report.ok, report.problems
    assert report.rows_recomputed == 2


def test_flipped_byte_in_shard_data_fails_naming_that_shard(cache_copy):
    manifest = _manifest(cache_copy)
    victim = manifest["shards"][2]["file"]
    path = cache_copy / victim
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data, not the header
    path.write_bytes(bytes(data))
    report = verify_cache(cache_copy, progress=False)
    assert not report.ok
    assert len(report.problems) == 1
    assert victim in report.problems[0] and "checksum" in report.problems[0]
    others = [s["file"] for s in manifest["shards"] if s["file"] != victim]
    assert not any(o in report.problems[0] for o in others)
    assert "FAILED" in str(report)


def test_tampered_values_with_forged_checksums_are_caught_by_recomputation(cache_copy, gpt2):
    """Someone edits activations and rewrites every hash: only recomputing can tell."""
    from interp.cache.format import FORMAT, mmap_tensors
    from interp.cache.shardio import write_shard

    manifest = _manifest(cache_copy)
    for entry in manifest["shards"]:
        path = cache_copy / entry["file"]
        tensors = {k: v.clone() for k, v in mmap_tensors(path).items()}
        tensors["blocks.1.hook_resid_post"] *= 1.01
        path.unlink()
        digest, size = write_shard(path, tensors, {"format": FORMAT})
        entry["sha256"], entry["bytes"] = digest, size
    _write_manifest(cache_copy, manifest, rehash=True)
    assert verify_cache(cache_copy, progress=False).ok, "checksums alone cannot see it"
    report = verify_cache(cache_copy, model=gpt2, recompute=4, progress=False)
    assert not report.ok
    assert any("blocks.1.hook_resid_post" in p and "differ" in p for p in report.problems)
    assert not any("blocks.0.hook_resid_pre" in p for p in report.problems)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.__setitem__("n_rows", m["n_rows"] + 1),
        lambda m: m["shapes"].__setitem__("blocks.0.hook_resid_pre", [33]),
        lambda m: m["config"].__setitem__("seed", 5),
        lambda m: m["model"].__setitem__("fingerprint", "sha256:" + "0" * 64),
    ],
    ids=["n_rows", "shape", "seed", "fingerprint"],
)
def test_edited_manifest_is_an_id_mismatch(cache_copy, edit):
    manifest = _manifest(cache_copy)
    edit(manifest)
    _write_manifest(cache_copy, manifest, rehash=False)
    report = verify_cache(cache_copy, progress=False)
    assert not report.ok
    assert any("ID mismatch" in p for p in report.problems)
    with pytest.raises(CacheError, match="ID mismatch"):
        open_cache(cache_copy)


@pytest.mark.parametrize("bad", ["../evil.safetensors", "shards/../../evil.safetensors", "ABS"])
def test_shard_path_leaving_the_directory_is_rejected(cache_copy, tmp_path, bad):
    manifest = _manifest(cache_copy)
    victim = cache_copy / manifest["shards"][0]["file"]
    if bad == "ABS":
        outside = tmp_path / "evil.safetensors"
        bad = str(outside)
    else:
        outside = (cache_copy / bad).resolve()
    shutil.copy(victim, outside)  # a well-formed shard with the right checksum: only the path is wrong
    manifest["shards"][0]["file"] = bad
    _write_manifest(cache_copy, manifest, rehash=True)  # the ID matches: only the path is wrong
    with pytest.raises(CacheError, match="shard path"):
        open_cache(cache_copy)
    report = verify_cache(cache_copy, progress=False)
    assert not report.ok
    assert any("shard path" in p and bad in p for p in report.problems)


def test_symlinked_shard_leaving_the_directory_is_rejected(cache_copy, tmp_path):
    manifest = _manifest(cache_copy)
    victim = cache_copy / manifest["shards"][1]["file"]
    outside = tmp_path / "outside.safetensors"
    shutil.move(victim, outside)
    victim.symlink_to(outside)
    with pytest.raises(CacheError, match="leaves the cache directory"):
        open_cache(cache_copy)
    assert not verify_cache(cache_copy, progress=False).ok


def test_missing_or_truncated_shard(cache_copy):
    manifest = _manifest(cache_copy)
    gone, short = (cache_copy / manifest["shards"][i]["file"] for i in (0, 1))
    gone.unlink()
    short.write_bytes(short.read_bytes()[:100])
    with pytest.raises(CacheError, match="missing or has the wrong size"):
        open_cache(cache_copy)
    problems = verify_cache(cache_copy, progress=False).problems
    assert any("missing" in p and manifest["shards"][0]["file"] in p for p in problems)
    assert any("checksum" in p and manifest["shards"][1]["file"] in p for p in problems)


def test_not_a_cache(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        verify_cache(tmp_path / "nothing", progress=False)
    with pytest.raises(CacheError, match="not an activation cache"):
        open_cache(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(CacheError, match="not valid JSON"):
        open_cache(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(CacheError, match="format"):
        open_cache(tmp_path)


def test_recompute_with_another_model_reports_the_mismatch(built_cache, gpt2_other):
    report = verify_cache(built_cache.root, model=gpt2_other, recompute=2, progress=False)
    assert not report.ok
    assert any(
        "model mismatch" in p and gpt2_other.fingerprint in p and built_cache.model_fingerprint in p
        for p in report.problems
    )


def test_opening_against_a_different_model_refuses_with_both_fingerprints(built_cache, gpt2_other, gpt2):
    assert open_cache(built_cache.root, model=gpt2).id == built_cache.id
    with pytest.raises(ModelMismatchError) as exc:
        open_cache(built_cache.root, model=gpt2_other)
    msg = str(exc.value)
    assert built_cache.model_fingerprint in msg and gpt2_other.fingerprint in msg
    assert gpt2.fingerprint != gpt2_other.fingerprint
    with pytest.raises(ModelMismatchError):
        built_cache.check_model(gpt2_other.module)  # a bare module is fingerprinted too


def test_report_saves_as_json(built_cache, tmp_path):
    report = verify_cache(built_cache.root, progress=False)
    report.save(tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["ok"] is True and saved["cache_id"] == built_cache.id
    assert sha256_file(built_cache.root / built_cache.manifest["shards"][0]["file"]) == (
        built_cache.manifest["shards"][0]["sha256"]
    )


@pytest.mark.parametrize("positions, dtype", [("last", "float32"), ((0, -1), "bfloat16"), ("all", "float16")])
def test_recompute_across_positions_and_dtypes(gpt2, prompts, tmp_path, positions, dtype):
    from interp.cache import CacheConfig, build_cache

    config = CacheConfig(hooks=("blocks.*.hook_resid_post",), positions=positions, dtype=dtype,
                         shard_tokens=20, batch_size=3)
    cache = build_cache(gpt2, prompts[:12], tmp_path / "c", config, progress=False)
    report = verify_cache(cache.root, model=gpt2, recompute=12, progress=False)
    assert report.ok, report.problems
    assert report.rows_recomputed == 12


def test_hooked_transformer_cache_from_token_tensors(hooked, tmp_path):
    """A model passed in (no spec to reload): recompute needs the model, and says so without it."""
    from interp.cache import CacheConfig, build_cache

    tokens = torch.randint(2, 64, (9, 6), generator=torch.Generator().manual_seed(0))
    config = CacheConfig(hooks=("blocks.*.hook_resid_post", "blocks.0.attn.hook_z"), shard_tokens=20)
    cache = build_cache(hooked, tokens, tmp_path / "c", config, progress=False)
    assert cache.manifest["model"]["spec"] == "module:HookedTransformer"
    assert cache["blocks.0.attn.hook_z"].shape == (54, 4, 8)
    _, ref = hooked.run_with_cache(tokens)
    want = ref["blocks.0.attn.hook_z"].reshape(54, 4, 8)
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"].to_tensor(), want, atol=1e-5, rtol=0)
    assert verify_cache(cache.root, model=hooked, recompute=4, progress=False).ok
    report = verify_cache(cache.root, recompute=4, progress=False)
    assert not report.ok
    assert any("cannot load the cache's model" in p for p in report.problems)
