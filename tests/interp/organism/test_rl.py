import copy
import math

import pytest
import torch

from interp.errors import DamageError, InterpError, SpecError
from interp.fingerprint import fingerprint_module
from interp.organism import rl
from interp.organism.rl import (
    RLConfig,
    RLSettingError,
    forking_mask,
    plateau_reached,
    relative_weight_change,
    rl_finetune,
)
from interp.organism.tokenizer import WordTokenizer, organism_vocab
from interp.organism.train import ModelShape, build_model


@pytest.fixture(scope="module")
def tok(world):
    return WordTokenizer(organism_vocab(world.n_nodes))


def _model(tok, seed=0):
    return build_model(ModelShape(1, 16, 2, 32, 24), len(tok), seed)


def _cfg(**kw):
    base = dict(steps=4, prompts_per_step=2, group_size=4, max_new_tokens=6, lr=1e-2, window=2)
    return RLConfig(**{**base, **kw})


@pytest.fixture
def varied_reward(monkeypatch):
    """A random model never solves a problem; reward a property of the sample so groups differ."""

    def reward(world, start, goal, words):
        return float(sum(map(ord, " ".join(words))) % 2)

    monkeypatch.setattr(rl, "_reward", reward)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- entropy masks ----------------------------------------------------------------------------


def test_bottom_and_top_masks_are_complements_on_masked_positions():
    ent = torch.tensor([[0.1, 0.9, 0.5, 0.3, 5.0], [0.7, 0.2, 0.8, 0.4, 0.6]])
    mask = torch.ones_like(ent, dtype=torch.bool)
    mask[0, 4] = False  # a high entropy outside the response never counts
    # masked entropies 0.1 .. 0.9 (nine values): the 0.5-quantile is their median, 0.5
    top = forking_mask(ent, mask, 0.5, "top")
    bottom = forking_mask(ent, mask, 0.5, "bottom")
    assert sorted(ent[top].tolist()) == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert sorted(ent[bottom].tolist()) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert torch.equal(top | bottom, mask) and not bool((top & bottom).any())
    assert torch.equal(forking_mask(ent, mask, 0.5), top)  # "top" stays the default
    # q=0.8 keeps the top fifth on one side and the bottom 80% on the other, complements again
    t8, b8 = forking_mask(ent, mask, 0.8, "top"), forking_mask(ent, mask, 0.8, "bottom")
    assert int(t8.sum()) == 2 and int(b8.sum()) == 7
    assert torch.equal(t8 | b8, mask) and not bool((t8 & b8).any())


def test_top_and_bottom_arms_update_complementary_token_shares(world, tok, varied_reward):
    shares, weights = {}, {}
    for side in ("top", "bottom"):
        model = _model(tok)
        cfg = _cfg(steps=1, top_entropy_quantile=0.8, entropy_side=side)
        stats = rl_finetune(model, world, tok, cfg, seed=0, progress=False)
        assert stats["updates"] == 1
        shares[side], weights[side] = stats["updated_token_share"], _weights(model)
    # the same first batch: the two arms keep complementary token sets of it
    assert shares["top"] + shares["bottom"] == pytest.approx(1.0)
    assert 0.1 < shares["top"] < 0.4
    assert not _same(weights["top"], weights["bottom"])
    every = rl_finetune(_model(tok), world, tok, _cfg(steps=1), seed=0, progress=False)
    assert every["updated_token_share"] == 1.0


# --- plateau rule -----------------------------------------------------------------------------


def _first_stop(curve, **kw):
    return next((n for n in range(1, len(curve) + 1) if plateau_reached(curve[:n], **kw)), None)


def test_plateau_rule_on_hand_written_curves():
    kw = dict(window=4, patience=5, min_delta=0.01)
    rising = [0.02 * i for i in range(60)]
    assert _first_stop(rising, **kw) is None
    flat_after_rise = [0.1 * i for i in range(10)] + [0.9] * 20
    # averages of 4: ... 0.75 (step 10), 0.825, 0.875, 0.9 (step 13, the last rise), then flat;
    # five steps without a rise: the run stops after step 18
    assert _first_stop(flat_after_rise, **kw) == 18
    assert _first_stop(flat_after_rise, **kw, min_steps=25) == 25
    assert _first_stop(flat_after_rise, **{**kw, "patience": 1}) == 14
    # rises smaller than min_delta do not count; a larger one resets the count
    creeping = [0.5] * 4 + [0.5 + 0.001 * i for i in range(1, 10)]
    assert _first_stop(creeping, **kw) == 9
    assert _first_stop(creeping, **{**kw, "min_delta": 0.0}) is None
    jump = [0.5] * 8 + [0.9] * 21  # flat until step 8 (four steps without a rise), then a jump:
    # the averages rise to 0.6, 0.7, 0.8, 0.9 at steps 9..12, then five flat steps stop it at 17
    assert _first_stop(jump, **kw) == 17
    # the earliest possible stop is window + patience steps
    assert _first_stop([0.3] * 20, **kw) == 9
    assert plateau_reached([], **kw) is False


# --- runs -------------------------------------------------------------------------------------


def test_split_test_id_draws_only_test_id_problems(world, tok, monkeypatch):
    seen = []
    real = rl.cot_prompt

    def spy(start, goal):
        seen.append((start, goal))
        return real(start, goal)

    monkeypatch.setattr(rl, "cot_prompt", spy)
    stats = rl_finetune(_model(tok), world, tok, _cfg(split="test_id"), seed=0, progress=False)
    assert stats["split"] == "test_id"
    assert len(seen) == 4 * 2 * 4
    assert set(seen) <= set(world.split("test_id"))
    assert not set(seen) & set(world.split("train"))
    seen.clear()
    rl_finetune(_model(tok), world, tok, _cfg(), seed=0, progress=False)
    assert seen and set(seen) <= set(world.split("train"))  # the default is still train


def test_snapshots_at_listed_steps_with_the_weights_of_that_moment(world, tok, varied_reward, monkeypatch):
    modes = []
    real_generate = rl.generate

    def generate_spy(model, *a, **kw):
        modes.append(model.training)
        return real_generate(model, *a, **kw)

    monkeypatch.setattr(rl, "generate", generate_spy)
    snaps = []

    def on_snapshot(step, model):
        snaps.append((step, model.training, _weights(model)))
        torch.rand(100)  # a callback that draws random numbers must not change the run

    model = _model(tok)
    stats = rl_finetune(
        model, world, tok, _cfg(steps=5), 0, progress=False, snapshot_at=(1, 3, 5), on_snapshot=on_snapshot
    )
    assert [s for s, _, _ in snaps] == [1, 3, 5] == stats["snapshot_steps"]
    assert not any(training for _, training, _ in snaps)  # eval mode during the call
    assert modes == [True] * 5  # back in train mode for the next step
    assert _same(snaps[2][2], _weights(model))
    assert not _same(snaps[0][2], snaps[1][2])  # the updates moved the weights between snapshots
    # a run stopped at step 3 without snapshots ends with the weights the snapshot saw at step 3
    short = _model(tok)
    rl_finetune(short, world, tok, _cfg(steps=3), 0, progress=False)
    assert _same(snaps[1][2], _weights(short))
    plain = _model(tok)
    rl_finetune(plain, world, tok, _cfg(steps=5), 0, progress=False)
    assert _same(_weights(plain), _weights(model))


def test_reward_curve_and_determinism(world, tok, varied_reward):
    cfg = _cfg(steps=6, window=3)
    a, b, c = _model(tok), _model(tok), _model(tok)
    sa = rl_finetune(a, world, tok, cfg, seed=1, progress=False)
    sb = rl_finetune(b, world, tok, cfg, seed=1, progress=False)
    rl_finetune(c, world, tok, cfg, seed=2, progress=False)
    assert sa["steps_run"] == len(sa["reward_curve"]) == len(sa["moving_average_curve"]) == 6
    assert sa["stopped"] == "max_steps"
    assert sa["reward_curve"] == sb["reward_curve"]
    assert fingerprint_module(a) == fingerprint_module(b)
    assert fingerprint_module(a) != fingerprint_module(c)
    curve = sa["reward_curve"]
    assert all(r == round(r, 4) for r in curve)
    trailing = [sum(curve[max(0, i - 2) : i + 1]) / len(curve[max(0, i - 2) : i + 1]) for i in range(6)]
    assert sa["moving_average_curve"] == pytest.approx(trailing, abs=1e-4)
    assert sa["first_reward"] == pytest.approx(sum(curve[:3]) / 3)
    assert sa["final_reward"] == pytest.approx(sum(curve[-3:]) / 3)
    assert 0 <= sa["zero_advantage_share"] < 1 and sa["updates"] >= 1
    assert not a.training


def test_stop_on_plateau_counts_steps_without_updates(world, tok, monkeypatch):
    monkeypatch.setattr(rl, "_reward", lambda *a: 0.0)  # every group has zero advantage
    model = _model(tok)
    before = fingerprint_module(model)
    snaps = []
    cfg = _cfg(steps=50, stop_on_plateau=True, window=2, patience=3)
    stats = rl_finetune(
        model,
        world,
        tok,
        cfg,
        0,
        progress=False,
        snapshot_at=(2, 5, 40),
        on_snapshot=lambda s, m: snaps.append(s),
    )
    assert stats["stopped"] == "plateau" and stats["steps_run"] == 5 == len(stats["reward_curve"])
    assert snaps == [2, 5] == stats["snapshot_steps"]  # skipped steps count; 40 was never reached
    assert stats["zero_advantage_share"] == 1.0
    assert stats["updates"] == 0 and stats["updated_token_share"] == 0.0
    assert fingerprint_module(model) == before
    assert plateau_reached(stats["reward_curve"], 2, 3, 0.01)
    later = rl_finetune(
        _model(tok), world, tok, RLConfig(**{**cfg.to_dict(), "min_steps": 8}), 0, progress=False
    )
    assert later["steps_run"] == 8 and later["stopped"] == "plateau"
    capped = rl_finetune(
        _model(tok), world, tok, RLConfig(**{**cfg.to_dict(), "steps": 4}), 0, progress=False
    )
    assert capped["steps_run"] == 4 and capped["stopped"] == "max_steps"


def test_kl_penalty_runs_against_a_reference(world, tok, varied_reward):
    model = _model(tok)
    ref = copy.deepcopy(model).eval()
    stats = rl_finetune(model, world, tok, _cfg(steps=2, kl_coef=0.1), 0, ref, progress=False)
    assert stats["updates"] >= 1 and relative_weight_change(model, ref) > 0


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"entropy_side": "middle"}, "entropy_side='middle'"),
        ({"window": 0}, "window=0"),
        ({"patience": 0}, "patience=0"),
        ({"min_delta": -0.1}, "min_delta=-0.1"),
        ({"min_delta": float("nan")}, "min_delta=nan"),
        ({"min_steps": -1}, "min_steps=-1"),
        ({"split": ""}, "split=''"),
        (
            {"entropy_side": "bottom", "top_entropy_quantile": None},
            "entropy_side='bottom' with top_entropy_quantile=None",
        ),
        ({"entropy_side": "bottom", "top_entropy_quantile": 0.0}, "top_entropy_quantile=0.0"),
        ({"top_entropy_quantile": 1.0}, "top_entropy_quantile=1.0"),
    ],
)
def test_config_refusals(kw, message):
    # under the test-time type checker a bad Literal is a TypeCheckError (a TypeError) first;
    # the dataclass's own check is run on its own below
    with pytest.raises((RLSettingError, TypeError), match=next(iter(kw))):
        RLConfig(**kw)
    cfg = RLConfig(top_entropy_quantile=0.5)
    for key, value in kw.items():
        object.__setattr__(cfg, key, value)
    with pytest.raises(RLSettingError, match=message) as err:
        RLConfig.__post_init__(cfg)
    assert isinstance(err.value, InterpError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


def test_run_refusals_change_nothing(world, tok):
    model = _model(tok)
    before = fingerprint_module(model)
    cb = lambda s, m: None  # noqa: E731
    cases = [
        (dict(snapshot_at=(0,), on_snapshot=cb), RLSettingError, r"snapshot_at has \[0\]"),
        (dict(snapshot_at=(5,), on_snapshot=cb), RLSettingError, r"1\.\.steps=4"),
        (dict(snapshot_at=(2,)), RLSettingError, "without on_snapshot"),
    ]
    for kw, cls, msg in cases:
        with pytest.raises(cls, match=msg):
            rl_finetune(model, world, tok, _cfg(), 0, progress=False, **kw)
    with pytest.raises(SpecError, match="unknown split 'nope'"):
        rl_finetune(model, world, tok, _cfg(split="nope"), 0, progress=False)
    with pytest.raises(RLSettingError, match="needs a reference model"):
        rl_finetune(model, world, tok, _cfg(kl_coef=0.1), 0, progress=False)
    n = len(world.split("test_id"))
    with pytest.raises(RLSettingError, match=f"has {n} problems; prompts_per_step={n + 1}"):
        rl_finetune(model, world, tok, _cfg(split="test_id", prompts_per_step=n + 1), 0, progress=False)
    assert fingerprint_module(model) == before


# --- relative weight change -------------------------------------------------------------------


def test_relative_weight_change_oracle_and_refusals():
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model = copy.deepcopy(ref)
    assert relative_weight_change(model, ref) == 0.0
    with torch.no_grad():
        model[1].bias += torch.tensor([3.0, 4.0])  # a change of norm 5 (up to float32 rounding)
    norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in ref.parameters()))
    assert relative_weight_change(model, ref) == pytest.approx(5.0 / norm, rel=1e-6)
    wide = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    with pytest.raises(DamageError, match=r"parameter '0.weight' has shape \(5, 3\)"):
        relative_weight_change(wide, ref)
    with pytest.raises(DamageError, match="parameter '2.bias' is missing from the reference"):
        relative_weight_change(torch.nn.Sequential(*ref, torch.nn.Linear(2, 2)), ref)
    zero = copy.deepcopy(ref)
    for p in zero.parameters():
        p.data.zero_()
    with pytest.raises(DamageError, match="all zero"):
        relative_weight_change(ref, zero)
