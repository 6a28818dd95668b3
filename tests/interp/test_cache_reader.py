"""interp.cache.reader: lazy per-hook tensors, batch iterators, row access."""

import pytest
import torch

from interp.cache import HookActivations, build_cache, open_cache
from interp.errors import HookNameError

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def acts(built_cache) -> HookActivations:
    return built_cache[HOOK]


@pytest.fixture(scope="module")
def full(acts) -> torch.Tensor:
    return acts.to_tensor()


def test_shape_dtype_and_shards(acts, full, built_cache):
    assert len(acts.shards) == len(built_cache.manifest["shards"]) >= 4
    assert acts.shape == (built_cache.n_positions, 32) == tuple(full.shape)
    assert acts.dtype == torch.float32
    assert HOOK in repr(acts)


def test_int_indexing(acts, full):
    for i in (0, 1, len(acts) - 1, -1, -len(acts)):
        torch.testing.assert_close(acts[i], full[i], atol=0, rtol=0)
    with pytest.raises(IndexError):
        acts[len(acts)]
    with pytest.raises(IndexError):
        acts[-len(acts) - 1]


def test_slices_across_shard_boundaries(acts, full):
    bounds = acts._starts.tolist()
    b = int(bounds[2])
    for sl in (slice(b - 3, b + 3), slice(0, len(acts)), slice(5, None, 7), slice(b, b), slice(-10, None)):
        torch.testing.assert_close(acts[sl], full[sl], atol=0, rtol=0)
    # a slice spanning every shard boundary
    torch.testing.assert_close(acts[bounds[1] - 1 : bounds[-2] + 1], full[bounds[1] - 1 : bounds[-2] + 1])


def test_index_tensors_and_lists_keep_order(acts, full):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(acts), (50,), generator=g)
    torch.testing.assert_close(acts[idx], full[idx], atol=0, rtol=0)
    torch.testing.assert_close(acts[[7, 3, 3, -1]], full[[7, 3, 3, -1]], atol=0, rtol=0)
    assert acts[torch.tensor([], dtype=torch.long)].shape == (0, 32)
    with pytest.raises(IndexError):
        acts[torch.tensor([0, len(acts)])]


def test_boolean_mask_index_selects_like_torch(acts, full):
    mask = torch.zeros(len(acts), dtype=torch.bool)
    mask[[2, 40, len(acts) - 1]] = True
    torch.testing.assert_close(acts[mask], full[mask], atol=0, rtol=0)
    with pytest.raises(IndexError):
        acts[mask[:-1]]


def test_tensors_are_memory_mapped_not_loaded(built_cache):
    shard = built_cache[HOOK].shards[0]
    # backed by the shard file: its storage is the whole file, not just this tensor
    path = built_cache.root / built_cache.manifest["shards"][0]["file"]
    assert shard.untyped_storage().nbytes() == path.stat().st_size


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, 50, 10_000])
def test_batches_cover_every_position_once(built_cache, full, shuffle, batch_size):
    batches = list(built_cache.batches(HOOK, batch_size, shuffle=shuffle, seed=3))
    assert all(len(b) == batch_size for b in batches[:-1])
    assert 0 < len(batches[-1]) <= batch_size
    got = torch.cat(batches)
    assert got.shape == full.shape
    if not shuffle:
        torch.testing.assert_close(got, full, atol=0, rtol=0)
    else:
        assert not torch.equal(got, full)
        # same multiset of rows: sort both by a content key
        key = lambda t: t[torch.argsort(t[:, 0] * 1000 + t[:, 1])]  # noqa: E731
        torch.testing.assert_close(key(got), key(full), atol=0, rtol=0)


def test_batches_drop_last_and_are_seeded(built_cache):
    n = built_cache.n_positions
    dropped = list(built_cache.batches(HOOK, 7, drop_last=True))
    assert sum(len(b) for b in dropped) == n // 7 * 7
    a = torch.cat(list(built_cache.batches(HOOK, 9, shuffle=True, seed=1)))
    b = torch.cat(list(built_cache.batches(HOOK, 9, shuffle=True, seed=1)))
    c = torch.cat(list(built_cache.batches(HOOK, 9, shuffle=True, seed=2)))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="batch_size"):
        next(built_cache.batches(HOOK, 0))


def test_unknown_hook_in_cache_lists_cached_names(built_cache):
    with pytest.raises(HookNameError, match="blocks.1.hook_resid_post"):
        built_cache["blocks.1.hook_resid_pots"]


def test_rows_and_row_tokens(built_cache, gpt2, prompts):
    rows = list(built_cache.iter_row_tokens())
    assert rows == [gpt2.encode(p) for p in prompts]
    assert built_cache.row_tokens(len(prompts) - 1) == rows[-1]
    with pytest.raises(IndexError):
        built_cache.row_tokens(len(prompts))
    assert "rows=40" in repr(built_cache)


def test_cache_dir_prompt_source_reproduces_rows(built_cache, gpt2, cache_config, tmp_path):
    again = build_cache(gpt2, f"cache:{built_cache.root}", tmp_path / "again", cache_config, progress=False)
    assert list(again.iter_row_tokens()) == list(built_cache.iter_row_tokens())
    assert again.manifest["prompts"]["sha256"] == built_cache.manifest["prompts"]["sha256"]
    assert again.manifest["prompts"]["source"] == {
        "kind": "cache", "cache_id": built_cache.id, "count": built_cache.n_rows,
    }
    torch.testing.assert_close(again[HOOK].to_tensor(), built_cache[HOOK].to_tensor(), atol=0, rtol=0)


def test_open_cache_reads_nothing_until_touched(built_cache):
    cache = open_cache(built_cache.root)
    assert "_shards" not in cache.__dict__
    assert cache.n_rows == built_cache.n_rows and cache.hooks == built_cache.hooks
    cache[HOOK]
    assert "_shards" in cache.__dict__
