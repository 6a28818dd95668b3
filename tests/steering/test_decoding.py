"""steering.decoding: proxy-tuning and CoT-decoding against hand-built models and plain greedy decoding."""

import json
import math

import pytest
import torch

from interp.generation import generate
from interp.models import Model, as_model
from steering.decoding import (
    CotConfig,
    ProxyConfig,
    VocabularyMismatchError,
    answer_confidence,
    cot_decode,
    organism_answer_span,
    proxy_logits,
    proxy_tune,
)

PROMPTS = [[2, 5, 7], [3, 9, 11, 20], [4, 4, 4], [10, 30, 2, 8, 9]]


def bigram(table: list[list[float]], n_ctx: int = 16):
    """A transformer whose next-token logits are ``table[last token]``: identity embedding,
    zero attention, MLP and positions, unembedding = ``table``."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    v = len(table)
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=v,
        n_ctx=n_ctx,
        d_head=v,
        n_heads=1,
        d_vocab=v,
        act_fn="relu",
        normalization_type=None,
        device="cpu",
    )
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(torch.eye(v))
        model.W_U.copy_(torch.tensor(table))
    return model


# ------------------------------------------------------------------ proxy-tuning


def test_proxy_logits_formula():
    b, e, a = torch.randn(3, 2, 7).unbind(0)
    torch.testing.assert_close(proxy_logits(b, e, a, alpha=-0.5), b - 0.5 * (e - a))


def test_expert_equal_to_antiexpert_is_base_decoding(gpt2, gpt2_other, hooked):
    base_out = generate(gpt2, PROMPTS, 8)
    res = proxy_tune(gpt2, gpt2_other, gpt2_other, PROMPTS, ProxyConfig(max_new_tokens=8, alpha=3.0))
    assert res.tokens == base_out == res.base_argmax
    assert res.changed_share == 0.0
    assert all(x == 0.0 for row in res.offset_norm for x in row)
    res = proxy_tune(hooked, gpt2, gpt2, PROMPTS, ProxyConfig(max_new_tokens=8))
    assert res.tokens == generate(hooked, PROMPTS, 8)


def test_alpha_zero_is_base_decoding_across_backends(gpt2, llama, hooked):
    cfg = ProxyConfig(max_new_tokens=8, alpha=0.0, stop_id=5)
    res = proxy_tune(llama, gpt2, hooked, PROMPTS, cfg)
    assert res.tokens == generate(llama, PROMPTS, 8, stop_id=5)
    # the same three models at alpha 1 do change some choices, and the log says which
    res = proxy_tune(llama, gpt2, hooked, PROMPTS, ProxyConfig(max_new_tokens=8, alpha=1.0))
    assert res.tokens == res.proxy_argmax
    assert res.changed_share > 0


def test_hand_built_offset_flips_a_token():
    # base prefers 1 (2.0 vs 1.5); the expert adds +1 on token 2 over the anti-expert
    z = [0.0] * 4
    base = bigram([[0, 2.0, 1.5, 0], [0, 0, 0, 3.0], [0, 0, 0, 3.0], z])
    expert = bigram([[0, 0, 1.0, 0], z, z, z])
    anti = bigram([z, z, z, z])
    res = proxy_tune(base, expert, anti, [[0]], ProxyConfig(max_new_tokens=2, alpha=1.0))
    assert res.tokens == [[2, 3]]
    assert res.base_argmax == [[1, 3]] and res.proxy_argmax == [[2, 3]]
    assert res.changed == [[True, False]]
    offset = torch.tensor([0, 0, 1.0, 0])
    assert res.offset_norm[0][0] == pytest.approx(float((offset - offset.mean()).norm()))
    assert res.offset_norm[0][1] == 0.0
    # 1.5 + 0.4 < 2: too weak to flip; negative alpha pushes further towards the base choice
    assert proxy_tune(base, expert, anti, [[0]], ProxyConfig(max_new_tokens=1, alpha=0.4)).tokens == [[1]]
    assert proxy_tune(base, expert, anti, [[0]], ProxyConfig(max_new_tokens=1, alpha=-1.0)).tokens == [[1]]
    # the anti-expert's preference is subtracted
    assert proxy_tune(base, anti, expert, [[0]], ProxyConfig(max_new_tokens=1, alpha=-1.0)).tokens == [[2]]


def test_vocab_mismatch_is_a_clear_error(hooked, gpt2):
    small = bigram([[0.0] * 5] * 5)
    with pytest.raises(VocabularyMismatchError, match="d_vocab differs: base has 64, expert has 5"):
        proxy_tune(hooked, small, hooked, [[1]])

    from interp.organism.tokenizer import WordTokenizer

    other = Model(as_model(hooked).module, WordTokenizer([f"x{i}" for i in range(64)]), "other-tok")
    with pytest.raises(VocabularyMismatchError, match="tokenizers differ: base .* antiexpert"):
        proxy_tune(gpt2, gpt2, other, [[1]])


def test_proxy_result_outputs(tmp_path, gpt2, gpt2_other):
    res = proxy_tune(gpt2, gpt2_other, gpt2, PROMPTS[:2], ProxyConfig(max_new_tokens=4))
    data = json.loads(res.save(tmp_path / "p.json").read_text())
    assert data["tokens"] == res.tokens and data["changed"] == res.changed
    assert "offset changed the choice" in str(res)
    assert res.plot(tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(ValueError, match="alpha"):
        ProxyConfig(alpha=float("nan"))


# ------------------------------------------------------------------ CoT-decoding


def test_answer_confidence_hand_set():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.6, 0.1, 0.3]])
    assert answer_confidence(p, (0, 3)) == pytest.approx((0.5 + 0.0 + 0.3) / 3)
    assert answer_confidence(p, (2, 3)) == pytest.approx(0.3)
    assert math.isnan(answer_confidence(p, None)) and math.isnan(answer_confidence(p, (1, 1)))


def test_organism_answer_span():
    from interp.organism.tokenizer import WordTokenizer, organism_vocab

    tok = WordTokenizer(organism_vocab(4))
    span = organism_answer_span(tok)
    assert span(tok.encode("n0 : n1 > n1 ; A 1 n0 n1 E")) == (7, 10)
    assert span(tok.encode("A 1 n0 A 2 n0 n1 n2 E")) == (4, 8)  # the last A
    assert span(tok.encode("n0 : n1 > n1 ;")) is None
    assert span(tok.encode("A 1 n0 n1")) is None  # never closed
    assert organism_answer_span(tok, answer_in_prompt=True)(tok.encode("1 n0 n1 E")) == (0, 3)


def softmax_margin(row):
    p = torch.softmax(torch.tensor(row), -1).topk(2).values
    return float(p[0] - p[1])


def test_cot_branches_ranked_by_hand_computed_confidence():
    m1 = [0, 0, 0, 0, 1.0, 1.2]  # after 1: token 5, low margin
    m2 = [0, 0, 0, 0, 0, 8.0]  # after 2: token 5, high margin
    m3 = [0, 0, 0, 0, 0, 4.0]
    table = [[0, 3.0, 2.0, 1.0, 0, -5.0], m1, m2, m3, [0] * 6, [0] * 6]
    model = bigram(table)

    def span(tokens):  # the answer is the token after the first; branches from 3 never answer
        return None if tokens[0] == 3 else (1, 2)

    prompts = [[0], [4, 4, 0], [0]]
    res = cot_decode(model, prompts, span, CotConfig(k=3, max_new_tokens=3, stop_id=5))
    for i in range(3):
        assert res.branches[i] == [[2, 5], [1, 5], [3, 5]]
        assert res.first_rank[i] == [1, 0, 2]
        assert res.confidence[i][0] == pytest.approx(softmax_margin(m2), abs=1e-5)
        assert res.confidence[i][1] == pytest.approx(softmax_margin(m1), abs=1e-5)
        assert math.isnan(res.confidence[i][2])
    assert res.best == [[2, 5]] * 3 and res.greedy == [[1, 5]] * 3
    assert "mean confidence" in str(res)


@pytest.mark.parametrize("backend", ["hooked", "gpt2"])
def test_cot_branches_are_greedy_continuations(request, backend):
    model = request.getfixturevalue(backend)
    k, n = 4, 5
    res = cot_decode(model, PROMPTS, lambda t: (0, len(t)), CotConfig(k=k, max_new_tokens=n, batch_size=3))
    assert res.greedy == generate(model, PROMPTS, n)
    module = as_model(model).module
    for i, p in enumerate(PROMPTS):
        assert len(res.branches[i]) == k and sorted(res.first_rank[i]) == list(range(k))
        with torch.no_grad():
            top = module(torch.tensor([p]))[0, -1].topk(k).indices.tolist()
        for branch, r in zip(res.branches[i], res.first_rank[i], strict=True):
            assert branch[0] == top[r]
            assert branch[1:] == generate(model, [p + [top[r]]], n - 1)[0]
        conf = res.confidence[i]
        assert conf == sorted(conf, reverse=True)


def test_cot_outputs_and_errors(tmp_path, hooked):
    res = cot_decode(hooked, PROMPTS[:2], lambda t: None, CotConfig(k=2, max_new_tokens=2))
    data = json.loads(res.save(tmp_path / "c.json").read_text())
    assert data["confidence"] == [[None, None], [None, None]]
    assert data["first_rank"] == [[0, 1], [0, 1]]  # all nan: first-token order kept
    assert res.plot(tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(ValueError, match="k=0"):
        CotConfig(k=0)
    with pytest.raises(ValueError, match="k=65 exceeds"):
        cot_decode(hooked, [[1]], lambda t: None, CotConfig(k=65))


# ------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def mini_zoo(tmp_path_factory):
    """A zoo of three random organism models on an 8-node world (no training: the CLI's plumbing)."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.organism.tokenizer import organism_vocab
    from interp.organism.world import WorldConfig, make_world

    zoo = tmp_path_factory.mktemp("mini_zoo")
    world = make_world(WorldConfig(n_nodes=8, seed=0))
    vocab = organism_vocab(8)
    (zoo / "world.json").write_text(json.dumps({"world": world.to_json(), "vocab": vocab}))
    for name, layers, d, seed in (("base", 2, 32, 0), ("small-base", 1, 16, 1), ("small-tuned", 1, 16, 2)):
        cfg = dict(
            n_layers=layers, d_model=d, n_heads=d // 8, d_mlp=4 * d, n_ctx=48, d_head=8,
            d_vocab=len(vocab), act_fn="gelu",
        )
        torch.manual_seed(seed)
        folder = zoo / name
        folder.mkdir()
        save_file(
            HookedTransformer(HookedTransformerConfig(**cfg)).state_dict(), str(folder / "model.safetensors")
        )
        (folder / "config.json").write_text(json.dumps(cfg))
        (folder / "card.json").write_text("{}")
    return zoo


def test_cli_proxy_on_organism(mini_zoo, tmp_path, monkeypatch):
    from interp.cli import main

    monkeypatch.setenv("INTERP_ZOO", str(mini_zoo))
    common = ["decode", "proxy", "--base", "organism:base", "--n", "6", "-q", "--format", "cot"]
    common += ["--max-new-tokens", "10"]
    same = ["--expert", "organism:small-base", "--antiexpert", "organism:small-base"]
    assert main([*common, *same, "--out", str(tmp_path / "same")]) == 0
    report = json.loads((tmp_path / "same" / "proxy.json").read_text())
    # the default on organism models is the organism's task (organism:solve for --format cot)
    assert report["task"]["name"] == "organism:solve" and report["task"]["n_examples"] == 6
    assert report["accuracy"]["proxy"] == report["accuracy"]["base"] and report["changed_share"] == 0.0
    assert (tmp_path / "same" / "proxy.png").is_file()
    tuned = [
        "--expert",
        "organism:small-tuned",
        "--antiexpert",
        "organism:small-base",
        "--tuned",
        "organism:base",
    ]
    assert main([*common, *tuned, "--alpha", "2", "--out", str(tmp_path / "t")]) == 0
    report = json.loads((tmp_path / "t" / "proxy.json").read_text())
    assert set(report["accuracy"]) == {"proxy", "base", "expert", "tuned"}
    assert report["gap_closed"] is None  # tuned == base: no gap to close
    assert len(report["proxy_texts"]) == 6 and len(report["tokens"]["tokens"]) == 6
    assert main([*common, *same, "--split", "nope", "--out", str(tmp_path / "x")]) == 2


def test_cli_proxy_on_hf_text(gpt2_dir, gpt2_other_dir, prompts_file, tmp_path, capsys):
    from interp.cli import main

    argv = ["decode", "proxy", "--base", f"hf:{gpt2_dir}", "--expert", f"hf:{gpt2_other_dir}"]
    argv += ["--antiexpert", f"hf:{gpt2_dir}", "--prompts", str(prompts_file), "--n", "3", "--stop", "w5"]
    assert main([*argv, "--max-new-tokens", "5", "-q", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "proxy.json").read_text())
    assert len(report["proxy_texts"]) == 3 and "wrote" in capsys.readouterr().out
    assert main([*argv[:-2], "--stop", "w5 w6", "--out", str(tmp_path)]) == 2


def test_cli_cot_on_organism(mini_zoo, tmp_path, monkeypatch):
    from interp.cli import main

    monkeypatch.setenv("INTERP_ZOO", str(mini_zoo))
    argv = ["decode", "cot", "--model", "organism:base", "--k", "3", "--n", "5", "--max-new-tokens", "12"]
    assert main([*argv, "-q", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cot.json").read_text())
    # the default on organism models is organism:solve (--format cot), first --n of the split
    acc = report["accuracy"]
    assert report["task"]["name"] == "organism:solve" and report["task"]["n_examples"] == 5
    assert acc["any of 3"] >= acc["cot-decoding"] and acc["any of 3"] >= acc["greedy"]
    assert [len(b) for b in report["branches"]["branches"]] == [3] * 5
    assert (tmp_path / "cot.png").is_file()
    assert main([*argv[:4], "--k", "0", "--out", str(tmp_path)]) == 2
