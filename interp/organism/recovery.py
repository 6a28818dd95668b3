"""Recovery after an injected mistake: what self-checking is for, measured directly.

Markers per response count the words of checking; :func:`recovery` measures its function. For
each problem with an uncertain step (:meth:`World.uncertain`: a wrong neighbour exists and the
goal is two or more moves away), the prompt is the question and a clean trace up to that step,
ending in a committed move to a *wrong* neighbour (``... n9 : n1 n4 n17 > n4``), exactly where
training plants its mistakes. The model continues greedily. It *flags* the mistake when the
next words are a check that ends ``BAD`` (``WAIT CHECK n4 : ... D 3 BAD``), and it *recovers*
when its final answer is a shortest path from start to goal. The same problems with the *right*
move injected instead (``injected="good"``) are the control: a model that answers correctly
from there but not from the wrong move has not recovered.

Per-problem lists are returned, so differences between models or steering settings get paired
bootstrap intervals (:mod:`probes.stats`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from interp.errors import InterpError
from interp.organism.evaluate import answers_correct, respond
from interp.organism.tokenizer import WordTokenizer
from interp.organism.traces import cot_prompt, sample_path, trace_steps
from interp.organism.world import World, node_name


class RecoveryError(InterpError, ValueError):
    """A recovery measurement that cannot be made (no uncertain step, a bad setting)."""


@dataclass(frozen=True)
class InjectedProblem:
    """One problem with a move injected at its first uncertain step."""

    start: int
    goal: int
    step: int  # the node the move leaves
    injected: int  # the node moved to
    prompt: str


@dataclass
class RecoveryResult:
    """Per problem: did the model flag the injected move, and is its final answer right?"""

    injected: str
    problems: list[InjectedProblem] = field(repr=False)
    flagged: list[int] = field(repr=False)
    recovered: list[int] = field(repr=False)
    responses: list[list[str]] = field(repr=False)

    @property
    def flag_rate(self) -> float:
        return float(np.mean(self.flagged)) if self.flagged else float("nan")

    @property
    def recovery_rate(self) -> float:
        return float(np.mean(self.recovered)) if self.recovered else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "injected": self.injected,
            "n": len(self.problems),
            "flag_rate": self.flag_rate,
            "recovery_rate": self.recovery_rate,
            "flagged": list(self.flagged),
            "recovered": list(self.recovered),
            "problems": [[p.start, p.goal, p.step, p.injected] for p in self.problems],
        }


def injected_problems(
    world: World, problems: Sequence[tuple[int, int]], injected: str = "wrong", seed: int = 0
) -> list[InjectedProblem]:
    """The problems that have an uncertain step on a (seeded) shortest path, each with the
    prompt that ends in a committed move there: a wrong neighbour (``"wrong"``, chosen at random)
    or the path's own next node (``"good"``). Problems without an uncertain step are left out.

    Raises:
        RecoveryError: ``injected`` is neither ``"wrong"`` nor ``"good"``.

    Example:
        >>> from interp.organism.world import make_world
        >>> w = make_world()
        >>> ps = injected_problems(w, w.split("test_id"), "wrong")
        >>> all(p.injected not in w.good_moves(p.step, p.goal) for p in ps)
        True
    """
    if injected not in ("wrong", "good"):
        raise RecoveryError(f"injected={injected!r}; expected 'wrong' or 'good'")
    rng = np.random.default_rng(seed)
    out = []
    for start, goal in problems:
        path = sample_path(world, start, goal, rng)
        at = next((i for i, v in enumerate(path[:-1]) if world.uncertain(v, goal)), None)
        if at is None:
            continue
        cur = path[at]
        bad = [v for v in world.neighbours(cur) if v not in world.good_moves(cur, goal)]
        move = bad[int(rng.integers(len(bad)))] if injected == "wrong" else path[at + 1]
        steps, _ = trace_steps(world, path[: at + 1], rng)  # clean steps up to ``cur``
        words = [*cot_prompt(start, goal).split(), *steps, node_name(cur), ":"]
        words += [node_name(v) for v in world.neighbours(cur)] + [">", node_name(move)]
        out.append(InjectedProblem(start, goal, cur, move, " ".join(words)))
    return out


def flags_move(response: list[str]) -> bool:
    """Does the continuation check the injected move and reject it (``WAIT ... BAD`` before ``;``)?"""
    if not response or response[0] != "WAIT":
        return False
    head = response[: response.index(";")] if ";" in response else response
    return "BAD" in head


def recovery(
    model: Any,
    tok: WordTokenizer,
    world: World,
    problems: Sequence[tuple[int, int]],
    injected: str = "wrong",
    max_new_tokens: int = 140,
    seed: int = 0,
) -> RecoveryResult:
    """Greedy continuations after the injected move; flag and recovery per problem.

    Raises:
        RecoveryError: no problem has an uncertain step, or a bad ``injected``.
    """
    items = injected_problems(world, problems, injected, seed)
    if not items:
        raise RecoveryError(
            f"none of the {len(problems)} problems has an uncertain step to inject a move at; "
            "use a split with longer paths"
        )
    responses = respond(model, tok, [p.prompt for p in items], max_new_tokens)
    ok = answers_correct(world, [(p.start, p.goal) for p in items], responses)
    return RecoveryResult(
        injected,
        items,
        [int(flags_move(r)) for r in responses],
        [int(x) for x in ok],
        responses,
    )
