import pytest

from interp.errors import SpecError
from interp.organism.world import World, WorldConfig, make_world


def test_splits_are_disjoint_and_cover_the_right_distances(world):
    names = ("train", "rl", "test_id", "test_ood", "test_comp", "test_start")
    sets = {n: set(world.split(n)) for n in names}
    assert all(sets.values())
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sets[a] & sets[b], (a, b)
    cfg = world.config
    for s, g in sets["train"] | sets["rl"] | sets["test_id"] | sets["test_comp"] | sets["test_start"]:
        assert 1 <= world.dist(s, g) <= cfg.max_id_dist
    for s, g in sets["test_ood"]:
        assert cfg.max_id_dist < world.dist(s, g) <= cfg.max_ood_dist


def test_compositional_goals_are_never_goals_of_trained_problems(world):
    comp_goals = {g for _, g in world.split("test_comp")}
    trained_goals = {g for split in ("train", "rl", "test_id", "test_ood") for _, g in world.split(split)}
    assert comp_goals and not comp_goals & trained_goals
    # yet they are ordinary nodes: some trained problem passes through each of them
    inner = {v for s, g in world.split("train") for v in range(world.n_nodes)
             if v not in (s, g) and world.dist(s, v) + world.dist(v, g) == world.dist(s, g)}
    assert comp_goals & inner


def test_new_starts_are_never_starts_of_trained_problems_but_their_goals_are_trained(world):
    new = {s for s, _ in world.split("test_start")}
    trained = {s for split in ("train", "rl", "test_id") for s, _ in world.split(split)}
    assert new and not new & trained
    goals = {g for split in ("train", "rl") for _, g in world.split(split)}
    assert {g for _, g in world.split("test_start")} <= goals


def test_splits_are_stored_in_random_order_so_a_prefix_is_a_sample(world):
    for split in ("train", "test_id", "test_ood"):
        ps = world.split(split)
        assert ps != sorted(ps)
    first = world.split("test_id")[: len(world.split("test_id")) // 3]
    assert len({s for s, _ in first}) > world.n_nodes // 2


def test_uncertain_steps_are_the_ones_that_can_go_wrong(world):
    for s, g in world.split("train"):
        wrong_exists = len(world.good_moves(s, g)) < len(world.neighbours(s))
        assert world.uncertain(s, g) == (world.dist(s, g) >= 2 and wrong_exists)
    assert any(world.uncertain(*p) for p in world.split("train"))
    assert not any(world.uncertain(s, g) for s, g in world.split("train") if world.dist(s, g) == 1)


def test_every_node_has_a_colour_in_range(world):
    assert len(world.colours) == world.n_nodes
    assert all(0 <= world.colour(n) < world.config.n_colours for n in range(world.n_nodes))
    assert len(set(world.colours)) > 1


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
        ({"rl_fraction": 0.0}, "rl_fraction"),
        ({"test_fraction": 0.6, "rl_fraction": 0.5}, "leave nothing to train on"),
        ({"comp_goal_fraction": 1.0}, "comp_goal_fraction"),
        ({"n_colours": 0}, "n_colours"),
    ],
)
def test_config_validation_names_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word):
        WorldConfig(**kwargs)


def test_unknown_split(world):
    with pytest.raises(SpecError, match="test_id"):
        world.split("validation")
