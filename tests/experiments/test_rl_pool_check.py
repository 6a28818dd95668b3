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
