"""interp.cache.build and interp.cache.config: content, provenance, IDs, streaming, refusals."""

import hashlib
import json
import weakref
from pathlib import Path

import pytest
import torch

import interp.cache.build as build_mod
from interp.cache import CacheConfig, build_cache
from interp.cache.format import MANIFEST, SHARD_DIR, cache_id
from interp.errors import CacheError, HookNameError
from interp.prompts import PromptSource


def _hf(path: str, cls_name: str):
    import transformers

    return getattr(transformers, cls_name).from_pretrained(path).eval()


# --- identity ---------------------------------------------------------------------------


def test_same_inputs_and_seed_give_the_same_id_twice(gpt2, prompts_file, cache_config, tmp_path, built_cache):
    again = build_cache(gpt2, prompts_file, tmp_path / "again", cache_config, progress=False)
    assert again.root != built_cache.root
    assert again.id == built_cache.id
    assert again.id.startswith("sha256:") and len(again.id) == 7 + 64
    for a, b in zip(again.manifest["shards"], built_cache.manifest["shards"], strict=True):
        assert a["sha256"] == b["sha256"], "shard bytes must be reproducible"


def test_id_is_sha256_of_the_canonical_manifest_without_id_and_locator(built_cache):
    text = (built_cache.root / MANIFEST).read_text()
    manifest = json.loads(text)
    assert manifest["locator"]["model_spec"].startswith("hf:/")
    body = {k: v for k, v in manifest.items() if k not in ("id", "locator")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert manifest["id"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    assert cache_id(manifest) == manifest["id"]


def test_id_does_not_depend_on_where_the_checkpoint_lies(gpt2_dir, prompts, cache_config, tmp_path):
    import shutil

    from interp.models import load_model

    moved = tmp_path / "elsewhere" / gpt2_dir.name
    shutil.copytree(gpt2_dir, moved)
    a = build_cache(load_model(f"hf:{gpt2_dir}", device="cpu"), prompts[:6], tmp_path / "a", cache_config,
                    progress=False)
    b = build_cache(load_model(f"hf:{moved}", device="cpu"), prompts[:6], tmp_path / "b", cache_config,
                    progress=False)
    assert a.manifest["locator"] != b.manifest["locator"]
    assert a.id == b.id


def test_a_different_seed_or_setting_gives_another_id(gpt2, prompts, cache_config, tmp_path):
    a = build_cache(gpt2, prompts[:6], tmp_path / "a", cache_config, progress=False)
    seed = CacheConfig(**{**cache_config.__dict__, "seed": 1})
    b = build_cache(gpt2, prompts[:6], tmp_path / "b", seed, progress=False)
    c = build_cache(gpt2, prompts[1:7], tmp_path / "c", cache_config, progress=False)
    assert len({a.id, b.id, c.id}) == 3


def test_manifest_records_provenance_without_timestamps(built_cache, gpt2, prompts_file, prompts):
    m = built_cache.manifest
    assert m["model"]["fingerprint"] == gpt2.fingerprint
    assert m["model"]["spec"] == "hf:" + Path(gpt2.spec.removeprefix("hf:")).name
    assert m["locator"]["model_spec"] == gpt2.spec
    assert m["tokenizer"]["hash"] == gpt2.tokenizer_hash()
    src = m["prompts"]["source"]
    assert src["kind"] == "file" and src["name"] == prompts_file.name
    assert src["sha256"] == "sha256:" + hashlib.sha256(prompts_file.read_bytes()).hexdigest()
    assert m["prompts"]["count"] == m["n_rows"] == len(prompts)
    assert m["hooks"] == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    assert m["config"] == {
        "positions": "all", "dtype": "float32", "batch_size": 8, "shard_tokens": 50,
        "max_tokens": None, "max_seq_len": None, "seed": 0,
    }
    assert m["shapes"] == {h: [32] for h in m["hooks"]}
    assert m["versions"]["interp"]
    assert m["n_positions"] == sum(len(gpt2.encode(p)) for p in prompts)
    flat = json.dumps(m)
    assert str(prompts_file.parent) not in flat, "no host paths for the prompts"
    for key in ("time", "date", "created", "timestamp", "host"):
        assert key not in flat.lower().replace("interp", ""), key
    for shard in m["shards"]:
        data = (built_cache.root / shard["file"]).read_bytes()
        assert shard["sha256"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert shard["bytes"] == len(data)


def test_shards_hold_at_most_shard_tokens_positions(built_cache):
    shards = built_cache.manifest["shards"]
    assert len(shards) >= 4
    assert all(s["n_positions"] <= 50 for s in shards)
    rows = [s["rows"] for s in shards]
    assert rows[0][0] == 0 and rows[-1][1] == built_cache.n_rows
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False)), "rows contiguous"
    files = sorted(p.name for p in (built_cache.root / SHARD_DIR).iterdir())
    assert files == sorted(Path(s["file"]).name for s in shards), "no stray or .tmp files"


def test_a_row_longer_than_a_shard_gets_a_shard_of_its_own(gpt2, tmp_path):
    config = CacheConfig(hooks=("blocks.0.hook_resid_post",), shard_tokens=4)
    cache = build_cache(gpt2, ["w1 w2", "w1 w2 w3 w4 w5 w6 w7", "w3"], tmp_path / "c", config, progress=False)
    assert [s["n_positions"] for s in cache.manifest["shards"]] == [2, 7, 1]
    assert cache.n_positions == 10


# --- content: oracle --------------------------------------------------------------------


@pytest.mark.parametrize("fixture, cls_name", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM")])
def test_cached_activations_equal_hf_hidden_states(
    request, fixture, cls_name, prompts, built_cache, tmp_path
):
    model = request.getfixturevalue(fixture)
    if fixture == "gpt2":
        cache = built_cache
    else:
        config = CacheConfig(hooks=("blocks.*.hook_resid_pre",), shard_tokens=40, batch_size=5)
        cache = build_cache(model, prompts[:12], tmp_path / "llama", config, progress=False)
    hf = _hf(model.spec.removeprefix("hf:"), cls_name)
    rows = cache.rows
    for layer in range(model.n_layers):
        acts = cache[f"blocks.{layer}.hook_resid_pre"].to_tensor()
        for r in range(0, cache.n_rows, 3):
            tokens = torch.tensor([cache.row_tokens(r)])
            with torch.no_grad():
                hidden = hf(tokens, output_hidden_states=True).hidden_states[layer][0]
            torch.testing.assert_close(acts[rows == r], hidden, atol=1e-5, rtol=0)


def test_cached_token_columns_match_the_tokenizer(built_cache, gpt2, prompts):
    tokens, rows, pos = built_cache.tokens, built_cache.rows, built_cache.positions
    assert len(tokens) == len(rows) == len(pos) == built_cache.n_positions
    for r in (0, 7, len(prompts) - 1):
        ids = gpt2.encode(prompts[r])
        assert built_cache.row_tokens(r) == ids
        assert tokens[rows == r].tolist() == ids
        assert pos[rows == r].tolist() == list(range(len(ids)))


@pytest.mark.parametrize("positions", ["last", (0, -1), (1, 50)])
def test_positions_last_and_tuples(gpt2, prompts, tmp_path, positions):
    config = CacheConfig(
        hooks=("blocks.0.hook_resid_post",), positions=positions, shard_tokens=7, batch_size=3
    )
    subset = prompts[:10]
    cache = build_cache(gpt2, subset, tmp_path / "c", config, progress=False)
    acts = cache["blocks.0.hook_resid_post"]
    i = 0
    for r, text in enumerate(subset):
        ids = gpt2.encode(text)
        n = len(ids)
        want_pos = {"last": [n - 1], (0, -1): sorted({0, n - 1}), (1, 50): [1]}[positions]
        assert cache.positions[cache.rows == r].tolist() == want_pos
        from interp.hooks import record

        with record(gpt2, "blocks.0.hook_resid_post") as rec:
            gpt2(torch.tensor([ids]))
        got = acts[i : i + len(want_pos)]
        torch.testing.assert_close(got, rec["blocks.0.hook_resid_post"][0, want_pos], atol=1e-5, rtol=0)
        i += len(want_pos)
    assert i == cache.n_positions == len(acts)


def test_max_tokens_and_max_seq_len_cut_rows(gpt2, prompts, tmp_path):
    lens = [len(gpt2.encode(p)) for p in prompts[:5]]
    config = CacheConfig(hooks=("blocks.0.hook_resid_pre",), max_seq_len=4, max_tokens=11)
    cache = build_cache(gpt2, prompts[:5], tmp_path / "c", config, progress=False)
    cut = [min(n, 4) for n in lens]
    want, budget = [], 11
    for n in cut:
        if budget <= 0:
            break
        want.append(min(n, budget))
        budget -= want[-1]
    assert [len(cache.row_tokens(r)) for r in range(cache.n_rows)] == want
    assert cache.n_positions == 11


def test_bfloat16_storage(gpt2, prompts, tmp_path, built_cache):
    config = CacheConfig(hooks=("blocks.1.hook_resid_post",), dtype="bfloat16", shard_tokens=50, batch_size=8)
    cache = build_cache(gpt2, prompts, tmp_path / "bf16", config, progress=False)
    got = cache["blocks.1.hook_resid_post"].to_tensor()
    assert got.dtype == torch.bfloat16
    want = built_cache["blocks.1.hook_resid_post"].to_tensor().to(torch.bfloat16)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_token_tensor_and_token_lists_give_the_same_cache(gpt2, tmp_path):
    rows = [[3, 4, 5, 6], [7, 8, 9, 10]]
    config = CacheConfig(hooks=("blocks.0.hook_resid_post",))
    a = build_cache(gpt2, torch.tensor(rows), tmp_path / "a", config, progress=False)
    b = build_cache(gpt2, rows, tmp_path / "b", config, progress=False)
    assert a.id == b.id
    assert a.row_tokens(1) == rows[1]


# --- refusals ---------------------------------------------------------------------------


def test_unknown_hook_fails_with_closest_names_and_writes_nothing(gpt2, prompts, tmp_path):
    out = tmp_path / "out"
    config = CacheConfig(hooks=("blocks.0.hook_resid_pre", "blocks.1.hook_resid_psot"))
    with pytest.raises(HookNameError) as exc:
        build_cache(gpt2, prompts, out, config, progress=False)
    assert "blocks.1.hook_resid_post" in str(exc.value).split("Closest valid names:")[1]
    assert not out.exists()


def test_attention_pattern_hooks_are_refused_before_writing(gpt2, prompts, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="hook_pattern"):
        build_cache(gpt2, prompts, out, CacheConfig(hooks=("blocks.0.attn.hook_pattern",)), progress=False)
    assert not out.exists()


def test_refuses_a_foreign_nonempty_directory(gpt2, prompts, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not an activation cache"):
        build_cache(gpt2, prompts, tmp_path, CacheConfig(hooks=("blocks.0.hook_resid_pre",)), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_no_tokens_is_an_error_and_leaves_nothing(gpt2, tmp_path):
    with pytest.raises(CacheError, match="no tokens"):
        build_cache(gpt2, [], tmp_path / "c", CacheConfig(hooks=("blocks.0.hook_resid_pre",)), progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(CacheError, match="no tokens"):
        build_cache(gpt2, ["", "  "], tmp_path, CacheConfig(hooks=("blocks.0.hook_resid_pre",)),
                    progress=False)
    assert list(tmp_path.iterdir()) == [], "the user's directory is kept, emptied of the build's files"


def test_out_dir_that_is_a_file_is_refused(gpt2, tmp_path):
    out = tmp_path / "f"
    out.write_text("mine")
    with pytest.raises(CacheError, match=r"output directory '.*f' is a file; give a directory"):
        build_cache(gpt2, ["w1"], out, CacheConfig(hooks=("blocks.0.hook_resid_pre",)), progress=False)
    assert out.read_text() == "mine"


def test_the_manifest_records_the_tokenizer_record(built_cache, gpt2):
    assert built_cache.manifest["tokenizer"] == gpt2.tokenizer_record()
    assert set(gpt2.tokenizer_record()) == {"hash", "prepend_bos", "bos_token_id"}


def test_rerunning_a_finished_build_returns_the_same_cache(
    gpt2, prompts_file, cache_config, built_cache, tmp_path
):
    import shutil

    root = Path(shutil.copytree(built_cache.root, tmp_path / "copy"))
    again = build_cache(gpt2, prompts_file, root, cache_config, progress=False)
    assert again.id == built_cache.id


def test_a_finished_cache_with_other_prompts_is_refused(gpt2, tmp_path):
    config = CacheConfig(hooks=("blocks.0.hook_resid_post",))
    build_cache(gpt2, ["w1 w2", "w3"], tmp_path / "c", config, progress=False)
    with pytest.raises(CacheError, match="other settings.*prompts"):
        build_cache(gpt2, ["w7 w8", "w9"], tmp_path / "c", config, progress=False)
    with pytest.raises(CacheError, match="other settings.*prompts"):
        build_cache(gpt2, [[3, 4], [5]], tmp_path / "c", config, progress=False)


def test_a_finished_cache_with_other_settings_is_refused(
    gpt2, prompts_file, cache_config, built_cache, tmp_path
):
    import shutil

    root = Path(shutil.copytree(built_cache.root, tmp_path / "copy"))
    other = CacheConfig(**{**cache_config.__dict__, "dtype": "float16"})
    with pytest.raises(CacheError, match="other settings.*dtype"):
        build_cache(gpt2, prompts_file, root, other, progress=False)


# --- bounded memory ---------------------------------------------------------------------


class _Rows:
    """A token-row stream that records how far the builder has read it."""

    def __init__(self, rows):
        self.rows, self.read = rows, 0

    def __call__(self):
        self.read = 0
        for row in self.rows:
            self.read += 1
            yield row


def test_build_streams_and_bounds_memory_by_shards(gpt2, tmp_path, monkeypatch):
    """Buffers never exceed one shard; the source is read lazily; old shards are released.

    The builder computes shard k+1 while a writer thread writes shard k, so at most two shards'
    buffers are alive at once (``build.py``: "keeps at most two shards in memory").
    """
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, 10, (60,), generator=g).tolist()
    rows = [torch.randint(2, 64, (n,), generator=g).tolist() for n in lengths]
    stream = _Rows(rows)
    source = PromptSource({"kind": "test-stream", "count": len(rows)}, tokens=stream)
    shard_tokens = 20
    allocated: list[tuple[int, ...]] = []
    buffers: list[weakref.ref] = []
    alive_at_compute: list[int] = []
    read_ahead: list[int] = []
    rows_computed = [0]

    class TorchSpy:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def empty(*args, **kwargs):
            t = torch.empty(*args, **kwargs)
            allocated.append(tuple(t.shape))
            return t

    real_compute = build_mod._compute_shard

    def spy_compute(shard_rows, *args, **kwargs):
        rows_computed[0] += len(shard_rows)
        # at most the one row that closed this shard has been read beyond it
        read_ahead.append(stream.read - rows_computed[0])
        out = real_compute(shard_rows, *args, **kwargs)
        alive_at_compute.append(sum(ref() is not None for ref in buffers))
        buffers.append(weakref.ref(out["blocks.0.hook_resid_post"]))
        return out

    monkeypatch.setattr(build_mod, "torch", TorchSpy())
    monkeypatch.setattr(build_mod, "_compute_shard", spy_compute)
    config = CacheConfig(hooks=("blocks.*.hook_resid_post",), shard_tokens=shard_tokens, batch_size=4)
    cache = build_cache(gpt2, source, tmp_path / "c", config, progress=False)
    monkeypatch.undo()

    n_shards = len(cache.manifest["shards"])
    assert n_shards >= 10 and len(alive_at_compute) == n_shards
    assert allocated, "the spy saw no buffer allocation"
    assert max(shape[0] for shape in allocated) <= shard_tokens
    assert max(read_ahead) <= 1, read_ahead
    # besides the shard just computed, at most one older shard (the one being written) is alive
    assert max(alive_at_compute) <= 1, alive_at_compute
    assert cache.n_positions == sum(lengths)


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(hooks=()), "hooks"),
        (dict(positions="first"), "positions"),
        (dict(positions=()), "positions"),
        (dict(dtype="float64"), "dtype"),
        (dict(batch_size=0), "batch_size"),
        (dict(shard_tokens=0), "shard_tokens"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_seq_len=-3), "max_seq_len"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    args = {"hooks": ("blocks.0.hook_resid_pre",), **kwargs}
    with pytest.raises((ValueError, TypeError), match=field):
        CacheConfig(**args)


def test_config_bad_values_raise_value_error_without_the_type_checker():
    # the jaxtyping/beartype hook checks Literal fields first; the dataclass's own check stays
    with pytest.raises(ValueError, match="dtype 'float64'"):
        CacheConfig.__post_init__(_Fake(dtype="float64"))
    with pytest.raises(ValueError, match="positions 'first'"):
        CacheConfig.__post_init__(_Fake(positions="first"))


class _Fake:
    def __init__(self, **kw):
        self.hooks, self.positions, self.dtype = ("h",), "all", "float32"
        self.batch_size = self.shard_tokens = 1
        self.max_tokens = self.max_seq_len = None
        self.__dict__.update(kw)


def test_kept_positions():
    c = CacheConfig(hooks=("h",), positions=(0, -1, 2, 9))
    assert c.kept_positions(5) == [0, 2, 4]
    assert c.kept_positions(1) == [0]
    assert CacheConfig(hooks=("h",), positions="last").kept_positions(4) == [3]
    assert CacheConfig(hooks=("h",)).kept_positions(3) == [0, 1, 2]
