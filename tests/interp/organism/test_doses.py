"""The zoo's dose axis (each fine-tune also saved after fewer steps), the RL arms' shared budget
and the matched controls' recipes."""

import json
import shutil

import pytest
import torch

from interp.errors import InterpError, SpecError
from interp.organism.profiles import (
    BACKWARD_KINDS,
    MODEL_NAMES,
    PROFILES,
    ModelSpec,
    ZooConfigError,
    profile_config,
)
from interp.organism.store import (
    available_doses,
    available_organisms,
    dose_axis,
    load_organism,
    read_card,
)
from interp.organism.train import ModelShape, TrainConfig, TrainSettingError


def _card(zoo, name):
    return json.loads((zoo / name / "card.json").read_text())


def _specs_with_doses():
    return [s for s in profile_config("tiny").specs() if s.doses]


def test_doses_are_saved_at_exactly_the_steps_asked(tiny_zoo):
    pc = profile_config("tiny")
    specs = _specs_with_doses()
    assert {"sft-answer", "sft-clean", "sft-self", "rl-answer", "rl-fork", "rl-bottom"} <= {
        s.name for s in specs
    }
    for spec in specs:
        card = _card(tiny_zoo, spec.name)
        expected = [d for d in spec.doses if d < card["steps"]]
        assert expected, spec.name  # tiny's runs reach every dose it asks for
        assert available_doses(spec.name, tiny_zoo) == expected == card["doses"]
        assert card["doses_asked"] == list(spec.doses)
        assert isinstance(card["relative_weight_change"], float)
        for d in expected:
            dose = _card(tiny_zoo, f"{spec.name}@{d}")
            assert dose["dose_steps"] == dose["steps"] == dose["recipe"]["dose_steps"] == d
            assert dose["parent"] == spec.parent and dose["dose_of"] == spec.name
            assert dose["fingerprint"].startswith("sha256:")
            assert set(pc.dose_eval.metric_names()) <= set(dose)  # the lighter evaluation
            assert dose["recipe"]["dose_eval"]["max_problems"] == pc.dose_eval.max_problems
    for spec in profile_config("tiny").specs():
        if not spec.doses:
            assert available_doses(spec.name, tiny_zoo) == []
            assert _card(tiny_zoo, spec.name)["doses"] == []


def test_a_dose_loads_by_spec_and_differs_from_parent_and_final(tiny_zoo, monkeypatch):
    from interp.fingerprint import fingerprint_module
    from interp.models import load_model
    from interp.organism.rl import relative_weight_change

    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    dose = load_model("organism:sft-answer@2", device="cpu")
    card = read_card("sft-answer@2")
    assert dose.fingerprint == card["fingerprint"]
    fps = {n: _card(tiny_zoo, n)["fingerprint"] for n in ("base", "sft-answer@4", "sft-answer")}
    assert card["fingerprint"] not in fps.values()
    ids = torch.tensor([dose.encode("Q n1 n3 A")])
    with torch.no_grad():
        logits = {n: load_organism(n, tiny_zoo)[0](ids) for n in ("base", "sft-answer")}
        mine = dose(ids)
    assert not torch.allclose(mine, logits["base"]) and not torch.allclose(mine, logits["sft-answer"])
    # the card's weight change is the one measured between the saved weights (an oracle)
    base, _ = load_organism("base", tiny_zoo)
    m, _ = load_organism("sft-answer@2", tiny_zoo)
    assert fingerprint_module(m) == card["fingerprint"]
    assert card["relative_weight_change"] == pytest.approx(relative_weight_change(m, base), abs=1e-6)
    assert 0 < card["relative_weight_change"]
    assert dose_axis("sft-answer", tiny_zoo) == [
        (0, "base"),
        (2, "sft-answer@2"),
        (4, "sft-answer@4"),
        (5, "sft-answer"),
    ]


def test_dose_zero_is_the_parent_and_never_saved(tiny_zoo):
    assert not [n for n in available_organisms(tiny_zoo) if n.endswith("@0")]
    shape = ModelShape(1, 16, 2, 32, 16)
    with pytest.raises(
        ZooConfigError,
        match=r"doses=\(0, 2\); expected increasing step counts in 1\.\.4 \(dose 0 is the parent",
    ):
        ModelSpec(
            "x",
            shape,
            "cot",
            "base",
            profile_config("tiny").specs()[1].data,
            TrainConfig(steps=5),
            doses=(0, 2),
        )
    with pytest.raises(
        SpecError, match=r"no dose '0' of organism 'sft-answer'.*doses on disk: sft-answer@2, sft-answer@4"
    ):
        load_organism("sft-answer@0", tiny_zoo)


@pytest.mark.parametrize("name", ["sft-answer@3", "sft-answer@02", "sft-answer@x", "sft-answer@"])
def test_an_unknown_dose_is_refused_naming_the_doses_on_disk(tiny_zoo, name, monkeypatch):
    from interp.models import load_model

    for load in (load_organism, read_card):
        with pytest.raises(
            SpecError, match=r"doses on disk: sft-answer@2, sft-answer@4 \(dose 0 is its parent"
        ) as exc:
            load(name, tiny_zoo)
        assert isinstance(exc.value, InterpError) and "\n" not in str(exc.value)
    monkeypatch.setenv("INTERP_ZOO", str(tiny_zoo))
    with pytest.raises(SpecError, match="doses on disk: sft-answer@2, sft-answer@4"):
        load_model(f"organism:{name}", device="cpu")
    with pytest.raises(SpecError, match=r"no organism 'nope@2' .*available: backward, base, "):
        load_organism("nope@2", tiny_zoo)


def test_rl_arms_run_exactly_rl_answers_steps(tiny_zoo):
    pc = profile_config("tiny")
    answer = _card(tiny_zoo, "rl-answer")
    run = answer["train_stats"]
    assert answer["recipe"]["rl"]["stop_on_plateau"] is True and answer["recipe"]["rl"]["split"] == "rl"
    # tiny's base barely earns reward, so rl-answer stops on the plateau before its most steps:
    # the arms' budget is what rl-answer ran, not the configured maximum
    assert run["stopped"] == "plateau" and run["steps_run"] < pc.rl.steps
    for name, side in (("rl-fork", "top"), ("rl-bottom", "bottom")):
        card = _card(tiny_zoo, name)
        rl = card["recipe"]["rl"]
        assert card["budget_from"] == "rl-answer"
        assert card["steps"] == card["train_stats"]["steps_run"] == rl["steps"] == run["steps_run"]
        assert rl["stop_on_plateau"] is False and rl["split"] == "rl"
        assert rl["top_entropy_quantile"] == 0.8 and rl["entropy_side"] == side
        assert card["recipe"]["budget"] == {
            "from": "rl-answer",
            "steps": run["steps_run"],
            "fingerprint": answer["fingerprint"],
        }
        assert card["doses"] == answer["doses"]  # the three arms share a dose axis


@pytest.mark.parametrize("profile", PROFILES)
def test_controls_are_matched_recipes(profile):
    specs = {s.name: s for s in profile_config(profile).specs()}
    assert list(specs) == list(MODEL_NAMES)  # parents (and budget models) before children
    base = specs["base"]
    base_mix = base.data.mix
    moved = {"swapped": "swapped", "no-trace": "answer", "corrupt": "corrupt"}
    for name, kind in moved.items():
        if name not in specs:  # corrupt waits for traces.py's corrupt kind
            continue
        s = specs[name]
        assert s.parent is None and s.shape == base.shape and s.train == base.train, name
        mix = s.data.mix
        assert "cot" not in mix and mix[kind] == pytest.approx(base_mix.get(kind, 0.0) + base_mix["cot"])
        assert {k: v for k, v in mix.items() if k != kind} == {
            k: v for k, v in base_mix.items() if k not in ("cot", kind)
        }
        assert (s.data.check_rate, s.data.mistake_rate) == (base.data.check_rate, base.data.mistake_rate)
    back, fwd = specs["backward"], specs["forward-only"]
    assert fwd.parent == back.parent == "base" and fwd.train == back.train and fwd.doses == back.doses
    assert not set(fwd.data.mix) & set(BACKWARD_KINDS) and set(back.data.mix) & set(BACKWARD_KINDS)
    kept = {k: v for k, v in back.data.mix.items() if k not in BACKWARD_KINDS}
    assert sum(fwd.data.mix.values()) == pytest.approx(sum(back.data.mix.values()))
    for k, v in kept.items():  # the same proportions among what is left
        assert fwd.data.mix[k] / sum(fwd.data.mix.values()) == pytest.approx(v / sum(kept.values()))
    assert specs["sft-self"].distill is not None and specs["sft-self"].parent == "base"
    assert specs["rl-fork"].budget_from == specs["rl-bottom"].budget_from == "rl-answer"


def test_the_tiny_zoo_has_the_controls(tiny_zoo):
    for name in ("swapped", "no-trace", "forward-only", "sft-self"):
        assert name in available_organisms(tiny_zoo, doses=False)
    stats = _card(tiny_zoo, "sft-self")["train_stats"]["distill"]
    assert stats["kept"] > 0 and stats["samples"] > stats["kept"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"doses": (5,)}, r"doses=\(5,\); expected increasing step counts in 1\.\.4"),
        ({"doses": (4, 2)}, r"doses=\(4, 2\)"),
        ({"doses": (2, 2)}, r"doses=\(2, 2\)"),
        ({"doses": (True,)}, r"doses=\(True,\)"),
        ({"name": "a@2"}, "name='a@2'; expected a plain name without '@'"),
        ({"budget_from": "rl-answer"}, "budget_from= is for RL models only"),
        ({"train": None}, "needs exactly one recipe"),
    ],
)
def test_bad_model_specs_are_refused(kwargs, match):
    from interp.organism.profiles import ANSWER_DATA

    args = {
        "name": "x",
        "shape": ModelShape(1, 16, 2, 32, 16),
        "fmt": "cot",
        "parent": "base",
        "data": ANSWER_DATA,
        "train": TrainConfig(steps=5),
    }
    with pytest.raises(ZooConfigError, match=match) as exc:
        ModelSpec(**{**args, **kwargs})
    assert isinstance(exc.value, ValueError) and "\n" not in str(exc.value)


def _tiny_run():
    from interp.organism.profiles import ANSWER_DATA
    from interp.organism.tokenizer import WordTokenizer, organism_vocab
    from interp.organism.traces import ExampleSampler
    from interp.organism.train import build_model
    from interp.organism.world import make_world

    world = make_world()
    tok = WordTokenizer(organism_vocab(world.n_nodes, world.config.n_colours))
    model = build_model(ModelShape(1, 16, 2, 32, 64), len(tok), seed=0)
    return model, ExampleSampler(world, ANSWER_DATA, 0), tok


def test_train_lm_snapshots_at_the_steps_asked_without_changing_the_run():
    from interp.fingerprint import fingerprint_module
    from interp.organism.train import train_lm

    cfg = TrainConfig(steps=4, batch_size=2, warmup=1)
    model, sampler, tok = _tiny_run()
    start = fingerprint_module(model)
    seen = []

    def on_snapshot(step, m):
        seen.append((step, m.training, fingerprint_module(m)))
        torch.rand(3)  # a snapshot that draws random numbers must not change the run

    stats = train_lm(
        model, sampler, tok, cfg, seed=0, progress=False, snapshot_at=(1, 3), on_snapshot=on_snapshot
    )
    assert [(s, t) for s, t, _ in seen] == [(1, False), (3, False)] and stats["snapshot_steps"] == [1, 3]
    assert len({start, seen[0][2], seen[1][2], fingerprint_module(model)}) == 4
    plain, sampler, tok = _tiny_run()
    train_lm(plain, sampler, tok, cfg, seed=0, progress=False)
    assert fingerprint_module(plain) == fingerprint_module(model)


@pytest.mark.parametrize(
    ("snapshot_at", "callback", "match"),
    [
        ((0,), True, r"snapshot_at has \[0\]; expected step counts in 1\.\.steps=4"),
        ((5,), True, r"snapshot_at has \[5\]"),
        ((2,), False, r"snapshot_at=\[2\] without on_snapshot"),
    ],
)
def test_train_lm_refuses_bad_snapshots_before_training(snapshot_at, callback, match):
    from interp.fingerprint import fingerprint_module
    from interp.organism.train import train_lm

    model, sampler, tok = _tiny_run()
    before = fingerprint_module(model)
    cb = (lambda s, m: None) if callback else None
    with pytest.raises(TrainSettingError, match=match):
        train_lm(
            model,
            sampler,
            tok,
            TrainConfig(steps=4, batch_size=2),
            seed=0,
            progress=False,
            snapshot_at=snapshot_at,
            on_snapshot=cb,
        )
    assert fingerprint_module(model) == before  # nothing was trained


def test_reuse_is_per_dose_and_stale_doses_go(tiny_zoo, tmp_path):
    from interp.organism.zoo import build_zoo

    zoo = shutil.copytree(tiny_zoo, tmp_path / "zoo")
    mtime = {n: (zoo / n / "model.safetensors").stat().st_mtime_ns for n in available_organisms(zoo)}
    fp2 = read_card("sft-answer@2", zoo)["fingerprint"]
    shutil.rmtree(zoo / "sft-answer@2")
    shutil.copytree(zoo / "sft-answer@4", zoo / "sft-answer@3")  # a dose no build asked for
    build_zoo("tiny", zoo, seed=0, progress=False, threads=1, only=["sft-answer"])
    assert available_doses("sft-answer", zoo) == [2, 4]  # the stale dose is gone
    assert read_card("sft-answer@2", zoo)["fingerprint"] == fp2  # redone, bit for bit
    for n in ("base", "sft-answer@4", "sft-answer"):  # identical weights: kept, not rewritten
        assert (zoo / n / "model.safetensors").stat().st_mtime_ns == mtime[n], n
    assert read_card("sft-answer", zoo)["doses"] == [2, 4]


def test_format_doses_says_which_doses_a_run_did_not_reach():
    from interp.organism.cli import format_doses

    cards = [
        {"name": "base", "doses_asked": [], "doses": []},
        {
            "name": "rl-answer",
            "parent": "base",
            "steps": 30,
            "doses_asked": [50, 150],
            "doses": [],
            "relative_weight_change": 0.01,
        },
    ]
    out = format_doses(cards)
    assert "  rl-answer: 0 = base, final 30 (0.0100); not reached: 50, 150" in out
    assert "base:" not in out
    assert format_doses(cards[:1]) == "doses: none"
