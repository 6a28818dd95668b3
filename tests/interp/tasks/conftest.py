"""A tiny Llama with a chat template, built in the test session (never downloaded).

The tokenizer is a small BPE (``make_bpe_tokenizer``) trained on the built-in tasks' own
questions, with BOS ``<s>`` added by default (as Llama's) and a Jinja chat template that writes
the BOS itself and ends every turn with ``</s>``.
"""

import pytest
import torch

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _corpus() -> list[str]:
    from interp.tasks import arithmetic_task, facts_task

    lines = [m["content"] for t in (facts_task(), arithmetic_task(n=20)) for ex in t for m in ex.prompt]
    lines += [step for ex in arithmetic_task(n=20) for step in ex.steps]
    lines += ["<|user|>\nHi\n<|assistant|>\nHello\n<|system|>\n", "Answer: 12"]
    lines += ["The capital of France is Paris."]
    return lines


@pytest.fixture(scope="session")
def chat_tokenizer(make_bpe_tokenizer):
    tok = make_bpe_tokenizer("llama", _corpus(), 400)
    tok.chat_template = CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def chat_llama_dir(tmp_path_factory, chat_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(chat_tokenizer), max_position_embeddings=256,
        bos_token_id=chat_tokenizer.bos_token_id, eos_token_id=chat_tokenizer.eos_token_id,
        pad_token_id=chat_tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("chat_llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(str(path))
    chat_tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def chat_llama(chat_llama_dir):
    from interp.models import load_model

    return load_model(f"hf:{chat_llama_dir}", device="cpu")


@pytest.fixture(scope="session")
def chat_hf_tokenizer(chat_llama):
    """The chat model's own ``transformers`` tokenizer, as loaded from its directory."""
    return chat_llama.tokenizer.tok
