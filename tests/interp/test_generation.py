"""interp.generation: cached decoding equals the no-cache argmax loop, on every backend, hooks included."""

import pytest
import torch

from interp.generation import IncrementalDecoder, generate, length_batches
from interp.hooks import add_vector
from interp.models import as_model

BACKENDS = ["hooked", "gpt2", "llama"]
PROMPTS = [[2, 5, 7], [3, 9, 11, 20], [4, 4, 4], [10, 30, 2, 8, 9], [6]]


def no_cache_greedy(model, prompts, n, forbid=None):
    """The oracle: a full forward pass over the whole sequence for every new token."""
    module = as_model(model).module
    out = []
    for p in prompts:
        seq, new = list(p), []
        for _ in range(n):
            with torch.no_grad():
                logits = module(torch.tensor([seq]))[0, -1].clone()
            if forbid:
                logits[forbid] = float("-inf")
            nxt = int(logits.argmax())
            new.append(nxt)
            seq.append(nxt)
        out.append(new)
    return out


@pytest.fixture(params=BACKENDS)
def model(request):
    return request.getfixturevalue(request.param)


def test_greedy_equals_no_cache_loop(model):
    assert generate(model, PROMPTS, 8) == no_cache_greedy(model, PROMPTS, 8)


def test_hooks_fire_on_every_cached_step(model):
    d_model = as_model(model).d_model
    vec = torch.randn(d_model, generator=torch.Generator().manual_seed(0)) * 20
    plain = generate(model, PROMPTS, 6)
    with add_vector(model, "blocks.0.hook_resid_post", vec):
        steered = generate(model, PROMPTS, 6)
        oracle = no_cache_greedy(model, PROMPTS, 6)
    assert steered == oracle
    assert steered != plain


def test_hook_sees_each_new_token(hooked):
    from interp.hooks import hooks

    seen = []

    def fn(act, name):
        seen.append(act.shape[1])

    with hooks(hooked, {"blocks.0.hook_resid_post": fn}):
        generate(hooked, [[2, 3, 4]], 4)
    # the prompt pass, then one position per new token except the last (never fed back)
    assert seen == [3, 1, 1, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_left_padded_decoder_matches_unpadded_logits(request, backend):
    model = request.getfixturevalue(backend)
    module = as_model(model).module
    dec = IncrementalDecoder(model, PROMPTS, pad_id=1)
    assert dec.padded
    nxt = dec.logits.argmax(-1)
    dec.advance(nxt)
    for i, p in enumerate(PROMPTS):
        with torch.no_grad():
            full = module(torch.tensor([p + [int(nxt[i])]]))[0, -1]
        torch.testing.assert_close(dec.logits[i], full.float(), atol=1e-4, rtol=1e-4)


def test_matches_organism_generate(hooked):
    from interp.organism.generate import generate as organism_generate

    prompts = [[2, 5, 7], [3, 9, 11, 20], [4, 4, 4]]
    kwargs = dict(max_new_tokens=10, stop_id=5, pad_id=0, forbid=[3, 7])
    assert generate(hooked, prompts, **kwargs) == organism_generate(hooked, prompts, **kwargs)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ours = generate(hooked, prompts, 10, temperature=1.0, generator=g1)
    theirs = organism_generate(hooked, prompts, 10, temperature=1.0, generator=g2)
    assert ours == theirs


def test_stop_token_kept_and_forbidden_never_generated(gpt2):
    free = no_cache_greedy(gpt2, PROMPTS, 8)
    stop = free[0][2]
    out = generate(gpt2, PROMPTS, 8, stop_id=stop)
    assert out[0] == free[0][: free[0].index(stop) + 1]
    forbid = sorted({t for row in free for t in row})[:3]
    out = generate(gpt2, PROMPTS, 8, forbid=forbid)
    assert not {t for row in out for t in row} & set(forbid)
    assert out == no_cache_greedy(gpt2, PROMPTS, 8, forbid=forbid)


def test_context_bounds_the_continuation(hooked):
    n_ctx = hooked.cfg.n_ctx
    out = generate(hooked, [[2] * (n_ctx - 2), [3]], max_new_tokens=5)
    assert [len(o) for o in out] == [2, 5]
    with pytest.raises(ValueError, match="context"):
        IncrementalDecoder(hooked, [[2] * (n_ctx + 1)])


def test_order_kept_across_length_groups_and_batches(hooked):
    prompts = [[2] * (i % 4 + 1) for i in range(9)]
    batched = generate(hooked, prompts, 3, batch_size=2)
    assert batched == [generate(hooked, [p], 3)[0] for p in prompts]
    assert list(length_batches([[1, 2], [3], [4, 5]], 1)) == [[1], [0], [2]]


def test_bad_input_raises(hooked):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(hooked, [[1], []], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(hooked, [[1]], -1)
    with pytest.raises(ValueError, match="temperature"):
        generate(hooked, [[1]], 2, temperature=-1.0)
    with pytest.raises(ValueError, match="prompts is empty"):
        IncrementalDecoder(hooked, [])
    dec = IncrementalDecoder(hooked, [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="one per row"):
        dec.advance(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="HookedTransformer or a TransformerBridge"):

        class Fake(torch.nn.Module):
            hook_dict: dict = {}

        IncrementalDecoder(Fake(), [[1]])
    assert generate(hooked, [[1]], 0) == [[]]
