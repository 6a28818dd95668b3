"""interp.generation.generate left-pads prompts of different lengths into one batch: every row
decodes exactly as the prompt alone, on every model kind (hf: GPT-2, Llama, Qwen2 through the
bridge; HookedTransformer with absolute and rotary positions; the organism's), hooks included."""

import random

import pytest
import torch

from interp.batching import padded_batches
from interp.errors import GenerationError
from interp.generation import IncrementalDecoder, generate
from interp.hooks import add_vector
from interp.models import Model, as_model

KINDS = ["gpt2", "llama", "qwen2", "hooked_padded", "hooked_rotary", "organism"]


def mixed_prompts(n: int = 9, d_vocab: int = 64, seed: int = 0) -> list[list[int]]:
    """Prompts of 1 to 7 tokens, in no length order, ids 2.. (clear of pad/eos ids 0 and 1)."""
    rng = random.Random(seed)
    lengths = [3, 1, 6, 2, 7, 4, 5, 2, 6]
    return [[rng.randrange(2, d_vocab) for _ in range(lengths[i % 9])] for i in range(n)]


def word_tokenizer(words, **specials):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from interp.tokenizers import HFTokenizer

    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=words[0]))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return HFTokenizer(PreTrainedTokenizerFast(tokenizer_object=raw, unk_token=words[0], **specials))


@pytest.fixture(scope="module")
def hooked_padded(hooked):
    """The shared tiny HookedTransformer (absolute positions) with a tokenizer whose pad is id 1."""
    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(62)]
    return Model(hooked, word_tokenizer(words, eos_token="<eos>", pad_token="<eos>"), "tiny-hooked")


@pytest.fixture(scope="module")
def hooked_rotary():
    """A Llama-shaped HookedTransformer: rotary positions, RMS norm, gated SiLU MLP."""
    from tiny_hooked import tiny_hooked

    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(62)]
    tok = word_tokenizer(words, eos_token="<eos>")  # no pad token: pads with <eos>
    return Model(tiny_hooked(64, kind="rotary", seed=1, gated_mlp=True), tok, "tiny-rotary")


@pytest.fixture(scope="module")
def organism():
    """An organism-shaped model: its config keys and its WordTokenizer (pad ``<pad>`` = id 0)."""
    from tiny_hooked import tiny_hooked

    from interp.organism.tokenizer import WordTokenizer, organism_vocab

    tok = WordTokenizer(organism_vocab(64 - 31))
    return Model(tiny_hooked(len(tok), seed=2), tok, "organism:tiny")


@pytest.fixture(params=KINDS)
def model(request):
    return as_model(request.getfixturevalue(request.param))


def alone(model, prompts, n, **kw):
    budgets = n if isinstance(n, list) else [n] * len(prompts)
    return [generate(model, [p], b, **kw)[0] for p, b in zip(prompts, budgets, strict=True)]


def no_cache_greedy(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            seq.append(int(model.module(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt) :]


def batch_widths(model, prompts, n, **kw):
    """The width of every prompt pass ``generate`` runs (the embedding's input at length > 1)."""
    seen = []
    module = model.module
    embed = module.embed if hasattr(module, "embed") else None
    target = embed if embed is not None else module.original_model.get_input_embeddings()
    handle = target.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    try:
        out = generate(model, prompts, n, **kw)
    finally:
        handle.remove()
    return out, [s for s in seen if s[1] > 1]


def test_mixed_lengths_share_one_batch_and_equal_each_prompt_alone(model):
    prompts = mixed_prompts(d_vocab=model.d_vocab)
    assert len({len(p) for p in prompts}) >= 5
    batched, passes = batch_widths(model, prompts, 8)
    assert passes == [(len(prompts), max(map(len, prompts)))]  # one padded prompt pass
    assert batched == alone(model, prompts, 8)
    for p, out in list(zip(prompts, batched, strict=True))[:3]:
        assert out == no_cache_greedy(model, p, 8)


def test_stop_token_and_budget_per_row(model):
    prompts = mixed_prompts(d_vocab=model.d_vocab, seed=1)
    free = alone(model, prompts, 8)
    stop = free[1][2]  # row 1 stops by its third token; others at theirs, or never
    budgets = [3, 8, 1, 0, 5, 8, 2, 7, 6]
    batched = generate(model, prompts, budgets, stop_id=stop)
    assert batched == alone(model, prompts, budgets, stop_id=stop)
    assert batched[1] == free[1][: free[1].index(stop) + 1] and len(batched[1]) <= 3
    assert batched[3] == [] and batched[0] == free[0][: len(batched[0])]
    assert any(len(o) == b for o, b in zip(batched, budgets, strict=True) if b > 2)


def test_steering_hooks_act_on_each_row_as_on_the_prompt_alone(model):
    prompts = mixed_prompts(d_vocab=model.d_vocab, seed=2)
    vec = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0)) * 8
    plain = generate(model, prompts, 6)
    for positions in (None, -1):
        with add_vector(model, "blocks.0.hook_resid_post", vec, positions=positions):
            steered = generate(model, prompts, 6)
            oracle = alone(model, prompts, 6)
        assert steered == oracle
        assert steered != plain


def test_rows_near_the_context_end_are_not_cut_by_a_wider_batch(hooked_padded):
    n_ctx = hooked_padded.n_ctx
    prompts = [[5] * (n_ctx - 6), [7, 8], [9] * (n_ctx - 3)]
    out = generate(hooked_padded, prompts, 10)
    assert [len(o) for o in out] == [6, 10, 3]
    assert out == alone(hooked_padded, prompts, 10)
    # a prompt whose budget fits under the widest one joins it; one that does not stays apart
    assert list(padded_batches(prompts, 8, [6, 10, 3], n_ctx)) == [[1], [0], [2]]
    assert list(padded_batches(prompts, 8, [3, 10, 3], n_ctx)) == [[1], [0, 2]]
    assert list(padded_batches(prompts, 8, [3, 3, 3], n_ctx)) == [[1, 0, 2]]


def test_without_any_pad_id_prompts_are_batched_by_equal_length(hooked):
    prompts = mixed_prompts(seed=3)
    out, passes = batch_widths(as_model(hooked), prompts, 4)
    assert sorted(w for _, w in passes) == sorted({len(p) for p in prompts} - {1})  # one batch each
    assert out == alone(hooked, prompts, 4)
    padded, passes = batch_widths(as_model(hooked), prompts, 4, pad_id=1)
    assert len(passes) == 1 and padded == out


def test_samples_reproduce_with_a_seed_in_padded_batches(llama):
    prompts = mixed_prompts(seed=4)
    a, b = (
        generate(llama, prompts, 6, temperature=1.0, top_k=8, generator=torch.Generator().manual_seed(0))
        for _ in range(2)
    )
    assert a == b and all(len(o) == 6 for o in a)


@pytest.mark.parametrize(
    "budgets, match",
    [
        ([3, 2], r"max_new_tokens has 2 entries for 3 prompts; expected one per prompt"),
        ([3, -1, 2], r"max_new_tokens=-1; expected an integer >= 0"),
        ([3, True, 2], r"max_new_tokens=True; expected an integer >= 0"),
    ],
)
def test_bad_budgets_are_refused_before_any_forward_pass(gpt2, budgets, match):
    passes = []
    handle = gpt2.module.original_model.get_input_embeddings().register_forward_pre_hook(
        lambda m, a: passes.append(1)
    )
    try:
        with pytest.raises(GenerationError, match=match):
            generate(gpt2, [[2, 3], [4], [5, 6, 7]], budgets)
    finally:
        handle.remove()
    assert passes == []


def test_a_prompt_longer_than_the_context_is_refused_even_with_no_budget(hooked_padded):
    n_ctx = hooked_padded.n_ctx
    match = f"a prompt has {n_ctx + 1} tokens; the model's context is {n_ctx}"
    with pytest.raises(GenerationError, match=match):
        generate(hooked_padded, [[2], [3] * (n_ctx + 1)], 0)


def test_decoder_left_pads_with_the_tokenizer_pad(hooked_padded):
    dec = IncrementalDecoder(hooked_padded, [[2, 3, 4], [5]])
    assert dec.padded and dec.batch == 2
