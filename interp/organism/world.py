"""The synthetic world: a fixed random directed graph whose edges are the facts to recall.

A problem is an ordered pair ``(start, goal)``; its answer is any shortest path from start to
goal. Problems are split disjointly:

- ``train`` (what the zoo trains on) and ``rl`` (held apart for reinforcement learning), and
  ``test_id`` (held out): distances ``1..max_id_dist``, goals among the trained goals;
- ``test_ood``: longer distances ``max_id_dist+1..max_ood_dist`` (never trained on);
- ``test_comp``: trained distances, but goals never used as a goal in ``train`` or ``rl``
  (a compositional split: every such node still appears in facts and inside traces);
- ``test_start``: trained distances and goals, but starts never used as a start in ``train``
  or ``rl`` (the other compositional direction: every such node is still passed through).

Each node also has a colour (``F n5 C`` | ``c3 E``): knowledge that only ``base``'s data holds
and no trace rehearses, so that fine-tuning can forget it. Each split is stored in a seeded
random order, so its first ``k`` problems are a random sample of it.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from interp.errors import SpecError

SPLITS = ("train", "rl", "test_id", "test_ood", "test_comp", "test_start")


@dataclass(frozen=True)
class WorldConfig:
    """How the world is generated.

    Args:
        n_nodes: number of graph nodes (named ``n0`` ... ``n{n_nodes-1}``).
        out_degree: distinct out-neighbours per node (no self loops).
        max_id_dist: longest shortest-path length (edges) of in-distribution problems.
        max_ood_dist: longest path length of the out-of-distribution split.
        test_fraction: share of in-distribution problems (trained goals) held out as ``test_id``.
        rl_fraction: share of them kept for reinforcement learning (the ``rl`` split).
        comp_goal_fraction: share of nodes never used as a goal in ``train`` or ``rl``; their
            in-distribution problems form ``test_comp``.
        start_fraction: share of the other nodes never used as a start in ``train`` or ``rl``;
            their in-distribution problems (to trained goals) form ``test_start``.
        n_colours: colours a node's attribute fact can name (``c0`` ...).
        seed: seed of the graph and of the split.
    """

    n_nodes: int = 24
    out_degree: int = 2
    max_id_dist: int = 4
    max_ood_dist: int = 6
    test_fraction: float = 0.25
    rl_fraction: float = 0.15
    comp_goal_fraction: float = 0.1
    start_fraction: float = 0.1
    n_colours: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not 4 <= self.n_nodes <= 1000:
            raise ValueError(f"n_nodes={self.n_nodes!r}; expected an int in 4..1000")
        if not 1 <= self.out_degree < self.n_nodes:
            raise ValueError(f"out_degree={self.out_degree!r}; expected 1..n_nodes-1")
        if not 1 <= self.max_id_dist < self.max_ood_dist:
            raise ValueError(
                f"max_id_dist={self.max_id_dist!r}, max_ood_dist={self.max_ood_dist!r}; "
                "expected 1 <= max_id_dist < max_ood_dist"
            )
        for name in ("test_fraction", "rl_fraction", "comp_goal_fraction", "start_fraction"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name}={v!r}; expected in (0, 1)")
        if self.test_fraction + self.rl_fraction >= 1.0:
            raise ValueError(
                f"test_fraction={self.test_fraction!r} + rl_fraction={self.rl_fraction!r} leave "
                "nothing to train on; expected a sum below 1"
            )
        if not 1 <= self.n_colours <= 64:
            raise ValueError(f"n_colours={self.n_colours!r}; expected an int in 1..64")


def node_name(i: int) -> str:
    return f"n{i}"


def colour_name(i: int) -> str:
    return f"c{i}"


@dataclass
class World:
    """A generated world: the graph, all-pairs distances and the problem splits.

    Build one with :func:`make_world`; save and reload it with :meth:`to_json` /
    :meth:`from_json`.

    Example:
        >>> w = make_world(WorldConfig(seed=0))
        >>> len(w.neighbours(0)), w.dist(0, w.neighbours(0)[0])
        (2, 1)
    """

    config: WorldConfig
    adjacency: list[list[int]]
    splits: dict[str, list[tuple[int, int]]]
    colours: list[int]
    _dist: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._dist = _all_pairs_dist(self.adjacency)

    @property
    def n_nodes(self) -> int:
        return len(self.adjacency)

    def neighbours(self, node: int) -> list[int]:
        """Out-neighbours of ``node``, sorted (the fact ``n{node} : ...``)."""
        return list(self.adjacency[node])

    def colour(self, node: int) -> int:
        """The colour of ``node`` (the attribute fact ``F n{node} C`` | ``c{colour} E``)."""
        return self.colours[node]

    def uncertain(self, node: int, goal: int) -> bool:
        """Is the move from ``node`` towards ``goal`` a decision that can go wrong?

        True when some neighbour is off every shortest path and the goal is two or more moves
        away (one move away, the goal itself is among the recited neighbours). These are the
        steps where traces place their self-checks and their mistakes.
        """
        d = self.dist(node, goal)
        return d >= 2 and len(self.good_moves(node, goal)) < len(self.adjacency[node])

    def predecessors(self, node: int) -> list[int]:
        """In-neighbours of ``node``, sorted."""
        return [u for u in range(self.n_nodes) if node in self.adjacency[u]]

    def dist(self, a: int, b: int) -> int:
        """Shortest-path length from ``a`` to ``b``; ``-1`` when unreachable."""
        d = int(self._dist[a, b])
        return -1 if d < 0 else d

    def good_moves(self, node: int, goal: int) -> list[int]:
        """Neighbours of ``node`` that lie on a shortest path to ``goal`` (the valid forks)."""
        d = self.dist(node, goal)
        return [v for v in self.adjacency[node] if d > 0 and self.dist(v, goal) == d - 1]

    def is_shortest_path(self, path: list[int], start: int, goal: int) -> bool:
        """True when ``path`` follows edges from ``start`` to ``goal`` in the fewest steps."""
        if not path or path[0] != start or path[-1] != goal:
            return False
        if len(path) - 1 != self.dist(start, goal):
            return False
        return all(b in self.adjacency[a] for a, b in zip(path, path[1:], strict=False))

    def split(self, name: str) -> list[tuple[int, int]]:
        if name not in self.splits:
            raise SpecError(f"unknown split {name!r}; valid splits are {sorted(self.splits)}")
        return list(self.splits[name])

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "adjacency": self.adjacency,
            "facts": [
                f"{node_name(u)} : " + " ".join(node_name(v) for v in vs)
                for u, vs in enumerate(self.adjacency)
            ],
            "colours": list(self.colours),
            "attribute_facts": [
                f"{node_name(u)} C {colour_name(c)}" for u, c in enumerate(self.colours)
            ],
            "splits": {k: [list(p) for p in v] for k, v in self.splits.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "World":
        cfg = WorldConfig(**data["config"])
        splits = {k: [tuple(p) for p in v] for k, v in data["splits"].items()}
        return cls(cfg, [list(v) for v in data["adjacency"]], splits, [int(c) for c in data["colours"]])

    def hash(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()


def _all_pairs_dist(adjacency: list[list[int]]) -> np.ndarray:
    n = len(adjacency)
    dist = np.full((n, n), -1, dtype=np.int64)
    for s in range(n):
        dist[s, s] = 0
        frontier, d = [s], 0
        while frontier:
            d += 1
            nxt = []
            for u in frontier:
                for v in adjacency[u]:
                    if dist[s, v] < 0:
                        dist[s, v] = d
                        nxt.append(v)
            frontier = nxt
    return dist


def make_world(config: WorldConfig | None = None) -> World:
    """Generate the graph, the colours and the disjoint problem splits, from the seed.

    Args:
        config: generation settings; defaults to :class:`WorldConfig` ``()``.

    Returns:
        The :class:`World`.
    """
    cfg = config or WorldConfig()
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_nodes
    adjacency = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        adjacency.append(sorted(int(v) for v in rng.choice(others, cfg.out_degree, replace=False)))
    colours = [int(c) for c in rng.integers(0, cfg.n_colours, size=n)]
    dist = _all_pairs_dist(adjacency)
    n_comp = max(1, round(cfg.comp_goal_fraction * n))
    comp_goals = {int(g) for g in rng.choice(n, n_comp, replace=False)}
    others = [v for v in range(n) if v not in comp_goals]
    n_start = max(1, round(cfg.start_fraction * len(others)))
    new_starts = {int(v) for v in rng.choice(others, n_start, replace=False)}
    pairs = [(s, g) for s in range(n) for g in range(n) if s != g and dist[s, g] > 0]
    near = [p for p in pairs if dist[p] <= cfg.max_id_dist]
    comp = [p for p in near if p[1] in comp_goals]
    starts = [p for p in near if p[1] not in comp_goals and p[0] in new_starts]
    in_dist = [p for p in near if p[1] not in comp_goals and p[0] not in new_starts]
    ood = [p for p in pairs if cfg.max_id_dist < dist[p] <= cfg.max_ood_dist and p[1] not in comp_goals]
    order = [in_dist[i] for i in rng.permutation(len(in_dist))]
    n_test = max(1, round(cfg.test_fraction * len(order)))
    n_rl = max(1, round(cfg.rl_fraction * len(order)))

    def shuffled(ps: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [ps[i] for i in rng.permutation(len(ps))]

    splits = {
        "train": order[n_test + n_rl :],
        "rl": order[n_test : n_test + n_rl],
        "test_id": order[:n_test],
        "test_ood": shuffled(ood),
        "test_comp": shuffled(comp),
        "test_start": shuffled(starts),
    }
    return World(cfg, adjacency, {k: [(int(a), int(b)) for a, b in v] for k, v in splits.items()}, colours)
