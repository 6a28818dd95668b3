"""A tiny Llama with a chat template, built in the test session (never downloaded).

The tokenizer is a small BPE (``make_bpe_tokenizer``) trained on the built-in tasks' own
questions, with BOS ``<s>`` added by default (as Llama's) and a Jinja chat template that writes
the BOS itself and ends every turn with ``</s>``.
"""

import pytest


def _corpus() -> list[str]:
    from interp.tasks import arithmetic_task, facts_task

    lines = [m["content"] for t in (facts_task(), arithmetic_task(n=20)) for ex in t for m in ex.prompt]
    lines += [step for ex in arithmetic_task(n=20) for step in ex.steps]
    lines += ["<|user|>\nHi\n<|assistant|>\nHello\n<|system|>\n", "Answer: 12"]
    lines += ["The capital of France is Paris."]
    return lines


@pytest.fixture(scope="session")
def chat_tokenizer(make_chat_tokenizer):
    return make_chat_tokenizer(_corpus(), 400)


@pytest.fixture(scope="session")
def chat_llama_dir(make_chat_llama, chat_tokenizer):
    return make_chat_llama(chat_tokenizer, max_positions=256)


@pytest.fixture(scope="session")
def chat_llama(chat_llama_dir):
    from interp.models import load_model

    return load_model(f"hf:{chat_llama_dir}", device="cpu")


@pytest.fixture(scope="session")
def chat_hf_tokenizer(chat_llama):
    """The chat model's own ``transformers`` tokenizer, as loaded from its directory."""
    return chat_llama.tokenizer.tok
