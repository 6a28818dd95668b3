"""Texts of the organism's language: facts, questions, chain-of-thought traces and answers.

Formats (words separated by single spaces; the prompt is everything up to the marked word):

- fact: ``F n5 :`` | ``n9 n17 E``
- chain of thought: ``Q n5 n22 T`` | ``n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A n5 n17 n22 E``
- self-check on a step: ``> n17 WAIT CHECK n17 : n4 n22 OK ;``
- injected mistake, caught and corrected: ``> n9 WAIT CHECK n9 : n1 n3 BAD BACK > n17 ;``
- answer only: ``Q n5 n22 A`` | ``n5 n17 n22 E``
- backward question: ``Q n5 n22 R`` | ``B n22 n5 E``; backward reasoning over predecessors:
  ``B n22 n5 T`` | ``n22 < n4 n17 > n17 ; n17 < n5 > n5 ; A n5 n17 n22 E``
"""

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from interp.organism.tokenizer import MARKERS
from interp.organism.world import World, node_name

Kind = Literal["fact", "cot", "answer", "swapped", "backward_question", "backward"]
KINDS: tuple[str, ...] = ("fact", "cot", "answer", "swapped", "backward_question", "backward")


@dataclass
class Example:
    """One training or evaluation sequence: its words, the prompt length and per-word loss weights.

    ``weights[i]`` weights the loss of predicting ``words[i]``; prompt words and injected mistakes
    weigh 0 (the model sees the mistake in context but is not taught to make it).
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
        check_rate: chance that a correct step is followed by ``WAIT CHECK ... OK``.
        mistake_rate: chance that a step with a wrong alternative takes it first, followed by
            ``WAIT CHECK ... BAD BACK`` and the correct step.
        split: the problems drawn from (``train`` for every model of the zoo).
    """

    mix: dict[str, float] = field(default_factory=lambda: {"fact": 0.2, "cot": 0.7, "answer": 0.1})
    check_rate: float = 0.6
    mistake_rate: float = 0.2
    split: str = "train"

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
) -> tuple[list[str], list[float]]:
    """The step words of a forward trace along ``path``, with planted checks and mistakes."""
    goal = path[-1]
    words: list[str] = []
    weights: list[float] = []

    def put(ws: list[str], w: float = 1.0) -> None:
        words.extend(ws)
        weights.extend([w] * len(ws))

    for cur, nxt in zip(path, path[1:], strict=False):
        put([node_name(cur), ":", *_n(world.neighbours(cur))])
        bad = [v for v in world.neighbours(cur) if v not in world.good_moves(cur, goal)]
        if bad and rng.random() < mistake_rate:
            wrong = bad[int(rng.integers(len(bad)))]
            put([">"])
            put([node_name(wrong)], 0.0)
            put(["WAIT", "CHECK", node_name(wrong), ":", *_n(world.neighbours(wrong))])
            put(["BAD", "BACK", ">", node_name(nxt), ";"])
            continue
        put([">", node_name(nxt)])
        if rng.random() < check_rate:
            put(["WAIT", "CHECK", node_name(nxt), ":", *_n(world.neighbours(nxt)), "OK"])
        put([";"])
    return words, weights


def cot_example(
    world: World,
    start: int,
    goal: int,
    rng: np.random.Generator,
    check_rate: float = 0.0,
    mistake_rate: float = 0.0,
    trace_of: tuple[int, int] | None = None,
) -> Example:
    """A chain-of-thought example; ``trace_of`` swaps in the trace of another problem."""
    path = sample_path(world, start, goal, rng)
    tpath = path if trace_of is None else sample_path(world, *trace_of, rng)
    steps, w = trace_steps(world, tpath, rng, check_rate, mistake_rate)
    prompt = cot_prompt(start, goal).split()
    tail = ["A", *_n(path), "E"]
    return Example(prompt + steps + tail, len(prompt), [0.0] * len(prompt) + w + [1.0] * len(tail))


def answer_example(world: World, start: int, goal: int, rng: np.random.Generator) -> Example:
    prompt = answer_prompt(start, goal).split()
    tail = [*_n(sample_path(world, start, goal, rng)), "E"]
    return Example(prompt + tail, len(prompt), [0.0] * len(prompt) + [1.0] * len(tail))


def backward_question_example(start: int, goal: int) -> Example:
    words = ["Q", node_name(start), node_name(goal), "R", "B", node_name(goal), node_name(start), "E"]
    return Example(words, 4, [0.0] * 4 + [1.0] * 4)


def backward_example(world: World, start: int, goal: int, rng: np.random.Generator) -> Example:
    """Backward reasoning: from the goal, recall predecessors and step back to the start."""
    path = sample_path(world, start, goal, rng)
    back = [goal]
    while back[-1] != start:
        cur = back[-1]
        d = world.dist(start, cur)
        moves = [u for u in world.predecessors(cur) if world.dist(start, u) == d - 1]
        back.append(moves[int(rng.integers(len(moves)))])
    words = ["B", node_name(goal), node_name(start), "T"]
    for cur, nxt in zip(back, back[1:], strict=False):
        words += [node_name(cur), "<", *_n(world.predecessors(cur)), ">", node_name(nxt), ";"]
    words += ["A", *_n(back[::-1]), "E"]
    del path
    return Example(words, 4, [0.0] * 4 + [1.0] * (len(words) - 4))


def strip_markers(words: list[str]) -> list[str]:
    """Remove self-checks and retracted mistakes, leaving the clean trace."""
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
        s, g = self.pairs[int(rng.integers(len(self.pairs)))]
        if kind == "cot":
            return cot_example(w, s, g, rng, r.check_rate, r.mistake_rate)
        if kind == "answer":
            return answer_example(w, s, g, rng)
        if kind == "swapped":
            for _ in range(100):
                other = self.pairs[int(rng.integers(len(self.pairs)))]
                if other[0] != s and other[1] != g:
                    break
            return cot_example(w, s, g, rng, r.check_rate, r.mistake_rate, trace_of=other)
        if kind == "backward_question":
            return backward_question_example(s, g)
        return backward_example(w, s, g, rng)

    def batch(self, n: int) -> list[Example]:
        return [self.sample() for _ in range(n)]
