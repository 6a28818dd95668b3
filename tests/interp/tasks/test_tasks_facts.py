"""interp.tasks.facts: the questions, the reply reader, the known-facts filter and log-probabilities."""

import pytest
import torch

from interp.tasks.facts import FactAnswer, fact_logprob, facts_task, known_facts, split_of
from interp.tasks.protocol import TaskError


def test_the_facts_are_a_few_hundred_chat_questions_with_unique_ids():
    t = facts_task()
    assert len(t) >= 200 and len({ex.id for ex in t}) == len(t)
    kinds = {ex.meta["kind"] for ex in t}
    assert kinds == {"capital", "symbol"}
    fr = next(ex for ex in t if ex.id == "facts-capital-France")
    question = "What is the capital of France? Answer with the name only."
    assert fr.prompt == ({"role": "user", "content": question},)
    assert fr.answer == "Paris" and fr.meta["lead"] == "The capital of France is"
    uk = next(ex for ex in t if ex.id == "facts-capital-United-Kingdom")
    assert uk.meta["lead"] == "The capital of the United Kingdom is"
    assert [e.id for e in facts_task(n=10, seed=1)] == [e.id for e in facts_task(n=10, seed=1)]
    assert len(facts_task(kinds=["symbol"])) < len(t)
    with pytest.raises(TaskError, match=r"facts kinds \['rivers'\]; expected a non-empty subset"):
        facts_task(kinds=["rivers"])


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("The capital of France is Paris.", "Paris"),
        ("Paris", "Paris"),
        ("Paris is the capital of France.", "Paris"),
        ("The capital of the United States is Washington, D.C.", "Washington, D.C."),
        ("The chemical symbol of gold is Au (from Latin aurum).", "Au"),
        ("The capital of Japan is Tokyo. It is a big city.", "Tokyo"),
        ("Answer: Canberra", "Canberra"),
        ("Cadmium is a chemical element with the chemical symbol Cd.", "Cd"),  # seen from smollm2
        ("Albania is a country in Southeastern Europe.", "a country in Southeastern Europe"),
        ("", None),
    ],
)
def test_the_reply_reader_on_hand_written_replies(reply, answer):
    assert FactAnswer()(reply) == answer


def test_scoring_accepts_aliases_and_accents():
    t = facts_task()
    ua = next(ex for ex in t if ex.id == "facts-capital-Ukraine")
    co = next(ex for ex in t if ex.id == "facts-capital-Colombia")
    assert t.correct(ua, "The capital of Ukraine is Kiev.")
    assert t.correct(co, "The capital of Colombia is Bogota.")
    assert not t.correct(ua, "The capital of Ukraine is Lviv.")


def _fake_generate(task, knows):
    """A stand-in for greedy decoding that answers the facts in ``knows`` right, others wrong."""
    from interp.tasks.render import render_prompt

    def generate(m, prompts, max_new_tokens, stop_id=None, pad_id=0, batch_size=64, progress=False):
        out = []
        for ids in prompts:
            ex = next(e for e in task if render_prompt(m, e.prompt) == ids)
            city = ex.answer if ex.id in knows else "Nowhere"
            out.append(m.encode(f"{ex.meta['lead']} {city}.", add_special_tokens=False) + [stop_id])
        return out

    return generate


def test_known_facts_keeps_the_right_ones_and_splits_them_by_id(chat_llama, monkeypatch):
    import interp.generation

    task = facts_task(kinds=["capital"]).subset(12, seed=0)
    knows = {ex.id for ex in task.examples[:8]}
    monkeypatch.setattr(interp.generation, "generate", _fake_generate(task, knows))
    kept = known_facts(chat_llama, task, batch_size=4, seed=7)
    assert {ex.id for ex in kept} == knows
    assert set(kept.splits) <= {"rehearsed", "heldout"}
    for ex in kept:
        assert ex.split == split_of(ex.id, 7, 0.5) and ex.meta["response"].endswith(f"{ex.answer}.")
    assert kept.meta["known"]["kept"] == 8 and kept.meta["known"]["model"] == chat_llama.fingerprint
    again = known_facts(chat_llama, task, batch_size=4, seed=7)
    assert [(e.id, e.split) for e in again] == [(e.id, e.split) for e in kept]


def test_a_facts_split_depends_on_seed_and_id_only():
    ids = [ex.id for ex in facts_task()]
    splits = [split_of(i, 0, 0.5) for i in ids]
    assert splits == [split_of(i, 0, 0.5) for i in ids]
    assert 0.35 < splits.count("rehearsed") / len(ids) < 0.65
    assert splits != [split_of(i, 1, 0.5) for i in ids]
    assert all(split_of(i, 0, 0.999999) == "rehearsed" for i in ids[:20])


def test_known_facts_refuses_bad_options_and_a_model_that_knows_nothing(chat_llama):
    task = facts_task(n=3)
    with pytest.raises(TaskError, match=r"rehearsed_fraction=1.0; expected a number in \(0, 1\)"):
        known_facts(chat_llama, task, rehearsed_fraction=1.0)
    with pytest.raises(TaskError, match=r"answers none of the 3 facts correctly"):
        known_facts(chat_llama, task, max_new_tokens=4)  # a random model


def test_fact_logprob_matches_transformers(chat_llama, chat_llama_dir):
    from transformers import AutoModelForCausalLM

    from interp.tasks.facts import _answer_ids

    task = facts_task(n=5, seed=2)
    got = fact_logprob(chat_llama, task, batch_size=2)
    assert got.shape == (5,) and bool((got < 0).all())
    hf = AutoModelForCausalLM.from_pretrained(str(chat_llama_dir)).eval()
    for ex, value in zip(task, got, strict=True):
        ctx, ans = _answer_ids(chat_llama, ex)
        lead = chat_llama.encode(ex.meta["lead"], add_special_tokens=False)
        assert chat_llama.decode(ans).strip() == ex.answer and len(ctx) > len(lead)
        with torch.no_grad():
            logits = hf(torch.tensor([ctx + ans])).logits[0].float()
        lp = torch.log_softmax(logits, -1)[torch.arange(len(ctx) - 1, len(ctx) + len(ans) - 1), ans]
        assert value.item() == pytest.approx(lp.mean().item(), abs=1e-4)
    single = fact_logprob(chat_llama, task, batch_size=1)
    torch.testing.assert_close(got, single, atol=1e-4, rtol=0)  # right padding changes nothing
