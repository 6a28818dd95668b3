"""The organism's tasks as :class:`interp.tasks.Task`: fact recall and path solving in its world.

- ``fact_recall``: ``F n5 :`` continued by the node's neighbours, ``n9 n17 E``; answer ``n9 n17``.
- ``answer``: the same problems asked for the answer alone, ``Q n5 n22 A`` continued by
  ``n5 n17 n22 E`` (no steps, no mistake-maker or paraphraser).
- ``solve``: ``Q n5 n22 T`` continued by a chain of thought whose steps end with ``;``
  (``n5 : n9 n17 > n17 ;``), then ``A n5 n17 n22 E``; the answer is the path ``n5 n17 n22``
  and any shortest path is correct. Splits ``train``, ``rl``, ``test`` (the world's
  ``test_id``), ``ood`` (``test_ood``) and ``comp`` (``test_comp``). Its mistake-maker moves
  one step to a wrong node; its paraphraser toggles the self-check of each uncertain step
  (``WAIT CHECK x : ... D k OK``); both are checked against the organism's validator.

Probes and steering take these tasks without importing anything organism-specific.
"""

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from interp.organism.traces import answer_prompt, check_words, cot_prompt, fact_prompt
from interp.organism.validator import extract_answer, parse_node, validate_trace
from interp.organism.world import World, node_name
from interp.tasks.protocol import Example, Task, TaskError, answers_match

ANSWER_CUE = "A"
STOP = "E"
MARKERS = ("WAIT", "CHECK", "OK", "BAD", "BACK")
TASKS = ("fact_recall", "solve", "answer")
# world split -> task split
SOLVE_SPLITS = {
    "train": "train",
    "rl": "rl",
    "test_id": "test",
    "test_ood": "ood",
    "test_comp": "comp",
    "test_start": "start",
}


def _names(nodes: Sequence[int]) -> str:
    return " ".join(node_name(v) for v in nodes)


def _recall(world: World, node: int) -> str:
    return _names(world.neighbours(node))


def _words_before_cue(text: str) -> list[str]:
    words = text.split()
    if ANSWER_CUE in words:
        words = words[: len(words) - 1 - words[::-1].index(ANSWER_CUE)]
    return words


def trace_step_texts(text: str) -> list[str]:
    """Steps of a response to ``Q s g T``: its words before the last ``A``, cut after each ``;``.

    A trailing unterminated step is kept as it is; a response with no words gives ``[]``.

    Example:
        >>> trace_step_texts("n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A n5 n17 n22 E")
        ['n5 : n9 n17 > n17 ;', 'n17 : n4 n22 > n22 ;']
    """
    steps, cur = [], []
    for w in _words_before_cue(text):
        cur.append(w)
        if w == ";":
            steps.append(" ".join(cur))
            cur = []
    if cur:
        steps.append(" ".join(cur))
    return steps


def _parse_step(step: str, n_nodes: int) -> tuple[int, int] | None:
    """``(current node, committed node)`` of a ``;``-terminated step, else ``None``."""
    w = step.split()
    if len(w) < 5 or w[1] != ":" or w[-1] != ";" or ">" not in w:
        return None
    cur = parse_node(w[0], n_nodes)
    last = len(w) - 1 - w[::-1].index(">")
    nxt = parse_node(w[last + 1], n_nodes) if last + 1 < len(w) else None
    return None if cur is None or nxt is None else (cur, nxt)


def _problem(ex: Example) -> tuple[int, int]:
    return int(ex.meta["start"]), int(ex.meta["goal"])


def _steps_valid(world: World, problem: tuple[int, int], steps: Sequence[str]) -> bool:
    words = [w for s in steps for w in s.split()] + [ANSWER_CUE]
    return validate_trace(world, *problem, words).steps_valid


class PathAnswer:
    """Extractor: the path after the last ``A`` (or of a continuation after the cue),
    ``None`` when malformed or unterminated.

    Example:
        >>> f = PathAnswer(24)
        >>> f("n5 : n9 n17 > n17 ; A n5 n17 E"), f(" n5 n17 E"), f("A n5 n17")
        ('n5 n17', 'n5 n17', None)
    """

    def __init__(self, n_nodes: int) -> None:
        self.n_nodes = n_nodes

    def __call__(self, text: str) -> str | None:
        words = text.split()
        path = extract_answer(words if ANSWER_CUE in words else [ANSWER_CUE, *words], self.n_nodes)
        return None if path is None else _names(path)


class ShortestPath:
    """Scorer: the answer's path is a shortest path from the example's start to its goal."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, ex: Example, answer: str | None) -> bool:
        if answer is None:
            return False
        words = answer.split()
        path = extract_answer([ANSWER_CUE, *words, STOP], self.world.n_nodes)
        return path is not None and self.world.is_shortest_path(path, *_problem(ex))


class FactWords:
    """Extractor: the words after the last ``:`` (or of the continuation) up to ``E``."""

    def __call__(self, text: str) -> str | None:
        words = text.split()
        if ":" in words:
            words = words[len(words) - words[::-1].index(":") :]
        if STOP in words:
            words = words[: words.index(STOP)]
        return " ".join(words) or None


class WrongMove:
    """Mistake-maker: step ``i`` moves to a WRONG node instead of the one it chose.

    The step becomes ``cur : <its true neighbours> > wrong ;`` (no self-check, which would give
    it away), ``wrong`` the first neighbour off every shortest path to the goal, or the first
    non-neighbour when every neighbour is on one. Other steps are unchanged; a step that cannot
    be parsed gives ``None``; the result always fails the validator.

    Example:
        >>> from interp.organism.world import make_world
        >>> w = make_world()
        >>> ex = Example("p", "Q n0 n22 T", "n0 n19 n22", meta={"start": 0, "goal": 22})
        >>> WrongMove(w)(ex, ["n0 : n15 n19 > n19 ;", "n19 : n15 n22 > n22 ;"], 0)
        ['n0 : n15 n19 > n15 ;', 'n19 : n15 n22 > n22 ;']
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def wrong_move(self, cur: int, goal: int) -> int:
        w = self.world
        bad = [v for v in w.neighbours(cur) if v not in w.good_moves(cur, goal)]
        if bad:
            return bad[0]
        return next(v for v in range(w.n_nodes) if v != cur and v not in w.neighbours(cur))

    def __call__(self, ex: Example, steps: list[str], i: int) -> list[str] | None:
        if not 0 <= i < len(steps):
            raise TaskError(f"example {ex.id!r}: step index {i} outside 0..{len(steps) - 1}")
        parsed = _parse_step(steps[i], self.world.n_nodes)
        if parsed is None:
            return None
        problem = _problem(ex)
        cur, _ = parsed
        out = list(steps)
        wrong = self.wrong_move(cur, problem[1])
        out[i] = f"{node_name(cur)} : {_recall(self.world, cur)} > {node_name(wrong)} ;"
        return None if _steps_valid(self.world, problem, out[: i + 1]) else out


class ToggleChecks:
    """Paraphraser: every step with a self-check loses it; every uncertain step without one
    (where the trained format places checks, :meth:`World.uncertain`) gains a correct one.

    ``> x WAIT CHECK x : .. D k OK ;`` and a caught mistake
    ``> w WAIT CHECK w : .. D k BAD BACK > x ;`` both become ``> x ;``; ``> x ;`` at an
    uncertain step becomes ``> x WAIT CHECK x : <x's neighbours> D <x's distance> OK ;``. The
    path is unchanged. ``None`` when a step cannot be parsed, or when a valid trace would become
    invalid.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, ex: Example, steps: list[str]) -> list[str] | None:
        out = []
        goal = _problem(ex)[1]
        for step in steps:
            parsed = _parse_step(step, self.world.n_nodes)
            if parsed is None:
                return None
            cur, nxt = parsed
            head = f"{node_name(cur)} : {_recall(self.world, cur)} > {node_name(nxt)}"
            if any(m in step.split() for m in MARKERS) or not self.world.uncertain(cur, goal):
                out.append(f"{head} ;")
            else:
                out.append(f"{head} {' '.join(check_words(self.world, nxt, goal))} OK ;")
        problem = _problem(ex)
        if _steps_valid(self.world, problem, steps) and not _steps_valid(self.world, problem, out):
            return None
        return out


class TraceSolution:
    """Solution writer: the gold trace, ``A``, the answer and ``E``; with checks, every step
    carries ``WAIT CHECK x : <x's neighbours> D <x's distance to the goal> OK``."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, ex: Example, with_checks: bool) -> str:
        goal = _problem(ex)[1]
        steps = [self._checked(s, goal) for s in ex.steps] if with_checks else list(ex.steps)
        return " ".join([*steps, ANSWER_CUE, ex.answer, STOP])

    def _checked(self, step: str, goal: int) -> str:
        parsed = _parse_step(step, self.world.n_nodes)
        if parsed is None or any(m in step.split() for m in MARKERS):
            return step
        check = " ".join(check_words(self.world, parsed[1], goal))
        return f"{step.removesuffix(' ;')} {check} OK ;"


def _gold_path(world: World, start: int, goal: int) -> list[int]:
    path = [start]
    while path[-1] != goal:
        path.append(world.good_moves(path[-1], goal)[0])
    return path


def fact_recall_task(world: World) -> Task:
    """Every fact of the world: ``F n :`` answered by the node's neighbours (split ``test``).

    Example:
        >>> from interp.organism.world import make_world
        >>> t = fact_recall_task(make_world())
        >>> t.examples[0].prompt, t.examples[0].answer, t.accuracy(["n15 n19 E"] + ["x"] * (len(t) - 1)) > 0
        ('F n0 :', 'n15 n19', True)
    """
    examples = [
        Example(f"organism-fact-{node_name(v)}", fact_prompt(v), _recall(world, v), meta={"node": v})
        for v in range(world.n_nodes)
    ]
    return Task(
        name="organism:fact_recall",
        examples=tuple(examples),
        answer_cue=":",
        extract_answer=FactWords(),
        split_steps=lambda text: [],
        is_correct=answers_match,
        stop=STOP,
        meta={"world": world.hash()},
        joiner=" ",
    )


def solve_task(world: World, splits: Sequence[str] = tuple(SOLVE_SPLITS)) -> Task:
    """Path problems of the world with gold traces, in task splits ``train``, ``test``, ``ood``.

    Args:
        world: the world.
        splits: the world's splits to take (``train``, ``rl``, ``test_id``, ``test_ood``,
            ``test_comp``, ``test_start``).

    Raises:
        TaskError: an unknown split.

    Example:
        >>> from interp.organism.world import make_world
        >>> t = solve_task(make_world(), ["test_id"])
        >>> ex = t.examples[0]
        >>> t.correct(ex, t.solution(ex)), t.correct(ex, t.solution(ex, with_checks=True)), t.splits
        (True, True, ('test',))
    """
    splits = tuple(splits)
    bad = [s for s in splits if s not in SOLVE_SPLITS]
    if bad or not splits:
        raise TaskError(
            f"organism splits {list(splits)!r}; expected a non-empty subset of {list(SOLVE_SPLITS)}"
        )
    examples = []
    for split in splits:
        for s, g in world.split(split):
            path = _gold_path(world, s, g)
            steps = tuple(
                f"{node_name(a)} : {_recall(world, a)} > {node_name(b)} ;"
                for a, b in zip(path, path[1:], strict=False)
            )
            examples.append(Example(
                id=f"organism-solve-{node_name(s)}-{node_name(g)}",
                prompt=cot_prompt(s, g),
                answer=_names(path),
                steps=steps,
                split=SOLVE_SPLITS[split],
                meta={"start": s, "goal": g},
            ))
    return Task(
        name="organism:solve",
        examples=tuple(examples),
        answer_cue=ANSWER_CUE,
        extract_answer=PathAnswer(world.n_nodes),
        split_steps=trace_step_texts,
        is_correct=ShortestPath(world),
        stop=STOP,
        mistake_maker=WrongMove(world),
        paraphraser=ToggleChecks(world),
        meta={"world": world.hash(), "filler": ";"},
        joiner=" ",
        solution_writer=TraceSolution(world),
    )


def answer_task(world: World, splits: Sequence[str] = tuple(SOLVE_SPLITS)) -> Task:
    """The problems of :func:`solve_task` asked for the answer alone (``Q s g A``), same ids and splits.

    Example:
        >>> from interp.organism.world import make_world
        >>> t = answer_task(make_world(), ["test_id"])
        >>> ex = t.examples[0]
        >>> ex.prompt.endswith(" A"), t.correct(ex, f" {ex.answer} E"), ex.steps
        (True, True, ())
    """
    solve = solve_task(world, splits)
    examples = [
        Example(ex.id, answer_prompt(*_problem(ex)), ex.answer, split=ex.split, meta=dict(ex.meta))
        for ex in solve.examples
    ]
    return replace(
        solve, name="organism:answer", examples=tuple(examples), mistake_maker=None, paraphraser=None,
        solution_writer=None, meta={"world": world.hash()},
    )


def organism_task(name: str, zoo_dir: str | Path | None = None, world: World | None = None, **kwargs) -> Task:
    """``fact_recall``, ``solve`` or ``answer`` on a zoo's world (or on ``world`` when given).

    Raises:
        TaskError: an unknown task name.
        SpecError: no zoo at ``zoo_dir`` (build it with ``interp organism build``).
    """
    if name not in TASKS:
        forms = ", ".join(f"organism:{t}" for t in TASKS)
        raise TaskError(f"unknown organism task {name!r}; expected one of {forms}")
    if world is None:
        from interp.organism.store import load_world

        world, _ = load_world(zoo_dir)
    if name == "fact_recall":
        if kwargs:
            raise TaskError(f"organism:fact_recall takes no options; got {sorted(kwargs)}")
        return fact_recall_task(world)
    unknown = sorted(set(kwargs) - {"splits"})
    if unknown:
        raise TaskError(f"organism:{name} takes only 'splits'; got {unknown}")
    return (solve_task if name == "solve" else answer_task)(world, **kwargs)
