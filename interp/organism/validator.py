"""Step-by-step checking of a forward chain-of-thought trace and of its final answer."""

from dataclasses import dataclass

from interp.organism.traces import distance_word
from interp.organism.world import World, node_name

# Longest trace the validator follows past the problem's distance before calling it a loop.
_SLACK = 4


@dataclass(frozen=True)
class TraceCheck:
    """The verdict on one response.

    Attributes:
        steps_valid: every recalled fact is right, every committed step follows an edge on a
            shortest path (retracted mistakes must be truly wrong), and the trace reaches the goal.
        answer: the nodes after the last ``A`` (``None`` when there is no well-formed answer).
        answer_correct: the answer is a shortest path from start to goal.
        valid: ``steps_valid`` and ``answer_correct`` and the answer is the trace's own path.
        error: why it is not valid (``None`` when valid), naming the step.
        n_steps: committed steps read.
    """

    steps_valid: bool
    answer: list[int] | None
    answer_correct: bool
    valid: bool
    error: str | None
    n_steps: int


def parse_node(word: str, n_nodes: int) -> int | None:
    if len(word) > 1 and word[0] == "n" and word[1:].isdigit():
        v = int(word[1:])
        return v if v < n_nodes else None
    return None


def extract_answer(words: list[str], n_nodes: int) -> list[int] | None:
    """The path of the answer after the last ``A`` (``A <nodes> E``).

    Returns ``None`` when there is no answer, or it is empty, malformed or unterminated.

    Example:
        >>> extract_answer("A n5 n17 n22 E".split(), 24), extract_answer("A n5 n22".split(), 24)
        ([5, 17, 22], None)
    """
    if "A" not in words:
        return None
    i = len(words) - 1 - words[::-1].index("A")
    out = []
    for w in words[i + 1 :]:
        if w == "E":
            return out or None
        v = parse_node(w, n_nodes)
        if v is None:
            return None
        out.append(v)
    return None


class _Reject(Exception):
    pass


class _Reader:
    def __init__(self, world: World, words: list[str]) -> None:
        self.world, self.words, self.i = world, words, 0

    def peek(self) -> str | None:
        return self.words[self.i] if self.i < len(self.words) else None

    def take(self, expected: str | None = None) -> str:
        w = self.peek()
        if w is None:
            hint = f", expected {expected!r}" if expected else ""
            raise _Reject(f"trace ends early at word {self.i}{hint}")
        if expected is not None and w != expected:
            raise _Reject(f"word {self.i} is {w!r}, expected {expected!r}")
        self.i += 1
        return w

    def node(self) -> int:
        w = self.take()
        v = parse_node(w, self.world.n_nodes)
        if v is None:
            raise _Reject(f"word {self.i - 1} is {w!r}, expected a node")
        return v

    def recall(self, node: int, stops: tuple[str, ...]) -> None:
        got = []
        while self.peek() is not None and self.peek() not in stops:
            got.append(self.node())
        if got != self.world.neighbours(node):
            true = " ".join(node_name(v) for v in self.world.neighbours(node))
            raise _Reject(
                f"wrong fact: recalled {node_name(node)} : "
                f"{' '.join(node_name(v) for v in got)}, the fact is {node_name(node)} : {true}"
            )


def _step(r: _Reader, cur: int, goal: int, k: int) -> int:
    w = r.world
    start_word = r.take()
    if parse_node(start_word, w.n_nodes) != cur:
        raise _Reject(f"skipped step: step {k} starts at {start_word!r}, expected {node_name(cur)}")
    r.take(":")
    r.recall(cur, (">",))
    while True:
        r.take(">")
        x = r.node()
        if x not in w.neighbours(cur):
            raise _Reject(f"wrong edge: step {k} moves {node_name(cur)} > {node_name(x)}, not a fact")
        good = x in w.good_moves(cur, goal)
        if r.peek() != "WAIT":
            break
        r.take("WAIT")
        r.take("CHECK")
        if r.node() != x:
            raise _Reject(f"step {k}: CHECK names another node than {node_name(x)}")
        r.take(":")
        r.recall(x, ("D",))
        r.take("D")
        stated, true = r.take(), distance_word(w.dist(x, goal))
        if stated != true:
            raise _Reject(
                f"step {k}: check states distance {stated} for {node_name(x)}, the true one is {true}"
            )
        verdict = r.take()
        if verdict == "OK":
            if not good:
                raise _Reject(f"step {k}: check passed {node_name(x)}, which is off every shortest path")
            break
        if verdict != "BAD":
            raise _Reject(f"step {k}: check ends with {verdict!r}, expected 'OK' or 'BAD'")
        if good:
            raise _Reject(f"step {k}: check rejected {node_name(x)}, which is on a shortest path")
        r.take("BACK")
    if not good:
        raise _Reject(f"wrong turn: step {k} moves to {node_name(x)}, off every shortest path")
    r.take(";")
    return x


def validate_trace(world: World, start: int, goal: int, words: list[str]) -> TraceCheck:
    """Check a response to ``Q start goal T`` step by step.

    Args:
        world: the world the problem comes from.
        start: the start node.
        goal: the goal node.
        words: the response's words after the prompt (``n5 : n9 n17 > n17 ; ... A ... E``).
            A check must state the checked node's true neighbours and distance to the goal.

    Returns:
        A :class:`TraceCheck` whose ``error`` names the first bad step: a wrong fact, a wrong
        edge, a skipped step, a wrong turn, a wrong check or a wrong answer.

    Example:
        >>> from interp.organism.world import make_world
        >>> w = make_world()
        >>> s, g = w.split("test_id")[0]
        >>> v = validate_trace(w, s, g, ["A", "n0", "E"])
        >>> v.valid, v.error.startswith("trace stops")
        (False, True)
    """
    r = _Reader(world, list(words))
    cur, path, error = start, [start], None
    limit = max(world.dist(start, goal), 0) + _SLACK
    try:
        while r.peek() != "A":
            if len(path) > limit:
                raise _Reject(f"trace runs past {limit} steps without reaching the goal")
            cur = _step(r, cur, goal, len(path))
            path.append(cur)
            if r.peek() is None:
                raise _Reject("trace ends without an answer")
        if cur != goal:
            raise _Reject(f"trace stops at {node_name(cur)} before reaching {node_name(goal)}")
    except _Reject as exc:
        error = str(exc)
    steps_valid = error is None
    answer = extract_answer(list(words), world.n_nodes)
    answer_correct = answer is not None and world.is_shortest_path(answer, start, goal)
    if steps_valid and not answer_correct:
        error = "wrong answer: " + (
            " ".join(node_name(v) for v in answer) if answer else "no well-formed answer"
        )
    elif steps_valid and answer != path:
        error = "answer differs from the trace's path"
    valid = error is None
    return TraceCheck(steps_valid, answer, answer_correct, valid, error, len(path) - 1)
