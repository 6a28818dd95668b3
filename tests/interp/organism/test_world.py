import pytest

from interp.errors import SpecError
from interp.organism.world import World, WorldConfig, make_world


def test_splits_are_disjoint_and_cover_the_right_distances(world):
    train, test_id, ood = (set(world.split(s)) for s in ("train", "test_id", "test_ood"))
    assert train and test_id and ood
    assert not train & test_id and not train & ood and not test_id & ood
    cfg = world.config
    for s, g in train | test_id:
        assert 1 <= world.dist(s, g) <= cfg.max_id_dist
    for s, g in ood:
        assert cfg.max_id_dist < world.dist(s, g) <= cfg.max_ood_dist


def test_graph_shape_and_forks(world):
    assert world.n_nodes == 24
    for u in range(world.n_nodes):
        nb = world.neighbours(u)
        assert len(nb) == 2 and u not in nb and nb == sorted(nb)
    forks = [(u, g) for u, g in world.split("train") if len(world.good_moves(u, g)) > 1]
    assert forks, "the task must have genuine forks"


def test_same_seed_same_world_and_json_round_trip():
    a, b = make_world(WorldConfig(seed=3)), make_world(WorldConfig(seed=3))
    assert a.hash() == b.hash() != make_world(WorldConfig(seed=4)).hash()
    c = World.from_json(a.to_json())
    assert c.hash() == a.hash() and c.dist(0, 5) == a.dist(0, 5)


def test_shortest_path_check(world):
    s, g = next(p for p in world.split("train") if world.dist(*p) == 2)
    mid = world.good_moves(s, g)[0]
    assert world.is_shortest_path([s, mid, g], s, g)
    assert not world.is_shortest_path([s, g], s, g)
    assert not world.is_shortest_path([s, mid], s, g)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n_nodes": 2}, "n_nodes"),
        ({"out_degree": 0}, "out_degree"),
        ({"max_id_dist": 6, "max_ood_dist": 6}, "max_id_dist"),
        ({"test_fraction": 1.5}, "test_fraction"),
    ],
)
def test_config_validation_names_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word):
        WorldConfig(**kwargs)


def test_unknown_split(world):
    with pytest.raises(SpecError, match="test_id"):
        world.split("validation")
