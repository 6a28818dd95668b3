"""A tiny chat Llama (BPE tokenizer trained on the tasks' text, a ChatML-like template), built once."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
N_TRAIN = 8


@pytest.fixture(scope="session")
def arith_task():
    from interp.tasks.arithmetic import arithmetic_task

    return arithmetic_task(n=N_TRAIN, seed=0, splits=("train",))


@pytest.fixture(scope="session")
def facts_split():
    """Ten facts, five ``rehearsed`` and five ``heldout`` (as ``known_facts`` would split them)."""
    from interp.tasks.facts import facts_task

    task = facts_task(n=10, seed=0)
    kept = [replace(ex, split="rehearsed" if i % 2 else "heldout") for i, ex in enumerate(task.examples)]
    return task.with_examples(kept)


@pytest.fixture(scope="session")
def chat_llama_dir(tmp_path_factory, make_bpe_tokenizer, arith_task, facts_split) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    corpus = [m["content"] for ex in arith_task.examples for m in ex.prompt]
    corpus += [arith_task.solution(ex, with_checks=c) for ex in arith_task.examples for c in (False, True)]
    corpus += [m["content"] for ex in facts_split.examples for m in ex.prompt] + ["user assistant"]
    tok = make_bpe_tokenizer("llama", corpus, 300)
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tok),
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    path = tmp_path_factory.mktemp("chat_llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_config():
    """Settings that make a run of the tiny model take about a second."""
    from interp.finetune import FinetuneConfig

    return FinetuneConfig(
        method="sft-solution",
        lr=3e-3,
        batch_size=4,
        steps=6,
        doses=(0, 3),
        max_len=256,
        threads=1,
        n_train=N_TRAIN,
    )
