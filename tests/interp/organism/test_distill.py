"""Self-distillation data: only the parent's own verified responses, unedited."""

import pytest

from interp.organism.distill import DistillConfig, FixedExamples, distilled_sampler
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.traces import cot_prompt
from interp.organism.train import ModelShape, build_model
from interp.organism.validator import validate_trace


def _tiny(tok):
    return build_model(ModelShape(1, 16, 2, 32, 64), len(tok), seed=0)


def test_kept_examples_are_exactly_the_parents_valid_samples(world, monkeypatch):
    """A fake parent whose 'samples' are known: half right, half wrong; only the right ones stay."""
    import numpy as np

    from interp.organism import distill
    from interp.organism.traces import cot_example

    rng = np.random.default_rng(0)
    problems = world.split("train")[:6]
    right = {p: cot_example(world, *p, rng, 0.8, 0.3).words[4:] for p in problems}

    def fake_respond(model, tok, prompts, max_new_tokens, temperature, forbid, gen):
        out = []
        for i, pr in enumerate(prompts):
            s, g = (int(w[1:]) for w in pr.split()[1:3])
            out.append(right[(s, g)] if i % 2 == 0 else ["A", "E"])
        return out

    monkeypatch.setattr(distill, "respond", fake_respond)
    tok = WordTokenizer(organism_vocab(world.n_nodes))
    cfg = DistillConfig(samples_per_problem=2, max_problems=6)
    data = distilled_sampler(_tiny(tok), tok, world, cfg, seed=0)
    assert data.stats["samples"] == 12 and data.stats["kept"] == 6
    assert data.stats["problems_with_a_kept_sample"] == 6
    for ex in data.examples:
        s, g = (int(w[1:]) for w in ex.words[1:3])
        assert ex.words[: ex.prompt_len] == cot_prompt(s, g).split()
        assert ex.words[ex.prompt_len :] == right[(s, g)]  # unedited: markers kept as written
        assert validate_trace(world, s, g, ex.words[ex.prompt_len :]).valid
        assert ex.weights == [0.0] * ex.prompt_len + [1.0] * (len(ex.words) - ex.prompt_len)


def test_shortest_keeps_one_response_per_problem(world, monkeypatch):
    import numpy as np

    from interp.organism import distill
    from interp.organism.traces import cot_example

    rng = np.random.default_rng(1)
    p = next(q for q in world.split("train") if world.uncertain(*q))
    long_ = cot_example(world, *p, rng, 1.0, 0.0).words[4:]
    short = cot_example(world, *p, rng, 0.0, 0.0).words[4:]
    assert len(short) < len(long_)
    monkeypatch.setattr(distill, "respond", lambda *a, **k: [long_, short, long_])
    monkeypatch.setattr(world, "splits", {**world.splits, "train": [p]})
    try:
        tok = WordTokenizer(organism_vocab(world.n_nodes))
        data = distilled_sampler(
            _tiny(tok), tok, world, DistillConfig(samples_per_problem=3, keep="shortest"), 0
        )
    finally:
        monkeypatch.undo()
    assert [e.words[4:] for e in data.examples] == [short]


def test_a_random_parent_runs_end_to_end_and_an_empty_result_is_refused(world):
    tok = WordTokenizer(organism_vocab(world.n_nodes))
    model = _tiny(tok)
    with pytest.raises(ValueError, match="solved none"):
        distilled_sampler(
            model, tok, world, DistillConfig(samples_per_problem=1, max_problems=3, max_new_tokens=8), 0
        )


def test_fixed_examples_draw_reproducibly():
    from interp.organism.traces import Example

    exs = [Example(["Q", str(i)], 1, [0.0, 1.0]) for i in range(5)]
    a, b = FixedExamples(exs, 3).batch(20), FixedExamples(exs, 3).batch(20)
    assert [e.words for e in a] == [e.words for e in b]
    assert len({e.words[1] for e in a}) > 1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"samples_per_problem": 0}, "samples_per_problem"),
        ({"temperature": 0.0}, "temperature"),
        ({"keep": "best"}, "keep"),
        ({"max_problems": 0}, "max_problems"),
    ],
)
def test_config_refusals_name_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DistillConfig(**kwargs)
