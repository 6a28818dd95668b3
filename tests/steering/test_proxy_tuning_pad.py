"""ProxyConfig's pad id comes from the base model's tokenizer when unset, never a made-up 0."""

from contextlib import contextmanager

import pytest

from interp.models import Model
from interp.tokenizers import HFTokenizer
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
    # three models (one module) per step: row 0 is fed its stop token, then the tokenizer's pad
    row0 = [s[0][0] for s in seen if len(s[0]) == 1]
    assert row0 == [stop] * 3 + [7] * 6


def test_without_a_pad_or_stop_nothing_is_padded_and_nothing_fails(hooked):
    res = proxy_tune(hooked, hooked, hooked, [[2, 5], [3, 9]], ProxyConfig(max_new_tokens=3))
    assert [len(t) for t in res.tokens] == [3, 3]


@pytest.mark.parametrize("bad", [-1, True])
def test_a_bad_pad_id_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match=f"pad_id={bad!r}; expected a token id >= 0, or None"):
        ProxyConfig(pad_id=bad)
