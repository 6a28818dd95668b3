"""interp.tasks.render: chat messages through the template with one BOS; plain text by BOS policy."""

import pytest

from interp.errors import SpecError
from interp.tasks.protocol import Example, TaskError
from interp.tasks.render import (
    chat_template,
    end_of_turn_id,
    join_response,
    render_example,
    render_prompt,
    render_text,
    stop_token_id,
)

MESSAGES = ({"role": "user", "content": "What is the capital of France?"},)


def test_messages_go_through_the_template_with_exactly_one_bos(chat_llama, chat_hf_tokenizer):
    ids = render_prompt(chat_llama, MESSAGES)
    text = chat_hf_tokenizer.apply_chat_template(list(MESSAGES), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<s><|user|>\nWhat is the capital") and text.endswith("<|assistant|>\n")
    assert ids == chat_hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = chat_hf_tokenizer.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1, "the template's BOS, and no second one"
    # what a naive encode of the rendered text gives: a second BOS in front
    assert chat_hf_tokenizer(text)["input_ids"][:2] == [bos, bos]
    assert render_text(chat_llama, MESSAGES) == text


def test_the_generation_prompt_is_added_unless_asked_not_to(chat_llama, chat_hf_tokenizer):
    with_text = render_text(chat_llama, MESSAGES)
    without_text = render_text(chat_llama, MESSAGES, add_generation_prompt=False)
    assert with_text == without_text + "<|assistant|>\n"
    without = render_prompt(chat_llama, MESSAGES, add_generation_prompt=False)
    assert without == chat_hf_tokenizer(without_text, add_special_tokens=False)["input_ids"]
    assert render_prompt(chat_llama, MESSAGES) != without


def test_plain_text_follows_the_checkpoints_bos_policy(chat_llama, gpt2):
    ids = render_prompt(chat_llama, "What is the capital of France?")
    assert ids == chat_llama.encode("What is the capital of France?")
    assert ids[0] == chat_llama.tokenizer.bos_token_id and ids.count(ids[0]) == 1
    assert render_prompt(gpt2, "w1 w2") == gpt2.encode("w1 w2") == [3, 4]  # GPT-2: no BOS


def test_messages_on_a_model_without_a_template_say_to_pass_plain_text(gpt2):
    assert chat_template(gpt2) is None and end_of_turn_id(gpt2) is None
    with pytest.raises(SpecError, match=r"model 'hf:.*' has no chat template.*pass the prompt as plain text"):
        render_prompt(gpt2, MESSAGES)


def test_bad_prompts_are_refused_before_the_model_is_touched():
    with pytest.raises(TaskError, match="empty prompt"):
        render_prompt(None, " ")
    with pytest.raises(TaskError, match="message 0 has role 'bot'"):
        render_prompt(None, [{"role": "bot", "content": "x"}])


def test_a_template_that_refuses_is_one_line(chat_llama, monkeypatch):
    tok = chat_llama.tokenizer.tok
    monkeypatch.setattr(tok, "chat_template", "{{ raise_exception('system messages are not supported') }}")
    with pytest.raises(TaskError, match=r"cannot render these messages: system messages are not supported"):
        render_prompt(chat_llama, MESSAGES)


def test_end_of_turn_is_read_from_the_template(chat_llama, chat_hf_tokenizer):
    assert end_of_turn_id(chat_llama) == chat_hf_tokenizer.eos_token_id
    assert stop_token_id(chat_llama, "\n") == chat_hf_tokenizer.eos_token_id


def test_stop_token_of_a_plain_model_is_the_stop_string_when_it_is_one_token(gpt2):
    assert stop_token_id(gpt2, "w5") == gpt2.encode("w5", add_special_tokens=False)[0]
    assert stop_token_id(gpt2, "w5 w6") is None and stop_token_id(gpt2) is None


def test_render_example_continues_the_rendered_prompt_and_ends_the_turn(chat_llama, chat_hf_tokenizer):
    ex = Example("f", MESSAGES, "Paris")
    prompt, response = render_example(chat_llama, ex, "The capital of France is Paris.")
    assert prompt == render_prompt(chat_llama, MESSAGES)
    text = render_text(chat_llama, MESSAGES) + "The capital of France is Paris."
    assert prompt + response[:-1] == chat_hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert response[-1] == chat_hf_tokenizer.eos_token_id
    _, forced = render_example(chat_llama, ex, "Answer:", end_turn=False)
    assert chat_hf_tokenizer.eos_token_id not in forced
    _, gold = render_example(chat_llama, ex)  # default: the gold answer
    assert chat_llama.decode(gold[:-1]) == "Paris"


def test_render_example_on_a_plain_model_joins_with_a_space(gpt2):
    ex = Example("p", "w1 w2", "w3")
    assert render_example(gpt2, ex) == (gpt2.encode("w1 w2"), gpt2.encode("w3", add_special_tokens=False))
    assert join_response("a\n", "b") == "a\nb" and join_response("a", " b") == "a b"


def test_a_response_merging_with_the_prompt_keeps_the_prompt_ids(chat_llama):
    # "Par" + "is" would merge across the boundary of a plain prompt ending in "Par"
    ex = Example("m", "The capital of France is Par", "is")
    prompt, response = render_example(chat_llama, ex, "is")
    assert prompt == chat_llama.encode("The capital of France is Par")
    assert chat_llama.decode(prompt + response).replace(" ", "").endswith("Paris")
