"""The RL pool check's split: the held half of test_id is outside both RL arms and train."""

import pytest

from experiments.rl_pool_check import POOL, pooled_world
from interp.organism.world import make_world


def test_held_problems_are_outside_both_pools_and_train():
    world = make_world()
    test = world.split("test_id")
    pooled, held = pooled_world(world, len(test) // 2)
    pool = set(pooled.split(POOL))
    assert set(world.split("rl")) <= pool
    assert len(pool) == len(world.split("rl")) + len(test) // 2
    assert not set(held) & pool
    assert not set(held) & set(world.split("train"))
    assert held == test[len(test) // 2 :]
    assert pooled.split("test_id") == test  # the other splits are left as they were


@pytest.mark.parametrize("bad", [0, -1, 10_000])
def test_a_held_from_outside_test_id_is_refused(bad):
    with pytest.raises(ValueError, match="held_from"):
        pooled_world(make_world(), bad)


def test_both_arms_run_on_a_zoo_and_print_each_snapshot(tiny_zoo, capsys):
    from experiments.rl_pool_check import main
    from interp.organism.store import load_world

    half = len(load_world(tiny_zoo)[0].split("test_id")) // 2
    assert main(["--zoo", str(tiny_zoo), "--steps", "2", "--snapshots", "1", "--held-from", str(half)]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [(line.split(" (")[0], line.split(" step ")[1].split(":")[0]) for line in lines]
    assert steps == [(arm, s) for arm in ("rl", "rl_pool") for s in ("0", "1", "2")]
    assert all("minus base" in line for line in lines)
    assert lines[0].endswith("minus base -") and "[" in lines[1]  # step 0 is base itself
