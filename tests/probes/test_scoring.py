"""Batched continuation scoring against the one-pair-per-forward loop and a hand log-softmax."""

import math
import random
from types import SimpleNamespace

import pytest
import torch

from interp.models import as_model
from probes.scoring import encode_pair, entropy_of, score_continuations, token_logprobs


def _pairs(n: int, seed: int = 0, vocab: int = 60) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    pre = [[rng.randrange(2, vocab) for _ in range(rng.randint(1, 9))] for _ in range(n)]
    cont = [[rng.randrange(2, vocab) for _ in range(rng.randint(1, 6))] for _ in range(n)]
    return pre, cont


def _loop_nll(model, pre: list[int], cont: list[int]) -> float:
    """One pair, one forward pass, no padding: the reference."""
    with torch.no_grad():
        logits = model.forward(torch.tensor([pre + cont]))[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(-logp[len(pre) - 1 + j, t] for j, t in enumerate(cont)))


@pytest.mark.parametrize("name", ["hooked", "gpt2", "llama"])
def test_batched_equals_loop(name, request):
    model = as_model(request.getfixturevalue(name))
    pre, cont = _pairs(12)
    s = score_continuations(model, pre, cont, batch_size=5)
    ref = torch.tensor([_loop_nll(model, p, c) for p, c in zip(pre, cont, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(s.nll, ref, atol=1e-4, rtol=1e-4)
    assert s.n_tokens.tolist() == [len(c) for c in cont]
    assert [len(t) for t in s.token_nll] == [len(c) for c in cont]
    assert s.sequence_tokens.tolist() == [len(p) + len(c) - 1 for p, c in zip(pre, cont, strict=True)]
    assert bool((s.sequence_nll >= s.nll - 1e-6).all())


class TableLM(torch.nn.Module):
    """Logits at a position are a fixed row of a table, chosen by the token there (a bigram LM)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.cfg = SimpleNamespace(n_layers=1, d_model=1, d_vocab=table.shape[1], n_ctx=16)
        self.hook_dict: dict = {}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]


def test_hand_log_softmax():
    """NLL = sum over continuation tokens of logsumexp(z_prev) - z_prev[next], by hand."""
    table = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    model = as_model(TableLM(table), spec="table")

    def nll(prev: int, nxt: int) -> float:
        z = table[prev].tolist()
        return math.log(sum(math.exp(v) for v in z)) - z[nxt]

    s = score_continuations(model, [[0], [2, 2, 1], [1]], [[1, 2], [0], [0, 0, 2]], batch_size=2)
    expected = [nll(0, 1) + nll(1, 2), nll(1, 0), nll(1, 0) + nll(0, 0) + nll(0, 2)]
    assert s.nll.tolist() == pytest.approx(expected, abs=1e-6)
    assert float(s.sequence_nll[1]) == pytest.approx(nll(2, 2) + nll(2, 1) + nll(1, 0), abs=1e-6)
    assert s.token_nll[2].tolist() == pytest.approx([nll(1, 0), nll(0, 0), nll(0, 2)], abs=1e-6)


def test_token_logprobs_and_entropy(hooked):
    model = as_model(hooked)
    seqs = [[3, 4, 5, 6], [7, 8]]
    s = token_logprobs(model, seqs, temperature=2.0)
    with torch.no_grad():
        logits = model.forward(torch.tensor([seqs[0]]))[0]
    logp = torch.log_softmax(logits / 2.0, -1)
    torch.testing.assert_close(s.logprobs[0], logp[torch.arange(3), torch.tensor([4, 5, 6])])
    p = logp.exp()
    torch.testing.assert_close(s.entropy[0], -(p * logp).sum(-1)[:3])
    assert len(s.logprobs[1]) == 1


def test_entropy_of_closed_form():
    logp = torch.log(torch.tensor([[0.25] * 4, [1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(entropy_of(logp), torch.tensor([torch.log(torch.tensor(4.0)).item(), 0.0]))


def test_text_pairs(gpt2):
    p, c = encode_pair(gpt2, "w1 w2", " w3 w4")
    assert len(c) == 2 and gpt2.decode(c).split() == ["w3", "w4"]
    s = score_continuations(gpt2, ["w1 w2"], [" w3 w4"])
    assert float(s.nll[0]) == pytest.approx(_loop_nll(gpt2, p, c), abs=1e-4)


def test_errors(hooked):
    with pytest.raises(ValueError, match="prefixes but"):
        score_continuations(hooked, [[1]], [[2], [3]])
    with pytest.raises(ValueError, match="prefix 0 is empty"):
        score_continuations(hooked, [[]], [[2]])
    with pytest.raises(ValueError, match="continuation 0 is empty"):
        score_continuations(hooked, [[1]], [[]])
    with pytest.raises(ValueError, match="n_ctx=32"):
        score_continuations(hooked, [[1] * 30], [[2] * 5])
    with pytest.raises(ValueError, match="fewer than two tokens"):
        token_logprobs(hooked, [[1]])
    with pytest.raises(ValueError, match="batch_size"):
        score_continuations(hooked, [[1]], [[2]], batch_size=0)


@pytest.mark.parametrize("name", ["hooked", "gpt2"])
def test_shared_prefixes_equal_plain_pairs(name, request):
    """Packed (HookedTransformer: hooks set positions and masks) or fallback: same as plain pairs."""
    from probes.scoring import _packable, score_shared_prefixes

    model = as_model(request.getfixturevalue(name))
    assert _packable(model) == (name == "hooked")
    rng = random.Random(1)
    ctxs = [[rng.randrange(2, 60) for _ in range(n)] for n in (5, 12, 20)]
    cuts = [[1, 3], [2, 6, 9, 12], [4, 8, 12, 16, 20]]  # the last needs several rows at n_ctx 32
    tails = [[7, 8, 9], [10, 11], [12, 13, 14, 15]]
    n_sc = [2, 1, 4]
    got = score_shared_prefixes(model, ctxs, cuts, tails, n_sc, batch_size=2)
    if name == "hooked":  # several units share a row, and the 20-token context is split over rows
        from probes.scoring import _first_fit, _pack_rows

        rows = _pack_rows(ctxs, cuts, tails, 32)
        assert sum(r[0] == 2 for r in rows) > 1
        assert any(
            len(b) > 1 for b in _first_fit([(*r, max(r[1]) + len(r[1]) * len(tails[r[0]])) for r in rows], 32)
        )
    pre = [c[:k] + t[: len(t) - n] for c, cs, t, n in zip(ctxs, cuts, tails, n_sc, strict=True) for k in cs]
    cont = [t[len(t) - n :] for cs, t, n in zip(cuts, tails, n_sc, strict=True) for _ in cs]
    ref = score_continuations(model, pre, cont)
    torch.testing.assert_close(got.nll, ref.nll, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.sequence_nll, ref.sequence_nll, atol=1e-4, rtol=1e-4)
    assert got.n_tokens.tolist() == ref.n_tokens.tolist()
    assert got.sequence_tokens.tolist() == ref.sequence_tokens.tolist()
    for a, b in zip(got.token_nll, ref.token_nll, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="expected cuts in 1..5"):
        score_shared_prefixes(model, ctxs[:1], [[0]], tails[:1], [1])
    with pytest.raises(ValueError, match="n_scored=4"):
        score_shared_prefixes(model, ctxs[:1], [[1]], tails[:1], [4])


# A small BPE per family in which "Paris" is one token and "Pa" + "ris" are not.
BPE_CORPUS = ["The capital of France is Paris.", "Paris is in France.", "Pa ris", "ris"] * 10
BPE_VOCAB_SIZE = {"gpt2": 320, "llama": 90, "qwen2": 320}


@pytest.mark.parametrize(
    ("family", "bos"), [("gpt2", None), ("gpt2", True), ("llama", None), ("llama", False), ("qwen2", None)]
)
def test_encode_pair_never_puts_a_bos_mid_sequence(family, bos, hooked, make_bpe_tokenizer):
    """"...is Pa" + "ris" merges across the boundary; the fallback must not score "<bos>ris"."""
    from interp.models import Model
    from interp.tokenizers import HFTokenizer

    tok = make_bpe_tokenizer(family, BPE_CORPUS, BPE_VOCAB_SIZE[family])
    model = Model(hooked, HFTokenizer(tok, prepend_bos=bos), f"bpe-{family}")
    bos_id = tok.bos_token_id
    merged = model.encode_plain("The capital of France is Paris")
    assert model.encode_plain(" Paris") == merged[-1:], "the test needs ' Paris' to be one token"
    for prefix, cont in (("The capital of France is Pa", "ris"), ("The capital of France is", " Paris")):
        p, c = encode_pair(model, prefix, cont)
        assert p == model.encode(prefix)
        assert bos_id is None or bos_id not in c, (prefix, cont, c)
        assert c and model.decode(c).strip() == cont.strip()
        if bos_id is not None:
            assert (p[0] == bos_id) is model.tokenizer.prepend_bos
    assert encode_pair(model, "The capital of France is", " Paris")[1] == merged[-1:]
