"""World seed and model seed of the zoo, apart: the profiles' seed lists and what each seed moves."""

import json
import shutil
from dataclasses import replace

import pytest

from interp.organism import build_zoo
from interp.organism.profiles import ZooConfigError, profile_config


def _world_hash(zoo):
    return json.loads((zoo / "world.json").read_text())["world_hash"]


def _card(zoo, name):
    return json.loads((zoo / name / "card.json").read_text())


def test_profiles_seed_lists():
    for name in ("tiny", "quick"):
        pc = profile_config(name)
        assert (pc.world_seeds, pc.model_seeds) == ((0,), (0,))
        assert pc.seed_combinations() == [(0, 0)]
    full = profile_config("full")
    assert (full.world_seeds, full.model_seeds) == ((0, 1, 2), (0, 1))
    combos = full.seed_combinations()
    assert len(combos) == len(set(combos)) == 6 and combos[0] == (0, 0)


@pytest.mark.parametrize(
    "field,bad",
    [
        ("world_seeds", ()),
        ("model_seeds", (0, 0)),
        ("world_seeds", (-1,)),
        ("world_seeds", (True,)),
    ],
)
def test_profile_refuses_bad_seed_lists(field, bad):
    with pytest.raises(ZooConfigError, match=rf"{field}=.*expected a non-empty tuple of distinct ints >= 0"):
        replace(profile_config("tiny"), **{field: bad})


@pytest.mark.parametrize("kwargs,shown", [({"world_seed": -1}, "world_seed=-1"), ({"seed": -2}, "seed=-2")])
def test_build_zoo_refuses_a_bad_seed_before_writing(tmp_path, kwargs, shown):
    with pytest.raises(ZooConfigError, match=rf"{shown}; expected an int >= 0"):
        build_zoo("tiny", tmp_path / "zoo", progress=False, threads=1, **kwargs)
    assert not (tmp_path / "zoo").exists()


def test_tiny_zoo_cards_record_both_seeds(tiny_zoo):
    # built with seed=0 and no world_seed: the world seed is the seed, as before the split
    assert json.loads((tiny_zoo / "world.json").read_text())["world"]["config"]["seed"] == 0
    for folder in tiny_zoo.iterdir():
        if (folder / "card.json").is_file():
            assert _card(tiny_zoo, folder.name)["seeds"] == {"world": 0, "model": 0}, folder.name


def test_world_seed_and_model_seed_move_different_things(tiny_zoo, tmp_path):
    ref = _card(tiny_zoo, "small-base")
    # world_seed given equal to seed: the very zoo that world_seed=None builds (same fingerprint)
    build_zoo("tiny", tmp_path / "same", seed=0, world_seed=0, progress=False, threads=1, only=["small-base"])
    assert _world_hash(tmp_path / "same") == _world_hash(tiny_zoo)
    assert _card(tmp_path / "same", "small-base")["fingerprint"] == ref["fingerprint"]
    # same world seed, other model seed: the same world, other weights
    build_zoo("tiny", tmp_path / "m1", seed=1, world_seed=0, progress=False, threads=1, only=["small-base"])
    card = _card(tmp_path / "m1", "small-base")
    assert _world_hash(tmp_path / "m1") == _world_hash(tiny_zoo)
    assert card["fingerprint"] != ref["fingerprint"]
    assert card["seeds"] == {"world": 0, "model": 1} and card["recipe"]["zoo_seed"] == 1
    # other world seed, same model seed: another world
    build_zoo("tiny", tmp_path / "w1", seed=0, world_seed=1, progress=False, threads=1, only=["small-base"])
    assert _world_hash(tmp_path / "w1") != _world_hash(tiny_zoo)
    assert _card(tmp_path / "w1", "small-base")["seeds"] == {"world": 1, "model": 0}


def test_a_zoo_built_before_the_split_is_reused_and_gains_its_seeds(tiny_zoo, tmp_path):
    zoo = tmp_path / "old"
    zoo.mkdir()
    shutil.copy(tiny_zoo / "world.json", zoo / "world.json")
    shutil.copytree(tiny_zoo / "small-base", zoo / "small-base")
    old = _card(zoo, "small-base")
    del old["seeds"]  # a card written before world and model seeds were apart
    (zoo / "small-base" / "card.json").write_text(json.dumps(old))
    weights = (zoo / "small-base" / "model.safetensors").read_bytes()
    [card] = build_zoo("tiny", zoo, seed=0, progress=False, threads=1, only=["small-base"])
    assert card["build_seconds"] == old["build_seconds"]  # reused, not retrained
    assert (zoo / "small-base" / "model.safetensors").read_bytes() == weights
    assert _card(zoo, "small-base") == {**old, "seeds": {"world": 0, "model": 0}}
