"""Finding 7's controls of matched relative size: seeded noise on base, and the SFT dose whose
relative weight change is closest to rl-answer's."""

import json
import math

import pytest
import torch

from experiments.context import Context
from experiments.controls import noisy_copy
from experiments.e7_forking import matched_sft_dose
from interp.models import Model
from interp.organism.rl import relative_weight_change
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.train import ModelShape, build_model

TOK = WordTokenizer(organism_vocab(8))


def tiny() -> Model:
    return Model(build_model(ModelShape(1, 16, 2, 32, 16), len(TOK), seed=0), TOK, "organism:base")


def test_noise_moves_every_tensor_by_the_asked_relative_change():
    base = tiny()
    before = {n: p.detach().clone() for n, p in base.module.named_parameters()}
    noisy = noisy_copy(base, 0.05, seed=3)
    assert relative_weight_change(noisy.module, base.module) == pytest.approx(0.05, rel=1e-5)
    moved = dict(noisy.module.named_parameters())
    for name, p in before.items():
        norm = float(p.double().norm())
        change = float((moved[name].detach().double() - p.double()).norm())
        # a zero tensor (a bias) gets no noise: its relative change is undefined
        assert change == pytest.approx(0.05 * norm, rel=1e-5, abs=1e-12)
    # the base model itself is untouched
    assert all(torch.equal(p, before[n]) for n, p in base.module.named_parameters())
    assert "noise" in noisy.spec and noisy.fingerprint != base.fingerprint


def test_noise_is_seeded():
    base = tiny()
    a, b, c = noisy_copy(base, 0.01, seed=0), noisy_copy(base, 0.01, seed=0), noisy_copy(base, 0.01, seed=1)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert noisy_copy(base, 0.0).fingerprint == base.fingerprint


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_noise_refuses_a_bad_size(bad):
    with pytest.raises(ValueError, match=r"relative_change=.*expected a finite number >= 0"):
        noisy_copy(tiny(), bad)


def _zoo(tmp_path, cards: dict[str, dict]):
    (tmp_path / "world.json").write_text("{}")
    for name, card in cards.items():
        d = tmp_path / name
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"")
        (d / "config.json").write_text("{}")
        (d / "card.json").write_text(json.dumps(card))
    return Context("tiny", tmp_path / "out", tmp_path)


def test_the_sft_dose_closest_to_the_rl_change_is_chosen(tmp_path):
    def card(change, steps=None, parent="base"):
        return {"relative_weight_change": change, "steps": steps or 0, "parent": parent}

    ctx = _zoo(
        tmp_path,
        {
            "base": card(None, parent=None),
            "sft-clean@30": card(0.01),
            "sft-clean@100": card(0.05),
            "sft-clean": card(0.1, 300),
            "sft-self@30": card(0.02),
            "sft-self": card(0.2, 300),
            "sft-answer@30": card(0.018),  # another format: never a candidate
        },
    )
    assert matched_sft_dose(ctx, 0.018) == ("sft-self@30", 0.02)
    assert matched_sft_dose(ctx, 0.06) == ("sft-clean@100", 0.05)
    assert matched_sft_dose(ctx, 0.5) == ("sft-self", 0.2)  # a final model is a dose too
    # the parent at dose 0 (base, no change) is never chosen, however small the target
    assert matched_sft_dose(ctx, 0.0) == ("sft-clean@30", 0.01)


def test_no_sft_model_in_the_zoo_gives_none(tmp_path):
    ctx = _zoo(tmp_path, {"base": {"steps": 0, "parent": None}})
    assert matched_sft_dose(ctx, 0.01) is None
