import torch

from interp.organism.generate import generate, sample_next
from interp.organism.rl import forking_mask, token_entropy
from interp.organism.train import ModelShape, build_model


def _model():
    return build_model(ModelShape(2, 32, 2, 64, 32), d_vocab=11, seed=0)


def _naive_greedy(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_kv_cache_greedy_matches_full_recompute():
    model = _model()
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8], [9]]
    got = generate(model, prompts, max_new_tokens=10)
    assert got == [_naive_greedy(model, p, 10) for p in prompts]


def test_stop_token_and_forbidden_tokens():
    model = _model()
    free = generate(model, [[1, 2, 3]], max_new_tokens=12)[0]
    stop = free[3]
    out = generate(model, [[1, 2, 3]], max_new_tokens=12, stop_id=stop)[0]
    assert out[-1] == stop and stop not in out[:-1]
    banned = sorted(set(free))
    out = generate(model, [[1, 2, 3]], max_new_tokens=12, forbid=banned)[0]
    assert not set(out) & set(banned)


def test_sampling_is_reproducible_with_a_generator():
    model = _model()
    a = generate(model, [[1, 2]] * 4, 8, temperature=1.0, generator=torch.Generator().manual_seed(0))
    b = generate(model, [[1, 2]] * 4, 8, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert a == b


def test_context_limit_is_respected():
    model = _model()
    out = generate(model, [[1] * 30], max_new_tokens=50)
    assert len(out[0]) == 2


def test_sample_next_greedy_and_entropy_oracle():
    logits = torch.tensor([[0.0, 1.0, 3.0]])
    assert sample_next(logits).tolist() == [2]
    p = torch.softmax(logits, -1)
    h = float(-(p * p.log()).sum())
    assert abs(float(token_entropy(logits[None])[0, 0]) - h) < 1e-6


def test_forking_mask_keeps_the_top_fifth():
    ent = torch.arange(10.0)[None]
    mask = torch.ones_like(ent, dtype=torch.bool)
    mask[0, 9] = False  # masked-out positions never count
    kept = forking_mask(ent, mask, 0.8)
    assert kept[0].nonzero().flatten().tolist() == [7, 8]
