"""interp.tokenizers: the BOS policy of hf: models on realistic GPT-2, Llama and Qwen2 tokenizers.

The conftest word-level tokenizer has no BOS and no merges, so each test here uses a small BPE
trained on a few sentences and wrapped as that family's ``transformers`` tokenizer (Llama's adds
BOS ``<s>``, GPT-2's and Qwen2's do not), saved beside a tiny random model of the family.
"""

import pytest
import torch

from interp.errors import SpecError
from interp.models import load_model
from interp.tokenizers import HFTokenizer, tokenizer_record

FAMILIES = ("gpt2", "llama", "qwen2")
CORPUS = [
    "The capital of France is Paris.",
    "Paris is a city in France.",
    "The answer is yes. The answer is no.",
    "Let me check: WAIT, that is wrong. OK.",
    "Hello world, hello Paris, hello France.",
] * 20
VOCAB_SIZE = {"gpt2": 330, "llama": 120, "qwen2": 330}  # with the specials (conftest's BPE_SPECIALS)
TEXTS = ["The capital of France is Paris", "Paris", " Paris", "hello world", "WAIT"]


def family_model(family: str, vocab: int):
    import transformers

    torch.manual_seed(0)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=vocab, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg).eval()
    names = {
        "llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")
    }[family]
    cfg = getattr(transformers, names[0])(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=64,
    )
    return getattr(transformers, names[1])(cfg).eval()


@pytest.fixture(scope="module")
def bpe_dirs(tmp_path_factory, make_bpe_tokenizer):
    """``family -> directory`` holding a tiny model of that family and its BPE tokenizer."""
    out = {}
    for family in FAMILIES:
        tok = make_bpe_tokenizer(family, CORPUS, VOCAB_SIZE[family])
        path = tmp_path_factory.mktemp(f"bpe_{family}")
        family_model(family, len(tok)).save_pretrained(str(path))
        tok.save_pretrained(str(path))
        out[family] = path
    return out


@pytest.fixture(scope="module")
def bpe_models(bpe_dirs):
    return {f: load_model(f"hf:{d}", device="cpu") for f, d in bpe_dirs.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_default_path_agrees_with_the_checkpoints_own_tokenizer(family, bpe_dirs, bpe_models):
    from transformers import AutoTokenizer

    own = AutoTokenizer.from_pretrained(str(bpe_dirs[family]))
    m = bpe_models[family]
    for text in TEXTS:
        assert m.encode(text) == own(text)["input_ids"], text
    record = m.tokenizer_record()
    assert record["prepend_bos"] is (family == "llama"), "prepend_bos must say what encode does"
    assert record["bos_token_id"] == own.bos_token_id
    assert record["hash"] == m.tokenizer_hash()
    if family == "llama":
        assert m.encode("Paris")[0] == own.bos_token_id


@pytest.mark.parametrize("family", FAMILIES)
def test_single_token_words_encode_to_one_token_through_the_plain_path(family, bpe_models):
    m = bpe_models[family]
    for word in (" Paris", "Paris", " France", "The"):
        plain = m.encode(word, add_special_tokens=False)
        assert len(plain) == 1, (word, plain)
        assert m.encode_plain(word) == plain
        assert m.decode(plain) == (word.lstrip() if family == "llama" else word)
    bos = m.tokenizer_record()["bos_token_id"]
    for text in TEXTS:
        assert bos is None or bos not in m.encode_plain(text)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_stop_word_is_found_inside_a_generated_sequence(family, bpe_models):
    """What --stop does: the stop word's plain id must occur in the ids of a text that ends with it."""
    m = bpe_models[family]
    (stop,) = m.encode_plain(" France")
    ids = m.encode("The capital of France")
    assert ids[-1] == stop


def test_the_bos_policy_can_be_overridden_and_changes_the_hash(bpe_dirs, bpe_models):
    llama_off = load_model(f"hf:{bpe_dirs['llama']}", device="cpu", prepend_bos=False)
    assert llama_off.encode("Paris") == bpe_models["llama"].encode_plain("Paris")
    assert llama_off.tokenizer_record()["prepend_bos"] is False
    assert llama_off.tokenizer_hash() != bpe_models["llama"].tokenizer_hash()
    gpt2_on = load_model(f"hf:{bpe_dirs['gpt2']}", device="cpu", prepend_bos=True)
    assert gpt2_on.encode("Paris") == [0, *bpe_models["gpt2"].encode("Paris")]
    assert gpt2_on.tokenizer_hash() != bpe_models["gpt2"].tokenizer_hash()
    assert llama_off.fingerprint == bpe_models["llama"].fingerprint  # same weights
    with pytest.raises(SpecError, match="prepend_bos=True, but the tokenizer .* has no BOS token"):
        load_model(f"hf:{bpe_dirs['qwen2']}", device="cpu", prepend_bos=True)


def test_a_chat_templated_prompt_gets_one_bos(bpe_models):
    m = bpe_models["llama"]
    ids = m.encode("<s>Hello world")
    assert ids[0] == 1 and ids.count(1) == 1, ids


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_logits_match_plain_transformers(family, bpe_dirs, bpe_models):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(bpe_dirs[family]), attn_implementation="eager").eval()
    m = bpe_models[family]
    ids = torch.tensor([m.encode("The capital of France is Paris")])
    with torch.no_grad():
        torch.testing.assert_close(m(ids), ref(ids).logits, atol=1e-5, rtol=1e-5)


def test_the_wrapper_reports_what_it_does(make_bpe_tokenizer):
    tok = make_bpe_tokenizer("llama", CORPUS, VOCAB_SIZE["llama"])
    on, off = HFTokenizer(tok), HFTokenizer(tok, prepend_bos=False)
    assert (on.prepend_bos, off.prepend_bos) == (True, False)
    assert on.encode("Paris") == [1, *off.encode("Paris")] == tok("Paris")["input_ids"]
    assert tokenizer_record(on)["hash"] != tokenizer_record(off)["hash"]
    assert tokenizer_record(None) == {"hash": None, "prepend_bos": False, "bos_token_id": None}


def test_the_chat_template_is_part_of_the_hash(make_bpe_tokenizer):
    from interp.tokenizers import HFTokenizer

    tok = make_bpe_tokenizer("llama", CORPUS, VOCAB_SIZE["llama"])
    before = HFTokenizer(tok).hash()
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert HFTokenizer(tok).hash() != before
