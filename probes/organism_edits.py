"""The model organism as a :class:`~probes.faithfulness.CotTask`: its own traces split into steps,
a mistake-maker and a paraphraser, both checked against the organism's validator.

A forward trace (``n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A 2 n5 n17 n22 E``) splits into
steps at ``;``; a step may carry a self-check (``> n17 WAIT CHECK n17 : n4 n22 OK ;``) or a
caught mistake (``> n9 WAIT CHECK n9 : n1 n3 BAD BACK > n17 ;``). The filler word is ``;``:
the step separator, a trained input that names no node, so it carries no information about
the path (``_``, the other content-free word, never occurs in training: its embedding is
untrained, which would test an unseen token rather than the absence of reasoning).
"""

import logging
from collections.abc import Sequence
from typing import Any, Literal

from interp.organism.traces import cot_prompt
from interp.organism.validator import extract_answer, parse_node, validate_trace
from interp.organism.world import World, node_name
from probes.faithfulness import CotTask, ModelCompleter

log = logging.getLogger(__name__)

ANSWER_CUE = "A"
FILLER = ";"
STOP = "E"
MARKERS = ("WAIT", "CHECK", "OK", "BAD", "BACK")


def organism_steps(words: Sequence[str]) -> list[str]:
    """Split a response to ``Q s g T`` into its chain-of-thought steps (the words before ``A``).

    Args:
        words: the response's words (``n5 : n9 n17 > n17 ; A 1 n5 n17 E``).

    Returns:
        The steps, each ending with ``;`` (a trailing unterminated step is kept as it is).

    Raises:
        ValueError: an empty response, one without the answer marker ``A``, or one with no
            step before it.

    Example:
        >>> organism_steps("n5 : n9 n17 > n17 ; n17 : n4 n22 > n22 ; A 2 n5 n17 n22 E".split())
        ['n5 : n9 n17 > n17 ;', 'n17 : n4 n22 > n22 ;']
    """
    words = list(words)
    if not words:
        raise ValueError("empty trace: expected the words of a response like 'n5 : n9 n17 > n17 ; A ...'")
    if ANSWER_CUE not in words:
        raise ValueError(
            f"trace without the answer marker {ANSWER_CUE!r}: {' '.join(words[:24])!r}; "
            "expected steps, then 'A <moves> <path> E'"
        )
    cot = words[: words.index(ANSWER_CUE)]
    steps, cur = [], []
    for w in cot:
        cur.append(w)
        if w == ";":
            steps.append(" ".join(cur))
            cur = []
    if cur:
        steps.append(" ".join(cur))
    if not steps:
        raise ValueError(f"trace has no chain of thought before {ANSWER_CUE!r}: {' '.join(words[:24])!r}")
    return steps


def _words(steps: Sequence[str]) -> list[str]:
    return [w for s in steps for w in s.split()]


def _parse(step: str, n_nodes: int) -> tuple[int, int] | None:
    """``(current node, committed node)`` of a ``;``-terminated step, else ``None``."""
    w = step.split()
    if len(w) < 5 or w[1] != ":" or w[-1] != ";" or ">" not in w:
        return None
    cur = parse_node(w[0], n_nodes)
    last = len(w) - 1 - w[::-1].index(">")
    nxt = parse_node(w[last + 1], n_nodes) if last + 1 < len(w) else None
    return None if cur is None or nxt is None else (cur, nxt)


def _recall(world: World, node: int) -> str:
    return " ".join(node_name(v) for v in world.neighbours(node))


class OrganismMistake:
    """Mistake-maker: step ``i`` moves to a WRONG node instead of the one it chose.

    The corrupted step is ``cur : <its true neighbours> > wrong ;`` (no self-check, which would
    give the mistake away), where ``wrong`` is the first neighbour of ``cur`` off every
    shortest path to the goal, or, when every neighbour is on one, the first node that is not
    a neighbour. The returned trace (steps after ``i`` kept) fails the validator; a step that
    cannot be parsed gives ``None``.

    Args:
        world: the organism's world.

    Example:
        >>> from interp.organism.world import make_world
        >>> w = make_world()
        >>> OrganismMistake(w)((0, 22), ["n0 : n15 n19 > n19 ;", "n19 : n15 n22 > n22 ;"], 0)
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

    def __call__(self, problem: tuple[int, int], steps: list[str], i: int) -> list[str] | None:
        if not 0 <= i < len(steps):
            raise ValueError(f"step index {i} outside 0..{len(steps) - 1}")
        parsed = _parse(steps[i], self.world.n_nodes)
        if parsed is None:
            return None
        cur, _ = parsed
        wrong = self.wrong_move(cur, problem[1])
        out = list(steps)
        out[i] = f"{node_name(cur)} : {_recall(self.world, cur)} > {node_name(wrong)} ;"
        if validate_trace(self.world, *problem, _words(out[: i + 1]) + [ANSWER_CUE]).steps_valid:
            return None  # cannot happen for a wrong move; kept so a mistake is never valid
        return out


class OrganismParaphrase:
    """Paraphraser: toggle every step's self-check, an equivalent re-serialisation.

    A step with markers loses them (``> x WAIT CHECK x : .. OK ;`` and a caught mistake
    ``> w WAIT CHECK w : .. BAD BACK > x ;`` both become ``> x ;``); a step without gains a
    correct ``WAIT CHECK x : <x's neighbours> OK``. The path, and so the answer, is unchanged,
    and both forms occur in the base model's training data. Gives ``None`` when a step cannot
    be parsed, or when the original trace is valid and the paraphrase is not (checked by the
    validator).

    Args:
        world: the organism's world.

    Example:
        >>> from interp.organism.world import make_world
        >>> w = make_world()
        >>> steps = ["n0 : n15 n19 > n19 ;", "n19 : n15 n22 > n22 WAIT CHECK n22 : n12 n16 OK ;"]
        >>> OrganismParaphrase(w)((0, 22), steps)
        ['n0 : n15 n19 > n19 WAIT CHECK n19 : n15 n22 OK ;', 'n19 : n15 n22 > n22 ;']
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, problem: tuple[int, int], steps: list[str]) -> list[str] | None:
        out = []
        for step in steps:
            parsed = _parse(step, self.world.n_nodes)
            if parsed is None:
                return None
            cur, nxt = parsed
            head = f"{node_name(cur)} : {_recall(self.world, cur)} > {node_name(nxt)}"
            if any(m in step.split() for m in MARKERS):
                out.append(f"{head} ;")
            else:
                out.append(f"{head} WAIT CHECK {node_name(nxt)} : {_recall(self.world, nxt)} OK ;")
        before = validate_trace(self.world, *problem, _words(steps) + [ANSWER_CUE]).steps_valid
        after = validate_trace(self.world, *problem, _words(out) + [ANSWER_CUE]).steps_valid
        return None if before and not after else out


class _ReadAnswer:
    def __init__(self, n_nodes: int) -> None:
        self.n_nodes = n_nodes

    def __call__(self, text: str) -> tuple[int, ...] | None:
        path = extract_answer([ANSWER_CUE, *text.split()], self.n_nodes)
        return tuple(path) if path is not None else None


class _IsShortest:
    def __init__(self, world: World, problems: Sequence[tuple[int, int]]) -> None:
        self.world, self.problems = world, list(problems)

    def __call__(self, i: int, answer: Any) -> bool:
        return answer is not None and self.world.is_shortest_path(list(answer), *self.problems[i])


def organism_task(
    model: Any,
    world: World,
    tok: Any | None,
    problems: Sequence[tuple[int, int]],
    max_new_tokens: int = 120,
    on_bad_trace: Literal["skip", "raise"] = "skip",
    batch_size: int = 64,
) -> CotTask:
    """The organism's own greedy traces on ``problems``, as a :class:`CotTask`.

    Args:
        model: a :class:`~interp.models.Model` or a ``HookedTransformer``.
        world: the world it was trained on.
        tok: its tokenizer (``None``: the model's own).
        problems: ``(start, goal)`` pairs, e.g. ``world.split("test_id")``.
        max_new_tokens: generation budget of a trace.
        on_bad_trace: what to do with a response that has no answer marker or no step
            before it: leave the problem out (counted in ``task.meta``) or raise.
        batch_size: most sequences per forward pass.

    Returns:
        A task with cue ``A``, stop ``E``, filler ``;``, answers read as node tuples,
        correctness as "a shortest path", :class:`OrganismMistake` and :class:`OrganismParaphrase`.

    Raises:
        ValueError: no problems, a node outside the world, every trace unusable, or (with
            ``on_bad_trace="raise"``) one unusable trace.
    """
    from interp.models import Model, load_model

    if on_bad_trace not in ("skip", "raise"):
        raise ValueError(f"on_bad_trace={on_bad_trace!r}; expected 'skip' or 'raise'")
    problems = [(int(s), int(g)) for s, g in problems]
    if not problems:
        raise ValueError("no problems given; expected (start, goal) pairs such as world.split('test_id')")
    bad = [p for p in problems if not all(0 <= v < world.n_nodes for v in p)]
    if bad:
        raise ValueError(f"problems {bad[:5]} name nodes outside 0..{world.n_nodes - 1}")
    m = load_model(model)
    if tok is not None:
        m = Model(m.module, tok, m.spec)
    prompts = [cot_prompt(s, g) for s, g in problems]
    responses = ModelCompleter(m, batch_size).complete(prompts, max_new_tokens, STOP)
    kept, steps, errors = [], [], []
    for p, prompt, resp in zip(problems, prompts, responses, strict=True):
        try:
            steps.append(organism_steps(resp.split()))
            kept.append(p)
        except ValueError as exc:
            if on_bad_trace == "raise":
                raise ValueError(f"problem {prompt!r}: {exc}") from None
            errors.append(f"{prompt}: {exc}")
    if errors:
        log.info("left out %d of %d problems whose trace is unusable", len(errors), len(problems))
    if not kept:
        raise ValueError(f"no usable trace among {len(problems)} problems; first: {errors[0]}")
    return CotTask(
        prompts=[cot_prompt(s, g) for s, g in kept],
        steps=steps,
        answer_cue=ANSWER_CUE,
        extract_answer=_ReadAnswer(world.n_nodes),
        is_correct=_IsShortest(world, kept),
        problems=kept,
        joiner=" ",
        filler=FILLER,
        stop=STOP,
        mistake_maker=OrganismMistake(world),
        paraphraser=OrganismParaphrase(world),
        meta={"n_generated": len(problems), "n_skipped": len(errors), "world": world.hash()},
    )
