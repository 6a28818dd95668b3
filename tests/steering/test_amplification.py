"""steering.proxy_tuning.amplify_difference: model-diff amplification against a hand loop."""

import pytest
import torch

import steering.proxy_tuning as pt
from interp.generation import generate
from steering.decoding import ProxyConfig, VocabularyMismatchError, amplify_difference
from tests.steering.test_decoding import PROMPTS, bigram


def _hand_loop(tuned, base, prompt, alpha, steps):
    """Greedy decoding of ``tuned + alpha * (tuned - base)``, recomputing every pass (no cache)."""
    seq = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.tensor([seq])
            lt, lb = tuned(ids)[0, -1], base(ids)[0, -1]
            nxt = int((lt + alpha * (lt - lb)).argmax())
            out.append(nxt)
            seq.append(nxt)
    return out


def test_amplification_equals_the_hand_formula_and_flips_a_token():
    # after token 0 the tune raised token 1 (0.5 -> 1.0) and lowered token 2 (1.5 -> 1.2), yet
    # still prefers 2; amplified by 2: token 1 scores 1.0 + 2 * 0.5 = 2.0, token 2 1.2 - 0.6 = 0.6
    base = bigram([[0.0, 0.5, 1.5], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    tuned = bigram([[0.0, 1.0, 1.2], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    res = amplify_difference(tuned, base, [[0]], ProxyConfig(alpha=2.0, max_new_tokens=1))
    assert res.tokens == [[1]] and res.base_argmax == [[2]] and res.changed == [[True]]
    offset = torch.tensor([0.0, 1.0, -0.6])  # 2 * (tuned - base), centred over the vocabulary
    assert res.offset_norm[0][0] == pytest.approx(float((offset - offset.mean()).norm()), abs=1e-5)
    res = amplify_difference(tuned, base, [[0]], ProxyConfig(alpha=0.0, max_new_tokens=1))
    assert res.tokens == [[2]]  # alpha 0 is the tuned model itself


@pytest.mark.parametrize("alpha", [0.0, 1.5, -1.0])
def test_amplification_equals_the_no_cache_loop(gpt2, gpt2_other, alpha):
    res = amplify_difference(gpt2, gpt2_other, PROMPTS, ProxyConfig(alpha=alpha, max_new_tokens=6))
    for prompt, row in zip(PROMPTS, res.tokens, strict=True):
        assert row == _hand_loop(gpt2.module, gpt2_other.module, prompt, alpha, 6)
    if alpha == 0.0:
        assert res.tokens == generate(gpt2, PROMPTS, 6) and res.changed_share == 0.0
    if alpha == -1.0:
        assert res.tokens == generate(gpt2_other, PROMPTS, 6)


def test_the_tuned_model_decodes_once_per_step(gpt2, gpt2_other, monkeypatch):
    made = []
    real = pt.IncrementalDecoder

    def counting(model, prompts, pad_id=None):
        made.append(model.spec)
        return real(model, prompts, pad_id=pad_id)

    monkeypatch.setattr(pt, "IncrementalDecoder", counting)
    amplify_difference(gpt2, gpt2_other, [PROMPTS[0]], ProxyConfig(alpha=1.0, max_new_tokens=2))
    assert len(made) == 2  # tuned (base and expert roles) and its parent, not three decoders


def test_amplification_refuses_models_of_another_vocabulary():
    three, four = bigram([[0.0] * 3] * 3), bigram([[0.0] * 4] * 4)
    with pytest.raises(VocabularyMismatchError, match="d_vocab differs: base has 3, antiexpert has 4"):
        amplify_difference(three, four, [[0]], ProxyConfig(max_new_tokens=2))
