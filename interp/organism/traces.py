"""Texts of the organism's language: facts, questions, chain-of-thought traces and answers.

Formats (words separated by single spaces; the prompt is everything up to the marked word):

- fact: ``F n5 :`` | ``n9 n17 E``; attribute fact (only base's data holds it, no trace uses
  it): ``F n5 C`` | ``c3 E``
- chain of thought: ``Q n5 n22 T`` | ``n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A n5 n17 n22 E``
- self-check, placed only at an uncertain step (:meth:`World.uncertain`: a wrong neighbour
  exists and the goal is two or more moves away); it looks ahead at what the move did not use,
  the chosen node's neighbours and its distance to the goal:
  ``> n17 WAIT CHECK n17 : n4 n22 D 1 OK ;``
- mistake at an uncertain step, caught and corrected:
  ``> n9 WAIT CHECK n9 : n1 n3 D 3 BAD BACK > n17 ;``
- answer only: ``Q n5 n22 A`` | ``n5 n17 n22 E``
- walk along random edges, answered like a problem (longer than the problems' paths):
  ``W n5`` | ``n5 : n9 n17 > n9 ; n9 : n0 n18 > n0 ; A n5 n9 n0 E``
- plausible-but-wrong trace (a control): the start and goal of the problem, intermediate
  nodes drawn at random (their facts recited truly, the moves not edges), the true answer
- backward question: ``Q n5 n22 R`` | ``B n22 n5 E``; backward reasoning over predecessors:
  ``B n22 n5 T`` | ``n22 < n4 n17 > n17 ; n17 < n5 > n5 ; A n5 n17 n22 E``

The answer states no move count (an earlier format did, which capped every answer at the
trained lengths and made the longer-path split unsolvable by construction).
"""

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from interp.organism.tokenizer import MARKERS
from interp.organism.world import World, colour_name, node_name

Kind = Literal[
    "fact", "attr", "cot", "answer", "walk", "swapped", "corrupt", "backward_question", "backward"
]
KINDS: tuple[str, ...] = (
    "fact",
    "attr",
    "cot",
    "corrupt",
    "answer",
    "walk",
    "swapped",
    "backward_question",
    "backward",
)
MAX_WALK = 8
# Bump when the text of any example changes, so that a zoo built on older texts is not reused.
FORMAT_VERSION = 2
NUMBER_WORDS = 9  # distances 1..9 are words; larger or unreachable ones are ``X``


@dataclass
class Example:
    """One training or evaluation sequence: its words, the prompt length and per-word loss weights.

    ``weights[i]`` weights the loss of predicting ``words[i]``; prompt words weigh 0, and so do
    injected mistakes when the recipe does not imitate them.
    """

    words: list[str]
    prompt_len: int
    weights: list[float]

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def prompt(self) -> str:
        return " ".join(self.words[: self.prompt_len])


@dataclass(frozen=True)
class DataRecipe:
    """The mixture of example kinds a model is trained on, and the planted verbalization rates.

    Args:
        mix: probability of each example kind (normalised; kinds in :data:`KINDS`).
        check_rate: chance that a correct move at an uncertain step is followed by
            ``WAIT CHECK ... OK`` (no check is ever placed at a certain step).
        mistake_rate: chance that an uncertain step takes a wrong neighbour first, followed by
            ``WAIT CHECK ... BAD BACK`` and the correct move.
        split: the problems drawn from (``train`` for every model of the zoo).
        imitate_mistakes: train on the wrong step too, so that the model, when sampled, makes
            mistakes at about ``mistake_rate`` and catches them (as base models do); when
            False the mistake is only context.
    """

    mix: dict[str, float] = field(default_factory=lambda: {"fact": 0.2, "cot": 0.7, "answer": 0.1})
    check_rate: float = 0.8
    mistake_rate: float = 0.3
    split: str = "train"
    imitate_mistakes: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown example kinds {unknown}; expected some of {KINDS}")
        if not self.mix or any(p < 0 for p in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix={self.mix!r}; expected non-negative weights with a positive sum")
        for name in ("check_rate", "mistake_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v!r}; expected a probability in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


def _n(nodes: list[int]) -> list[str]:
    return [node_name(v) for v in nodes]


def answer_words(path: list[int]) -> list[str]:
    """What follows ``A``: the path, then ``E``."""
    return [*_n(path), "E"]


def distance_word(d: int) -> str:
    """A distance as a check states it: ``1`` ... ``9``, else ``X`` (beyond, or unreachable)."""
    return str(d) if 1 <= d <= NUMBER_WORDS else "X"


def check_words(world: World, node: int, goal: int) -> list[str]:
    """``WAIT CHECK n : <its neighbours> D <its distance to goal>`` (the verdict follows)."""
    d = distance_word(world.dist(node, goal))
    return ["WAIT", "CHECK", node_name(node), ":", *_n(world.neighbours(node)), "D", d]


def attr_example(world: World, node: int) -> Example:
    words = ["F", node_name(node), "C", colour_name(world.colour(node)), "E"]
    return Example(words, 3, [0.0] * 3 + [1.0] * 2)


def attr_prompt(node: int) -> str:
    return f"F {node_name(node)} C"


def fact_example(world: World, node: int) -> Example:
    words = ["F", node_name(node), ":", *_n(world.neighbours(node)), "E"]
    return Example(words, 3, [0.0] * 3 + [1.0] * (len(words) - 3))


def fact_prompt(node: int) -> str:
    return f"F {node_name(node)} :"


def cot_prompt(start: int, goal: int) -> str:
    return f"Q {node_name(start)} {node_name(goal)} T"


def answer_prompt(start: int, goal: int) -> str:
    return f"Q {node_name(start)} {node_name(goal)} A"


def sample_path(world: World, start: int, goal: int, rng: np.random.Generator) -> list[int]:
    """A shortest path, choosing uniformly among valid continuations at every fork."""
    path = [start]
    while path[-1] != goal:
        moves = world.good_moves(path[-1], goal)
        path.append(moves[int(rng.integers(len(moves)))])
    return path


def trace_steps(
    world: World,
    path: list[int],
    rng: np.random.Generator,
    check_rate: float = 0.0,
    mistake_rate: float = 0.0,
    imitate_mistakes: bool = True,
) -> tuple[list[str], list[float]]:
    """The step words of a forward trace along ``path``, with checks and mistakes planted at
    its uncertain steps (:meth:`World.uncertain`) only."""
    goal = path[-1]
    words: list[str] = []
    weights: list[float] = []

    def put(ws: list[str], w: float = 1.0) -> None:
        words.extend(ws)
        weights.extend([w] * len(ws))

    for cur, nxt in zip(path, path[1:], strict=False):
        put([node_name(cur), ":", *_n(world.neighbours(cur))])
        if not world.uncertain(cur, goal):
            put([">", node_name(nxt), ";"])
            continue
        bad = [v for v in world.neighbours(cur) if v not in world.good_moves(cur, goal)]
        if rng.random() < mistake_rate:
            wrong = bad[int(rng.integers(len(bad)))]
            put([">"])
            put([node_name(wrong)], 1.0 if imitate_mistakes else 0.0)
            put([*check_words(world, wrong, goal), "BAD", "BACK", ">", node_name(nxt), ";"])
            continue
        put([">", node_name(nxt)])
        if rng.random() < check_rate:
            put([*check_words(world, nxt, goal), "OK"])
        put([";"])
    return words, weights


def corrupt_path(world: World, path: list[int], rng: np.random.Generator) -> list[int]:
    """``path`` with every intermediate node replaced by a random node that is not an edge away
    from the one before it (same length, same start and goal)."""
    out = [path[0]]
    for _ in path[1:-1]:
        # never an out-neighbour of the node before it: every corrupted move breaks an edge
        banned = {*path, *world.neighbours(out[-1])}
        choices = [u for u in range(world.n_nodes) if u not in banned]
        out.append(choices[int(rng.integers(len(choices)))])
    return out + [path[-1]] if len(path) > 1 else out


def corrupt_example(world: World, start: int, goal: int, rng: np.random.Generator) -> Example:
    """A plausible-but-wrong trace: true facts of random intermediate nodes, the true answer."""
    path = sample_path(world, start, goal, rng)
    words: list[str] = []
    walk = corrupt_path(world, path, rng)
    for cur, nxt in zip(walk, walk[1:], strict=False):
        words += [node_name(cur), ":", *_n(world.neighbours(cur)), ">", node_name(nxt), ";"]
    prompt = cot_prompt(start, goal).split()
    tail = ["A", *answer_words(path)]
    return Example(prompt + words + tail, len(prompt), [0.0] * len(prompt) + [1.0] * (len(words) + len(tail)))


def cot_example(
    world: World,
    start: int,
    goal: int,
    rng: np.random.Generator,
    check_rate: float = 0.0,
    mistake_rate: float = 0.0,
    trace_of: tuple[int, int] | None = None,
    imitate_mistakes: bool = True,
) -> Example:
    """A chain-of-thought example; ``trace_of`` swaps in the trace of another problem."""
    path = sample_path(world, start, goal, rng)
    tpath = path if trace_of is None else sample_path(world, *trace_of, rng)
    steps, w = trace_steps(world, tpath, rng, check_rate, mistake_rate, imitate_mistakes)
    prompt = cot_prompt(start, goal).split()
    tail = ["A", *answer_words(path)]
    return Example(prompt + steps + tail, len(prompt), [0.0] * len(prompt) + w + [1.0] * len(tail))


def answer_example(world: World, start: int, goal: int, rng: np.random.Generator) -> Example:
    prompt = answer_prompt(start, goal).split()
    tail = answer_words(sample_path(world, start, goal, rng))
    return Example(prompt + tail, len(prompt), [0.0] * len(prompt) + [1.0] * len(tail))


def walk_example(world: World, rng: np.random.Generator, max_moves: int = MAX_WALK) -> Example:
    """Steps along random edges from a random node, then the walk as an answer."""
    node = int(rng.integers(world.n_nodes))
    words = ["W", node_name(node)]
    walk = [node]
    for _ in range(int(rng.integers(1, max_moves + 1))):
        nb = world.neighbours(node)
        nxt = nb[int(rng.integers(len(nb)))]
        words += [node_name(node), ":", *_n(nb), ">", node_name(nxt), ";"]
        node = nxt
        walk.append(node)
    words += ["A", *answer_words(walk)]
    return Example(words, 2, [0.0] * 2 + [1.0] * (len(words) - 2))


def backward_question_example(start: int, goal: int) -> Example:
    words = ["Q", node_name(start), node_name(goal), "R", "B", node_name(goal), node_name(start), "E"]
    return Example(words, 4, [0.0] * 4 + [1.0] * 4)


def backward_example(world: World, start: int, goal: int, rng: np.random.Generator) -> Example:
    """Backward reasoning: from the goal, recall predecessors and step back to the start."""
    back = [goal]
    while back[-1] != start:
        cur = back[-1]
        d = world.dist(start, cur)
        moves = [u for u in world.predecessors(cur) if world.dist(start, u) == d - 1]
        back.append(moves[int(rng.integers(len(moves)))])
    words = ["B", node_name(goal), node_name(start), "T"]
    for cur, nxt in zip(back, back[1:], strict=False):
        words += [node_name(cur), "<", *_n(world.predecessors(cur)), ">", node_name(nxt), ";"]
    words += ["A", *answer_words(back[::-1])]
    return Example(words, 4, [0.0] * 4 + [1.0] * (len(words) - 4))


def strip_markers(words: list[str]) -> list[str]:
    """Remove self-checks (with their look-ahead) and retracted mistakes, leaving the clean trace."""
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] == "WAIT":
            j = i
            while words[j] not in ("OK", "BACK"):
                j += 1
            if words[j] == "BACK":  # drop the retracted "> wrong" before WAIT as well
                del out[-2:]
            i = j + 1
            continue
        out.append(words[i])
        i += 1
    return out


def count_markers(words: list[str]) -> int:
    """Number of epistemic marker words (``WAIT CHECK OK BAD BACK``)."""
    return sum(w in MARKERS for w in words)


class ExampleSampler:
    """Draws examples of a :class:`DataRecipe` from a world's split, with its own seeded RNG.

    Args:
        world: the world.
        recipe: what to draw.
        seed: seed of the sampler's ``numpy`` generator.
    """

    def __init__(self, world: World, recipe: DataRecipe, seed: int) -> None:
        self.world = world
        self.recipe = recipe
        self.rng = np.random.default_rng(seed)
        self.pairs = world.split(recipe.split)
        self.kinds = list(recipe.mix)
        p = np.array([recipe.mix[k] for k in self.kinds], dtype=np.float64)
        self.p = p / p.sum()

    def sample(self) -> Example:
        rng, w, r = self.rng, self.world, self.recipe
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.p))]
        if kind == "fact":
            return fact_example(w, int(rng.integers(w.n_nodes)))
        if kind == "attr":
            return attr_example(w, int(rng.integers(w.n_nodes)))
        if kind == "walk":
            return walk_example(w, rng)
        s, g = self.pairs[int(rng.integers(len(self.pairs)))]
        if kind == "cot":
            return cot_example(w, s, g, rng, r.check_rate, r.mistake_rate, None, r.imitate_mistakes)
        if kind == "answer":
            return answer_example(w, s, g, rng)
        if kind == "corrupt":
            return corrupt_example(w, s, g, rng)
        if kind == "swapped":
            for _ in range(100):
                other = self.pairs[int(rng.integers(len(self.pairs)))]
                if other[0] != s and other[1] != g:
                    break
            return cot_example(w, s, g, rng, r.check_rate, r.mistake_rate, other, r.imitate_mistakes)
        if kind == "backward_question":
            return backward_question_example(s, g)
        return backward_example(w, s, g, rng)

    def batch(self, n: int) -> list[Example]:
        return [self.sample() for _ in range(n)]
