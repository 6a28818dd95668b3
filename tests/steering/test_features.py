"""Feature discovery: AUROC against brute force, planted features, contexts, paired firing rates."""

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from interp.cache import CacheConfig, build_paired_cache
from interp.cli import main
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from steering.features import (
    auroc,
    firing_rates,
    marker_labels,
    rank_features,
    reason_score,
    token_labels,
    token_word_ids,
    top_contexts,
)
from steering.sae import SAEError, save_sae

HOOK = "hook_embed"  # depends on the current token only: a feature can be planted exactly
TOK = WordTokenizer(organism_vocab(33))  # 64 words, the tiny model's vocabulary size
WAIT, CHECK = TOK.encode("WAIT")[0], TOK.encode("CHECK")[0]


def _rows(n: int = 40, length: int = 12, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(20, 64, (n, length), generator=g)
    rows[torch.rand((n, length), generator=g) < 0.1] = WAIT
    rows[torch.rand((n, length), generator=g) < 0.05] = CHECK
    return rows.tolist()


@pytest.fixture(scope="module")
def paired(hooked, tmp_path_factory):
    """``base`` = the tiny model; ``tuned`` = the same with WAIT's embedding replaced by another word's."""
    tuned = copy.deepcopy(hooked)
    with torch.no_grad():
        tuned.embed.W_E[WAIT] = hooked.embed.W_E[30]
    config = CacheConfig(hooks=(HOOK,), shard_tokens=150, batch_size=16)
    root = tmp_path_factory.mktemp("paired")
    return build_paired_cache({"base": hooked, "tuned": tuned}, _rows(), root, config, progress=False)


@pytest.fixture(scope="module")
def cache(paired):
    return paired["base"]


def _planted_sae(hooked, n_random: int = 15, seed: int = 0):
    """Feature 0 fires exactly on WAIT's embedding, feature 1 on CHECK's; the rest are random ReLUs
    blind to both (their encoder directions are orthogonal to the two embeddings)."""
    from sae_lens import StandardSAE, StandardSAEConfig

    d = hooked.cfg.d_model
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 + n_random, apply_b_dec_to_input=False))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        W_E = hooked.embed.W_E
        for f, tok in ((0, WAIT), (1, CHECK)):
            e = W_E[tok]
            proj = W_E @ e / e.dot(e)  # 1 at the planted token
            second = proj[torch.arange(len(proj)) != tok].max()
            assert second < 1  # the token is linearly separable, so the feature is exact
            sae.W_enc[:, f] = e / e.dot(e)
            sae.b_enc[f] = -(1 + second) / 2
        q, _ = torch.linalg.qr(W_E[[WAIT, CHECK]].T)  # [d, 2], orthonormal
        rand = torch.randn((d, n_random), generator=g)
        sae.W_enc[:, 2:] = rand - q @ (q.T @ rand)
        sae.b_enc[2:] = 0
        sae.W_dec.copy_(torch.randn(sae.W_dec.shape, generator=g))
    return sae


def _brute_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def test_auroc_matches_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (60, 7), generator=g).float()  # many ties
    scores[:, 0] = 0  # a column of one value: 0.5
    labels = torch.rand(60, generator=g) < 0.3
    got = auroc(scores, labels, chunk=3)
    want = torch.tensor([_brute_auroc(scores[:, j], labels) for j in range(7)])
    assert torch.allclose(got, want, atol=1e-6)
    assert got[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="both classes"):
        auroc(scores, torch.zeros(60, dtype=torch.bool))
    with pytest.raises((ValueError, TypeError), match="10"):  # TypeCheckError under jaxtyping
        auroc(scores, labels[:10])


def test_labels_match_the_token_rows(cache):
    rows = list(cache.iter_row_tokens())
    before = [r[p + 1] == WAIT if p + 1 < len(r) else False for r in rows for p in range(len(r))]
    assert marker_labels(cache, TOK, "WAIT").tolist() == before
    at = [t == WAIT for r in rows for t in r]
    assert token_labels(cache, [WAIT], offset=0).tolist() == at
    ids = token_word_ids(cache, [WAIT, CHECK], offsets=(0, -1))  # the word itself, or just after it
    want = []
    for r in rows:
        for p in range(len(r)):
            cands = [r[p], r[p - 1] if p >= 1 else None]
            want.append(next(({WAIT: 0, CHECK: 1}[c] for c in cands if c in (WAIT, CHECK)), -1))
    assert ids.tolist() == want
    with pytest.raises(ValueError, match="exactly one"):
        marker_labels(cache, TOK, "WAIT CHECK")


def test_planted_feature_ranks_first(hooked, cache):
    sae = _planted_sae(hooked)
    labels = token_labels(cache, [WAIT], offset=0)
    ranking = rank_features(sae, cache, HOOK, labels)
    assert ranking.top(1) == [0]
    assert float(ranking.auroc[0]) == 1.0
    acts = sae.encode(cache[HOOK].to_tensor()).detach()
    for f in (1, 2, 5):
        assert float(ranking.auroc[f]) == pytest.approx(_brute_auroc(acts[:, f], labels), abs=1e-6)
    diff = acts[labels].mean(0) - acts[~labels].mean(0)
    assert torch.allclose(ranking.mean_diff, diff, atol=1e-6)
    assert ranking.n_positive == int(labels.sum())
    assert "auroc" in str(ranking)
    with pytest.raises(ValueError, match="positions"):
        rank_features(sae, cache, HOOK, labels[:5])


def test_reason_score_formula_and_breadth():
    g = torch.Generator().manual_seed(1)
    acts = torch.rand((40, 5), generator=g)
    words = torch.randint(-1, 3, (40,), generator=g)
    got = reason_score(acts, words, alpha=0.5)
    inside = words >= 0
    m_in, m_out = acts[inside].mean(0), acts[~inside].mean(0)
    want = []
    for i in range(5):
        per = torch.stack([acts[words == r, i].mean() for r in range(3)])
        p = per / per.sum()
        h = float(-(p * p.log()).sum() / math.log(3))
        want.append(float(m_in[i] / m_in.sum() * h**0.5 - m_out[i] / m_out.sum()))
    assert torch.allclose(got, torch.tensor(want), atol=1e-5)
    # Same mean inside; feature 0 fires on both words, feature 1 on one word only: 0 ranks higher.
    words = torch.tensor([0, 0, 1, 1, -1, -1])
    acts = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.5]])
    assert reason_score(acts, words)[0] > reason_score(acts, words)[1]


def test_top_contexts_mark_the_planted_token(hooked, cache):
    sae = _planted_sae(hooked)
    ctx = top_contexts(sae, cache, HOOK, [0, 3], k=4, before=3, after=2, tokenizer=TOK, batch_size=64)
    assert len(ctx.contexts[0]) == 4
    for c in ctx.contexts[0]:
        assert "[[WAIT]]" in c.text and cache.row_tokens(c.row)[c.pos] == WAIT
    # position 0 (an attention sink in real models) is never a candidate, by default
    acts = sae.encode(cache[HOOK].to_tensor()).detach()[cache.positions != 0]
    want = acts[:, 3].topk(4).values
    got = torch.tensor([c.activation for c in ctx.contexts[3]])
    assert torch.allclose(got, want, atol=1e-6)
    assert all(c.pos != 0 for cs in ctx.contexts.values() for c in cs)
    assert json.loads(json.dumps(ctx.to_dict()))["contexts"]["0"][0]["feature"] == 0


def test_firing_rates_find_the_switched_off_feature(hooked, paired, cache):
    sae = _planted_sae(hooked)
    rates = firing_rates(sae, paired, HOOK, batch_size=100)
    assert rates.labels == ("base", "tuned")
    is_wait = token_labels(cache, [WAIT], offset=0)
    assert float(rates.rates[0, 0]) == pytest.approx(float(is_wait.float().mean()))
    assert float(rates.rates[1, 0]) == 0.0
    assert float(rates.rates[0, 1]) == float(rates.rates[1, 1]) > 0  # CHECK untouched
    assert rates.switched_off()[0] == 0 and 1 not in rates.switched_off()
    acts = sae.encode(paired["tuned"][HOOK].to_tensor()).detach()
    assert torch.allclose(rates.rates[1], (acts > 0).float().mean(0))
    with pytest.raises(KeyError, match="rl"):
        firing_rates(sae, paired, HOOK, labels=("base", "rl"))
    with pytest.raises(SAEError, match="d_in"):
        from sae_lens import StandardSAE, StandardSAEConfig

        firing_rates(StandardSAE(StandardSAEConfig(d_in=7, d_sae=4)), paired, HOOK)


def test_cli_features(hooked, built_cache, gpt2_dir, tmp_path, hook_counts, gpt2):
    from interp.cli import main

    sae_dir, out = tmp_path / "sae", tmp_path / "out"
    hook = "blocks.1.hook_resid_post"
    argv = [
        "sae",
        "train",
        "--cache",
        str(built_cache.root),
        "--hook",
        hook,
        "--out",
        str(sae_dir),
        "--d-sae",
        "64",
        "--k",
        "4",
        "--tokens",
        "256",
        "--batch-size",
        "64",
        "--model",
        f"hf:{gpt2_dir}",
        "--eval-tokens",
        "64",
        "-q",
    ]
    assert main(argv) == 0
    assert json.loads((sae_dir / "train.json").read_text())["evaluation"]["ce_spliced"] is not None
    argv = [
        "sae",
        "features",
        "--sae",
        str(sae_dir),
        "--cache",
        str(built_cache.root),
        "--out",
        str(out),
        "--model",
        f"hf:{gpt2_dir}",
        "--marker",
        "w5",
        "--reason-words",
        "w5",
        "w7",
        "--top",
        "3",
        "--contexts",
        "2",
        "-q",
    ]
    assert main(argv) == 0
    result = json.loads((out / "features.json").read_text())
    assert len(result["ranking"]["top_by_auroc"]) == 50 and len(result["ranking"]["auroc"]) == 64
    assert result["ranking"]["top_by_reason_score"] is not None
    assert (out / "features.png").stat().st_size > 0
    argv[argv.index("--marker") + 1] = "w5 w6"
    assert main(argv) == 2  # not a single token


def test_cli_features_paired(hooked, paired, tmp_path, capsys):
    from interp.cli import main

    sae_dir = save_sae(_planted_sae(hooked), tmp_path / "sae")
    out = tmp_path / "out"
    argv = [
        "sae",
        "features",
        "--sae",
        str(sae_dir),
        "--cache",
        str(paired["base"].root),
        "--hook",
        HOOK,
        "--paired",
        str(paired.root),
        "--out",
        str(out),
        "--top",
        "3",
        "-q",
    ]
    # The tiny model has no tokenizer: words cannot be found, the command says so.
    assert main([*argv, "--marker", "WAIT"]) == 2
    # Contexts are text by default: without a loadable model, only --token-ids can do without
    ids_argv = [*argv, "--marker-id", str(CHECK), "--reason-ids", str(WAIT), str(CHECK)]
    capsys.readouterr()
    assert main(ids_argv) == 2
    err = capsys.readouterr().err
    assert "for its tokenizer" in err and "or --token-ids to work with token ids" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main([*ids_argv, "--token-ids"]) == 0
    result = json.loads((out / "features.json").read_text())
    assert result["firing_rates"]["switched_off"][0] == 0
    assert result["contexts"]["contexts"]  # rendered as token ids
    assert (out / "firing_rates.png").stat().st_size > 0 and (out / "features.png").is_file()


# --- an SAE meets a cache of another model; bad flags (issue 10, items 6 and 8) -----------

RESID1 = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def sae_and_caches(gpt2, gpt2_other, llama, prompts_file, tmp_path_factory):
    """An SAE recorded as trained on the tiny GPT-2, and caches of GPT-2, its twin and a Llama."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    from interp.architecture import architecture_of
    from interp.cache import build_cache

    root = tmp_path_factory.mktemp("sae_and_caches")
    config = CacheConfig(hooks=(RESID1,), shard_tokens=400, batch_size=16)
    models = {"gpt2": gpt2, "gpt2_other": gpt2_other, "llama": llama}
    caches = {k: build_cache(m, prompts_file, root / k, config, progress=False) for k, m in models.items()}
    meta = SAEMetadata(
        hook_name=RESID1,
        model_name=caches["gpt2"].manifest["model"]["spec"],  # as train_sae records it
        interp_model_fingerprint=gpt2.fingerprint,
        interp_architecture=architecture_of(gpt2),
    )
    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=16, k=4, metadata=meta))
    return save_sae(sae, root / "sae"), caches


def _features_argv(sae_dir, cache, out, *extra):
    return [
        "sae", "features", "--sae", str(sae_dir), "--cache", str(cache.root), "--out", str(out),
        "--marker", "w5", "--top", "2", "--contexts", "1", "-q", *extra,
    ]  # fmt: skip


def test_cli_features_refuses_an_sae_of_another_architecture(sae_and_caches, tmp_path, capsys):
    sae_dir, caches = sae_and_caches
    out = tmp_path / "out"
    assert main(_features_argv(sae_dir, caches["llama"], out)) == 2
    err = capsys.readouterr().err
    last = err.splitlines()[-1]
    assert last.startswith("interp: error: the SAE was trained on 'hf:gpt2")
    assert "model_type: 'gpt2' vs 'llama'" in last and "Traceback" not in err and not out.exists()


def test_cli_features_warns_on_a_cache_of_other_weights(sae_and_caches, gpt2, tmp_path, caplog):
    from steering import sae_io

    sae_dir, caches = sae_and_caches
    sae_io._WARNED.clear()
    with caplog.at_level("WARNING", logger="steering.sae"):
        assert main(_features_argv(sae_dir, caches["gpt2"], tmp_path / "same")) == 0
        assert "other weights" not in caplog.text
        assert main(_features_argv(sae_dir, caches["gpt2_other"], tmp_path / "other")) == 0
    assert "same architecture, other weights" in caplog.text and gpt2.fingerprint in caplog.text


def test_cli_features_checks_the_model_it_loads(sae_and_caches, gpt2_dir, llama_dir, tmp_path, capsys):
    import shutil

    sae_dir, caches = sae_and_caches
    # the manifest's locator (not part of the cache ID) edited to point at another model
    moved = Path(shutil.copytree(caches["gpt2"].root, tmp_path / "moved"))
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["locator"]["model_spec"] = f"hf:{llama_dir}"
    (moved / "manifest.json").write_text(json.dumps(manifest))
    argv = _features_argv(sae_dir, caches["gpt2"], tmp_path / "o1")
    argv[argv.index("--cache") + 1] = str(moved)
    assert main(argv) == 2
    assert "was built from model" in capsys.readouterr().err.splitlines()[-1]
    # --model given for its tokenizer: another vocabulary is refused
    other_tok = Path(shutil.copytree(gpt2_dir, tmp_path / "other_tok"))
    tok = json.loads((other_tok / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["w99"] = vocab.pop("w61")
    (other_tok / "tokenizer.json").write_text(json.dumps(tok))
    argv = _features_argv(sae_dir, caches["gpt2"], tmp_path / "o2", "--model", f"hf:{other_tok}")
    assert main(argv) == 2
    assert "the tokenizer of --model" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--top", "0"),
        ("--top", "-3"),
        ("--contexts", "-1"),
        ("--max-positions", "0"),
        ("--max-positions", "-5"),
    ],
)
def test_cli_features_refuses_counts_below_one(flag, value, sae_and_caches, tmp_path, capsys):
    sae_dir, caches = sae_and_caches
    out = tmp_path / "out"
    assert main([*_features_argv(sae_dir, caches["gpt2"], out), flag, value]) == 2
    assert f"interp: error: {flag} {value}: expected an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--marker-id", "999"], "--marker-id 999: expected a token id from 0 to 63"),
        (["--marker-id", "-1"], "--marker-id -1: expected a token id from 0 to 63"),
        (["--reason-ids", "5", "64"], "--reason-ids 64: expected a token id from 0 to 63"),
    ],
)
def test_cli_features_refuses_token_ids_outside_the_vocabulary(
    extra, message, sae_and_caches, tmp_path, capsys
):
    sae_dir, caches = sae_and_caches
    argv = [
        a for a in _features_argv(sae_dir, caches["gpt2"], tmp_path / "out") if a not in ("--marker", "w5")
    ]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_features_into_a_file_is_refused(sae_and_caches, tmp_path, capsys):
    sae_dir, caches = sae_and_caches
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(_features_argv(sae_dir, caches["gpt2"], blocker)) == 2
    assert "is a file, not a directory" in capsys.readouterr().err and blocker.read_text() == "x"


def _context_texts(out) -> list[str]:
    contexts = json.loads((out / "features.json").read_text())["contexts"]["contexts"]
    return [c["text"] for cs in contexts.values() for c in cs]


def test_cli_features_shows_contexts_as_text_unless_told(sae_and_caches, tmp_path):
    import re

    sae_dir, caches = sae_and_caches
    by_id = ["--marker-id", "5", "--contexts", "3"]
    argv = _features_argv(sae_dir, caches["gpt2"], tmp_path / "text")
    argv = [a for a in argv if a not in ("--marker", "w5")]
    # --marker-id needs no tokenizer to label positions, but the contexts are still decoded
    assert main([*argv, *by_id]) == 0
    texts = _context_texts(tmp_path / "text")
    assert texts and all(re.search(r"\[\[w\d+\]\]", t) for t in texts)
    argv[argv.index(str(tmp_path / "text"))] = str(tmp_path / "ids")
    assert main([*argv, *by_id, "--token-ids"]) == 0
    ids = _context_texts(tmp_path / "ids")
    assert len(ids) == len(texts) and all(re.fullmatch(r"[\d ]*\[\[\d+\]\][\d ]*", t) for t in ids)


def test_render_spells_each_token_as_it_reads(make_bpe_tokenizer):
    from steering.feature_contexts import render

    corpus = ["the cat sat on the mat", "a dog ran\nto the park", "the cat sat\non the mat"] * 20
    gpt2 = make_bpe_tokenizer("gpt2", corpus, 300)  # byte-level: a word's space is in its token
    ids = gpt2("the cat sat\non the mat", add_special_tokens=False)["input_ids"]
    shown = [render(ids[:p], ids[p], ids[p + 1 : p + 3], gpt2) for p in range(len(ids))]
    assert "the cat [[sat]]\\non" in shown  # the space outside the brackets, the line break escaped
    assert any(s.endswith("sat[[\\n]]on the") for s in shown)  # a whitespace token stays inside
    assert all("\n" not in s for s in shown)
    assert render([3, 4], 5, [], None) == "3 4 [[5]]"
