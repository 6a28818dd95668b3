"""A tiny chat Llama (BPE tokenizer trained on the tasks' text, a ChatML-like template), built once."""

from dataclasses import replace
from pathlib import Path

import pytest

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
def chat_llama_dir(make_chat_tokenizer, make_chat_llama, arith_task, facts_split) -> Path:
    corpus = [m["content"] for ex in arith_task.examples for m in ex.prompt]
    corpus += [arith_task.solution(ex, with_checks=c) for ex in arith_task.examples for c in (False, True)]
    corpus += [m["content"] for ex in facts_split.examples for m in ex.prompt] + ["user assistant"]
    return make_chat_llama(make_chat_tokenizer(corpus, 300, template="role"))


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
