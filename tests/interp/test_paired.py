"""interp.cache.paired: two models over the same token rows, aligned position by position."""

import json

import pytest
import torch

from interp.cache import CacheConfig, build_cache, build_paired_cache, open_paired_cache
from interp.cache.paired import PAIR_FILE
from interp.errors import CacheError

HOOKS = ("hook_embed", "blocks.1.hook_resid_post")


@pytest.fixture(scope="module")
def config():
    return CacheConfig(hooks=HOOKS, shard_tokens=30, batch_size=4)


@pytest.fixture(scope="module")
def paired(gpt2, gpt2_other, prompts, config, tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    return build_paired_cache({"base": gpt2, "tuned": gpt2_other}, prompts, root, config, progress=False)


def _embedding(model) -> torch.Tensor:
    import transformers

    hf = transformers.GPT2LMHeadModel.from_pretrained(model.spec.removeprefix("hf:"))
    return hf.transformer.wte.weight.detach()


def _tokens_of(embeds: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Invert an embedding lookup: the token whose embedding row each activation is."""
    ids = torch.cdist(embeds, table).argmin(dim=1)
    torch.testing.assert_close(table[ids], embeds, atol=1e-6, rtol=0)
    return ids


def test_both_caches_cover_the_same_rows(paired, gpt2, gpt2_other):
    base, tuned = paired["base"], paired["tuned"]
    assert paired.labels == ["base", "tuned"]
    assert base.manifest["prompts"]["sha256"] == tuned.manifest["prompts"]["sha256"]
    assert torch.equal(base.tokens, tuned.tokens)
    assert torch.equal(base.rows, tuned.rows) and torch.equal(base.positions, tuned.positions)
    assert base.model_fingerprint == gpt2.fingerprint
    assert tuned.model_fingerprint == gpt2_other.fingerprint
    assert tuned.manifest["prompts"]["source"]["cache_id"] == base.id
    assert not torch.allclose(base[HOOKS[1]].to_tensor(), tuned[HOOKS[1]].to_tensor())


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_are_aligned_on_the_same_tokens(paired, gpt2, gpt2_other, shuffle):
    tables = {"base": _embedding(gpt2), "tuned": _embedding(gpt2_other)}
    n = 0
    order = []
    for batch in paired.batches("hook_embed", 16, shuffle=shuffle, seed=5):
        assert set(batch) == {"base", "tuned"}
        ids = {k: _tokens_of(v, tables[k]) for k, v in batch.items()}
        assert torch.equal(ids["base"], ids["tuned"]), "batches pair different tokens"
        n += len(ids["base"])
        order.append(ids["base"])
    assert n == paired["base"].n_positions
    got = torch.cat(order)
    assert torch.equal(got, paired["base"].tokens) != shuffle


def test_same_model_twice_gives_identical_shuffled_batches(gpt2, prompts, config, tmp_path):
    pair = build_paired_cache({"a": gpt2, "b": gpt2}, prompts[:15], tmp_path, config, progress=False)
    for batch in pair.batches(HOOKS[1], 8, shuffle=True, seed=9):
        assert torch.equal(batch["a"], batch["b"])


def test_open_paired_cache_checks_ids_and_alignment(paired, gpt2_other, prompts, config, tmp_path):
    opened = open_paired_cache(paired.root)
    assert {k: c.id for k, c in opened.caches.items()} == {k: c.id for k, c in paired.caches.items()}
    pair = json.loads((paired.root / PAIR_FILE).read_text())
    assert pair["rows_sha256"] == paired["base"].manifest["prompts"]["sha256"]

    # a pair.json recording another ID
    import shutil

    root = shutil.copytree(paired.root, tmp_path / "copy")
    pair["caches"]["tuned"]["id"] = "sha256:" + "1" * 64
    (root / PAIR_FILE).write_text(json.dumps(pair))
    with pytest.raises(CacheError, match="records"):
        open_paired_cache(root)

    # a "tuned" cache over other rows, with pair.json rewritten to match its ID
    shutil.rmtree(root / "tuned")
    other = build_cache(gpt2_other, prompts[:10], root / "tuned", config, progress=False)
    pair["caches"]["tuned"]["id"] = other.id
    (root / PAIR_FILE).write_text(json.dumps(pair))
    with pytest.raises(CacheError, match="not over the same token rows"):
        open_paired_cache(root)


def test_paired_needs_two_models_and_a_pair_file(gpt2, prompts, config, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        build_paired_cache({"a": gpt2}, prompts, tmp_path, config, progress=False)
    with pytest.raises(CacheError, match="not a paired cache"):
        open_paired_cache(tmp_path)


def test_unknown_label(paired):
    with pytest.raises(KeyError, match="labels are"):
        paired["nope"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("{oops", "not valid JSON"),
        ('["a"]', "format 'list'"),
        ('{"format": "interp.paired-cache/1", "labels": ["base"]}', "malformed"),
        ('{"format": "interp.paired-cache/1", "labels": ["a", "b"], "caches": {"a": {"dir": "a"}}}',
         "malformed"),
        ('{"format": "interp.paired-cache/1", "labels": ["a", "b"], "caches": '
         '{"a": {"dir": "../x", "id": "i"}, "b": {"dir": "b", "id": "i"}}}', "leaves the cache directory"),
    ],
    ids=["json", "list", "one-label", "no-id", "escape"],
)
def test_a_damaged_pair_file_is_one_clear_refusal(tmp_path, text, match):
    (tmp_path / PAIR_FILE).write_text(text)
    with pytest.raises(CacheError, match=match):
        open_paired_cache(tmp_path)
