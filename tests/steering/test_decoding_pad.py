"""CoT-decoding and proxy-tuning: the pad id comes from the model's tokenizer when unset (never a
made-up 0), and prompts of different lengths share left-padded batches."""

from contextlib import contextmanager

import pytest

from interp.models import Model
from interp.tokenizers import HFTokenizer
from steering.cot_decoding import CotConfig, cot_decode
from steering.proxy_tuning import ProxyConfig, proxy_tune


def tokenizer_with_pad(pad: int, size: int = 64) -> HFTokenizer:
    """A word-level tokenizer of ``size`` words whose pad (and end-of-sequence) token is id ``pad``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(size)]
    words[pad] = "<pad>"
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="w0", pad_token="<pad>", eos_token="<pad>")
    return HFTokenizer(fast)


@contextmanager
def fed_tokens(module):
    """Record the token ids of every forward pass into ``module.embed`` (a HookedTransformer)."""
    seen: list = []
    handle = module.embed.register_forward_pre_hook(lambda m, a: seen.append(a[0].tolist()))
    try:
        yield seen
    finally:
        handle.remove()


def test_a_stopped_branch_is_fed_the_tokenizers_pad_by_default(hooked):
    model = Model(hooked, tokenizer_with_pad(pad=7), "tiny-with-pad")
    span = lambda tokens: (0, len(tokens))  # noqa: E731
    free = cot_decode(model, [[10, 30, 2]], span, CotConfig(k=2, max_new_tokens=4))
    by_rank = dict(zip(free.first_rank[0], free.branches[0], strict=True))
    stop = by_rank[0][0]  # the greedy branch stops at its first token
    assert stop not in by_rank[1] and stop not in (0, 7), "fixture: pick another stop"
    assert CotConfig().pad_id is None
    with fed_tokens(hooked) as seen:
        res = cot_decode(model, [[10, 30, 2]], span, CotConfig(k=2, max_new_tokens=4, stop_id=stop))
    got = dict(zip(res.first_rank[0], res.branches[0], strict=True))
    assert got[0] == [stop] and got[1] == by_rank[1]
    # the branch pass feeds [prompt + first token]; then the stopped branch gets the pad
    steps = [s for s in seen if len(s[0]) == 1]
    assert [s[0][0] for s in steps] == [7, 7]


@pytest.mark.parametrize("config", [CotConfig, ProxyConfig])
@pytest.mark.parametrize("bad", [-1, True])
def test_a_bad_pad_id_is_refused_naming_it(config, bad):
    with pytest.raises(ValueError, match=f"pad_id={bad!r}; expected a token id >= 0, or None"):
        config(pad_id=bad)


def test_prompts_of_different_lengths_share_a_batch_and_equal_each_prompt_alone(hooked):
    model = Model(hooked, tokenizer_with_pad(pad=7), "tiny-with-pad")
    span = lambda tokens: (0, len(tokens))  # noqa: E731
    prompts = [[10, 30, 2], [11, 12], [5, 6, 8, 9, 13], [20]]
    cfg = CotConfig(k=3, max_new_tokens=5, batch_size=8)
    with fed_tokens(hooked) as seen:
        together = cot_decode(model, prompts, span, cfg)
    first_passes = [s for s in seen if len(s) == len(prompts)]
    assert first_passes, "the four prompts never shared a forward pass"
    for i, p in enumerate(prompts):
        alone = cot_decode(model, [p], span, cfg)
        assert together.branches[i] == alone.branches[0], i
        assert together.first_rank[i] == alone.first_rank[0], i


def test_a_stopped_row_is_fed_the_tokenizers_pad_by_default(hooked):
    model = Model(hooked, tokenizer_with_pad(pad=7), "tiny-with-pad")
    prompts = [[2, 5, 7], [3, 9, 11]]
    free = proxy_tune(model, model, model, prompts, ProxyConfig(max_new_tokens=4)).tokens
    stop = free[0][0]
    assert stop not in free[1] and stop not in (0, 7), "fixture: pick another stop"
    assert ProxyConfig().pad_id is None
    with fed_tokens(hooked) as seen:
        res = proxy_tune(model, model, model, prompts, ProxyConfig(max_new_tokens=4, stop_id=stop))
    assert res.tokens[0] == [stop] and res.tokens[1] == free[1]
    # one module in all three roles decodes once per step: row 0 is fed its stop token, then the pad
    row0 = [s[0][0] for s in seen if len(s[0]) == 1]
    assert row0 == [stop] + [7] * 2


def test_without_a_pad_or_stop_nothing_is_padded_and_nothing_fails(hooked):
    res = proxy_tune(hooked, hooked, hooked, [[2, 5], [3, 9]], ProxyConfig(max_new_tokens=3))
    assert [len(t) for t in res.tokens] == [3, 3]
