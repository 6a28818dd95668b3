"""The synthetic world: a fixed random directed graph whose edges are the facts to recall.

A problem is an ordered pair ``(start, goal)``; its answer is any shortest path from start to
goal. Problems are split, disjointly, into ``train`` and ``test_id`` (distances
``1..max_id_dist``) and ``test_ood`` (longer distances, never trained on).
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from interp.errors import SpecError

SPLITS = ("train", "test_id", "test_ood")


@dataclass(frozen=True)
class WorldConfig:
    """How the world is generated.

    Args:
        n_nodes: number of graph nodes (named ``n0`` ... ``n{n_nodes-1}``).
        out_degree: distinct out-neighbours per node (no self loops).
        max_id_dist: longest shortest-path length (edges) of in-distribution problems.
        max_ood_dist: longest path length of the out-of-distribution split.
        test_fraction: share of in-distribution problems held out as ``test_id``.
        seed: seed of the graph and of the split.
    """

    n_nodes: int = 24
    out_degree: int = 2
    max_id_dist: int = 4
    max_ood_dist: int = 6
    test_fraction: float = 0.25
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
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction!r}; expected in (0, 1)")


def node_name(i: int) -> str:
    return f"n{i}"


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
    _dist: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._dist = _all_pairs_dist(self.adjacency)

    @property
    def n_nodes(self) -> int:
        return len(self.adjacency)

    def neighbours(self, node: int) -> list[int]:
        """Out-neighbours of ``node``, sorted (the fact ``n{node} : ...``)."""
        return list(self.adjacency[node])

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
            "splits": {k: [list(p) for p in v] for k, v in self.splits.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "World":
        cfg = WorldConfig(**data["config"])
        splits = {k: [tuple(p) for p in v] for k, v in data["splits"].items()}
        return cls(cfg, [list(v) for v in data["adjacency"]], splits)

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
    """Generate the graph and the disjoint problem splits, deterministically from the seed.

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
    dist = _all_pairs_dist(adjacency)
    in_dist = [(s, g) for s in range(n) for g in range(n) if s != g and 1 <= dist[s, g] <= cfg.max_id_dist]
    ood = [(s, g) for s in range(n) for g in range(n) if cfg.max_id_dist < dist[s, g] <= cfg.max_ood_dist]
    order = rng.permutation(len(in_dist))
    n_test = max(1, round(cfg.test_fraction * len(in_dist)))
    test_id = sorted(in_dist[i] for i in order[:n_test])
    train = sorted(in_dist[i] for i in order[n_test:])
    return World(cfg, adjacency, {"train": train, "test_id": test_id, "test_ood": sorted(ood)})
