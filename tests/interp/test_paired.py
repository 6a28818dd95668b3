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


# --- labels, vocabularies and `interp cache pair` (issue 11, item 5) ---------------------


@pytest.mark.parametrize(
    "labels, match",
    [
        (["base", "../tuned"], "label '../tuned' cannot name a cache"),
        (["base", "pair.json"], "label 'pair.json' cannot name a cache"),
        (["base", ""], "label '' cannot name a cache"),
    ],
)
def test_labels_that_cannot_name_a_directory_are_refused_before_anything_is_written(
    labels, match, gpt2, gpt2_other, prompts, config, tmp_path
):
    root = tmp_path / "pair"
    with pytest.raises(CacheError, match=match):
        build_paired_cache(dict(zip(labels, (gpt2, gpt2_other), strict=True)), prompts, root, config,
                           progress=False)
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_a_model_whose_vocabulary_cannot_read_the_rows_is_refused(gpt2, prompts, config, tmp_path):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_vocab=16,
                                  act_fn="gelu", device="cpu")
    small = HookedTransformer(cfg)
    top = max(max(gpt2.encode(p)) for p in prompts[:10])
    assert top >= 16
    with pytest.raises(CacheError, match=rf"of 16 tokens, but the token rows of 'base' use id {top}"):
        build_paired_cache({"base": gpt2, "small": small}, prompts[:10], tmp_path, config, progress=False)
    assert not (tmp_path / "small").exists() and not (tmp_path / PAIR_FILE).exists()


def _parser_with_pair(build_parser):
    """``interp``'s parser, with ``cache pair`` added as interp.cli is to add it."""
    import argparse

    from interp.cache.pair_cli import add_parser

    parser = build_parser()

    def subcommands(p):
        return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))

    cache_sub = subcommands(subcommands(parser).choices["cache"])
    if "pair" not in cache_sub.choices:
        add_parser(cache_sub)
    return parser


@pytest.fixture
def pair_main(monkeypatch):
    """``interp.cli.main`` (its one-line errors included) with ``cache pair`` wired in."""
    import interp.cli

    original = interp.cli.build_parser
    monkeypatch.setattr(interp.cli, "build_parser", lambda: _parser_with_pair(original))
    return interp.cli.main


def _pair_argv(out, *models, prompts, hooks=("hook_embed",)):
    return ["cache", "pair", "--models", *models, "--prompts", str(prompts), "--hooks", *hooks,
            "--out", str(out), "--shard-tokens", "40", "--device", "cpu", "-q"]


def test_cli_pair_builds_an_aligned_pair_and_prints_its_ids(pair_main, gpt2_dir, gpt2_other_dir, prompts_file,
                                                            tmp_path, capsys):
    out = tmp_path / "pair"
    argv = _pair_argv(out, f"base=hf:{gpt2_dir}", f"tuned=hf:{gpt2_other_dir}", prompts=prompts_file,
                      hooks=HOOKS)
    assert pair_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    pair = open_paired_cache(out)
    assert printed[:2] == [f"base   {pair['base'].id}", f"tuned  {pair['tuned'].id}"]
    assert printed[2].startswith(f"2 caches over {pair['base'].n_rows} rows")
    assert torch.equal(pair["base"].tokens, pair["tuned"].tokens)
    assert pair["tuned"].manifest["prompts"]["source"]["cache_id"] == pair["base"].id
    # the same command again reuses both caches: the same IDs
    assert pair_main(argv) == 0
    assert capsys.readouterr().out.splitlines()[:2] == printed[:2]


def test_cli_pair_passes_the_model_options_on(pair_main, prompts_file, tmp_path, gpt2_dir, monkeypatch):
    import interp.cache.paired

    class Loaded(Exception):
        pass

    def fake_load(spec, device=None, dtype=None, **kwargs):
        raise Loaded(spec, device, dtype, kwargs)

    monkeypatch.setattr(interp.cache.paired, "load_model", fake_load)
    argv = _pair_argv(tmp_path / "out", f"a=hf:{gpt2_dir}", f"b=hf:{gpt2_dir}", prompts=prompts_file)
    with pytest.raises(Loaded) as info:
        pair_main([*argv, "--model-dtype", "bfloat16", "--bos", "off"])
    assert info.value.args == (f"hf:{gpt2_dir}", "cpu", "bfloat16", {"prepend_bos": False})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "models, message",
    [
        (["base={a}"], "a paired cache needs two or more models"),
        (["base={a}", "{b}"], "expected LABEL=SPEC, like base=smollm2"),
        (["base={a}", "=x"], "expected LABEL=SPEC"),
        (["base={a}", "base={b}"], "label 'base' is given twice"),
        (["base={a}", "../t={b}"], "label '../t' cannot name a cache in the pair"),
        (["base={a}", "t=foo:bar"], "unknown model spec 'foo:bar'; expected one of"),
        (["base={a}", "t=hf:/nonexistent/m"], "'/nonexistent/m' is not a Hugging Face model directory"),
    ],
    ids=["one", "no-label", "empty-label", "twice", "escape", "prefix", "missing-dir"],
)
def test_cli_pair_refuses_bad_models_in_one_line_before_loading(
    models, message, pair_main, gpt2_dir, gpt2_other_dir, prompts_file, tmp_path, capsys
):
    models = [m.format(a=f"hf:{gpt2_dir}", b=f"hf:{gpt2_other_dir}") for m in models]
    out = tmp_path / "out"
    assert pair_main(_pair_argv(out, *models, prompts=prompts_file)) == 2
    err = capsys.readouterr().err
    assert err.startswith("interp: error: --models ") and message in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_cli_pair_refuses_other_bad_input_in_one_line(pair_main, gpt2_dir, gpt2_other_dir, prompts_file,
                                                      tmp_path, capsys):
    models = [f"base=hf:{gpt2_dir}", f"tuned=hf:{gpt2_other_dir}"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (_pair_argv(blocker, *models, prompts=prompts_file), "is a file, not a directory"),
        (_pair_argv(tmp_path / "o1", *models, prompts=tmp_path / "none.txt"), "none.txt"),
        (_pair_argv(tmp_path / "o2", *models, prompts=prompts_file, hooks=("blocks.9.hook_resid_post",)),
         "blocks.9.hook_resid_post"),
        ([*_pair_argv(tmp_path / "o3", *models, prompts=prompts_file), "--batch-size", "0"], "batch_size"),
    ]
    for argv, message in cases:
        assert pair_main(argv) == 2
        err = capsys.readouterr().err  # (transformers' loading bar may come first, in-process)
        last = err.strip().splitlines()[-1]
        assert last.startswith("interp: error: ") and message in last and "Traceback" not in err
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]
