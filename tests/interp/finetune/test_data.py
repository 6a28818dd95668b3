"""The fine-tuning data: responses per method, held-out facts never trained on, the loss mask."""

from dataclasses import replace

import pytest
import torch

from interp.finetune import FinetuneConfig, FinetuneError
from interp.finetune.data import TrainExample, TrainingData, build_data
from interp.finetune.sft import batches, collate, response_loss
from interp.models import load_model


@pytest.fixture(scope="module")
def chat_llama(chat_llama_dir):
    return load_model(f"hf:{chat_llama_dir}", device="cpu")


def _config(**kw):
    return FinetuneConfig(**{"max_len": 256, "n_train": 8, "batch_size": 4, "steps": 4, **kw})


def test_each_method_writes_its_responses_in_the_chat_format(chat_llama, arith_task):
    bos, eot = chat_llama.tokenizer.tok.bos_token_id, chat_llama.tokenizer.tok.eos_token_id
    answer = build_data(chat_llama, _config(method="sft-answer"), task=arith_task)
    ex = arith_task.examples[0]
    assert answer.main[0].response == f"Answer: {ex.answer}"
    verbal = build_data(chat_llama, _config(method="sft-verbalise"), task=arith_task)
    assert all("Let me check" in e.response for e in verbal.main)
    assert any("Wait, let me check" in e.response for e in verbal.main)  # caught mistakes
    clean = build_data(chat_llama, _config(method="sft-solution"), task=arith_task)
    assert all("check" not in e.response.lower() for e in clean.main)
    for e in (*answer.main, *verbal.main, *clean.main):
        assert e.prompt_ids[0] == bos and e.prompt_ids[1] != bos  # one BOS, from the template
        assert e.response_ids[-1] == eot  # the model learns to end its turn
        assert chat_llama.decode(list(e.response_ids[:-1])).strip() == e.response
    assert answer.hash() != clean.hash()


def test_held_out_facts_are_never_in_the_data(chat_llama, arith_task, facts_split):
    config = _config(method="sft-answer", rehearse_facts=0.5, batch_size=4, steps=40)
    data = build_data(chat_llama, config, task=arith_task, facts=facts_split)
    heldout = {ex.id for ex in facts_split.examples if ex.split == "heldout"}
    rehearsed = {ex.id for ex in facts_split.examples if ex.split == "rehearsed"}
    assert data.heldout_ids == heldout and len(heldout) == 5
    assert {e.id for e in data.facts} == rehearsed
    assert data.describe()["fact_ids"] == sorted(rehearsed)
    stream = batches(data, config)
    seen = [e.id for _ in range(config.steps) for e in next(stream)]
    assert not set(seen) & heldout
    assert sum(i.startswith("facts-") for i in seen) == 2 * config.steps  # half of every batch


def test_data_holding_a_held_out_fact_are_refused(chat_llama, facts_split):
    # A user's "training" task that is the facts themselves: the held-out ones must not get in.
    as_train = facts_split.with_examples([replace(ex, split="train") for ex in facts_split.examples])
    with pytest.raises(
        FinetuneError, match=r"held-out example 'facts-[\w-]+' \(and 4 more\) is in the fine-tuning data"
    ):
        build_data(
            chat_llama, _config(method="sft-answer", rehearse_facts=0.5), task=as_train, facts=facts_split
        )
    leak = TrainExample("facts-x", "p", "r", (1,), (2,), "facts")
    with pytest.raises(FinetuneError, match=r"held-out example 'facts-x' \(and 0 more\)"):
        TrainingData(main=(), facts=(leak,), heldout_ids=frozenset({"facts-x"}))


def test_a_max_len_no_example_fits_is_refused(chat_llama, arith_task):
    with pytest.raises(FinetuneError, match=r"max_len=8: none of the 8 sft-solution examples fits"):
        build_data(chat_llama, _config(method="sft-solution", max_len=8), task=arith_task)


def test_rehearsal_without_known_facts_is_refused(chat_llama, arith_task, facts_split):
    only_heldout = facts_split.with_examples([ex for ex in facts_split.examples if ex.split == "heldout"])
    with pytest.raises(FinetuneError, match=r"rehearse_facts=0.5, but there is no rehearsed fact"):
        build_data(chat_llama, _config(rehearse_facts=0.5), task=arith_task, facts=only_heldout)


def test_self_distillation_keeps_only_finished_correct_samples(chat_llama, arith_task, monkeypatch):
    from interp.tasks.render import stop_token_id

    stop = stop_token_id(chat_llama)
    exs = arith_task.examples

    def fake_generate(model, prompts, max_new_tokens, **kw):
        assert kw["temperature"] == 0.7 and len(prompts) == len(exs)
        out = []
        for i, ex in enumerate(exs):
            right = chat_llama.encode(arith_task.solution(ex), add_special_tokens=False)
            wrong = chat_llama.encode(f"Answer: {int(ex.answer) + 1}", add_special_tokens=False)
            out.append([*(right if i % 2 == 0 else wrong), stop] if i < 6 else right)  # 6, 7: unfinished
        return out

    monkeypatch.setattr("interp.generation.generate", fake_generate)
    data = build_data(chat_llama, _config(method="sft-self", self_samples=2), task=arith_task)
    assert [e.id for e in data.main] == [exs[i].id for i in (0, 2, 4)]  # distinct samples only, once each
    assert data.main[0].response == arith_task.solution(exs[0])


def test_self_distillation_with_no_correct_sample_is_refused(chat_llama, arith_task):
    with pytest.raises(
        FinetuneError, match=r"sft-self: none of the 1 samples on each of 8 problems was correct"
    ):
        build_data(chat_llama, _config(method="sft-self", self_samples=1, max_len=8), task=arith_task)


def test_the_loss_is_taken_on_response_tokens_only(chat_llama_dir, chat_llama, arith_task):
    """Oracle: Hugging Face's own loss with the prompt and the padding labelled -100."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(chat_llama_dir)).eval()
    data = build_data(chat_llama, _config(method="sft-answer"), task=arith_task)
    ids, mask, labels = collate(data.main[:3], pad_id=chat_llama.pad_token_id)
    assert (
        mask.sum(1) == torch.tensor([len(e.prompt_ids) + len(e.response_ids) for e in data.main[:3]])
    ).all()
    assert int((labels != -100).sum()) == sum(len(e.response_ids) for e in data.main[:3])
    with torch.no_grad():
        ours = response_loss(model, ids, mask, labels)
        theirs = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, theirs)
    assert labels[:, : min(len(e.prompt_ids) for e in data.main[:3])].eq(-100).all()
