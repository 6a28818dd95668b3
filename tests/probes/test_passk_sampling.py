"""sample_pass_at_k passes top_k and top_p to sampling, and refuses bad values before sampling."""

import pytest
import torch

from interp.errors import GenerationError, InterpError
from interp.generation import generate
from probes.passk import sample_pass_at_k

PROMPTS = [[2, 3, 4], [5], [6, 7]]  # of different lengths: they share a left-padded batch


@pytest.mark.parametrize("cut", [dict(top_k=1), dict(top_p=1e-6)])
def test_top_k_1_or_a_tiny_nucleus_is_greedy(gpt2, cut):
    greedy = generate(gpt2, PROMPTS, 4)
    r = sample_pass_at_k(
        gpt2, PROMPTS, lambda i, ids: ids == greedy[i], n=6, ks=[1], temperature=3.0,
        max_new_tokens=4, **cut,
    )
    assert r.correct == (6, 6, 6)
    assert r.meta["top_k"] == cut.get("top_k") and r.meta["top_p"] == cut.get("top_p", 1.0)


def test_top_k_keeps_samples_among_the_k_most_likely(gpt2):
    with torch.no_grad():
        first = [gpt2.module(torch.tensor([p]))[0, -1] for p in PROMPTS]
    top2 = [set(f.topk(2).indices.tolist()) for f in first]

    def in_top2(i, ids):
        return ids[0] in top2[i]

    kw = dict(n=24, ks=[1], temperature=5.0, max_new_tokens=1, seed=0)
    cut = sample_pass_at_k(gpt2, PROMPTS, in_top2, top_k=2, **kw)
    free = sample_pass_at_k(gpt2, PROMPTS, in_top2, **kw)
    assert cut.correct == (24, 24, 24)
    assert sum(free.correct) < 3 * 24  # without the cut, hot sampling leaves the top 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(top_k=0), "top_k=0; expected an integer >= 1"),
        (dict(top_k=True), "top_k=True; expected an integer >= 1"),
        (dict(top_p=0.0), r"top_p=0.0; expected a number in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p=1.5; expected a number in \(0, 1\]"),
        (dict(temperature=-1.0), "temperature=-1.0; expected a number >= 0"),
    ],
)
def test_bad_sampling_values_are_refused_naming_them(gpt2, kwargs, match):
    passes = []
    embed = gpt2.module.original_model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(lambda m, a: passes.append(1))
    try:
        with pytest.raises(GenerationError, match=match) as info:
            sample_pass_at_k(gpt2, PROMPTS, lambda i, ids: True, n=2, ks=[1], **kwargs)
    finally:
        handle.remove()
    assert isinstance(info.value, InterpError) and "\n" not in str(info.value)
    assert passes == []  # refused before any sampling
