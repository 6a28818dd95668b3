"""The built-in ``arithmetic`` task: seeded multi-step word problems with gold step-by-step solutions.

``Tom has 7 apples. He buys 5 more, then gives away 3. How many apples does Tom have now?``
with steps ``7 + 5 = 12`` and ``12 - 3 = 9`` and the answer ``9``, written as
``Answer: 9``. Splits ``train`` and ``test`` (two or three steps, disjoint problems: a
problem's split is a hash of its numbers and operations, so no test problem is ever trained
on, whatever the seed) and ``ood`` (four or five steps, larger numbers).

Besides the plain gold solution there is a *verbalising* one (``task.solution(ex,
with_checks=True)``): every step is checked (``12 - 3 = 9. Let me check: 12 - 3 = 9.
Correct.``) and, for a seeded share of problems, one step is first got wrong and caught
(``12 - 3 = 8. Wait, let me check: 12 - 3 = 9.``).
"""

import hashlib
import random
import re
from dataclasses import dataclass

from interp.tasks.protocol import (
    Example,
    LineSteps,
    Task,
    TaskError,
    after_cue,
    answers_match,
    first_line,
)

ANSWER_CUE = "Answer:"
INSTRUCTION = (
    "Solve it step by step, one calculation per line, then give the final answer as 'Answer: <number>'."
)
NAMES = (
    ("Tom", "He"), ("Anna", "She"), ("Ben", "He"), ("Maria", "She"), ("Sam", "He"), ("Lily", "She"),
    ("Omar", "He"), ("Emma", "She"), ("Jack", "He"), ("Sofia", "She"), ("Leo", "He"), ("Mia", "She"),
)
OBJECTS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards", "shells")
PLUS = ("buys {n} more", "finds {n} more", "gets {n} more from a friend", "receives {n} more")
MINUS = ("gives away {n}", "loses {n}", "sells {n}", "gives {n} to a friend")
SPLITS = ("train", "test", "ood")
# A problem is in ``test`` when this hash of its numbers is below 1/4 (else ``train``).
TEST_SHARE = 0.25

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_BARE = re.compile(r"-?\d[\d,]*(?:\.\d+)?\.?")
_EQUATION = re.compile(r"(\d+)\s*([+\-])\s*(\d+)\s*=\s*(\d+)")
_VERBAL = re.compile(r"(\d+) (plus|minus) (\d+) is (\d+)")
_WORDS = {"+": "plus", "-": "minus"}
_SIGNS = {"plus": "+", "minus": "-"}


@dataclass(frozen=True)
class _Shape:
    steps: tuple[int, int]
    start: tuple[int, int]
    operand: tuple[int, int]


_SHAPES = {
    "train": _Shape((2, 3), (2, 20), (1, 12)),
    "test": _Shape((2, 3), (2, 20), (1, 12)),
    "ood": _Shape((4, 5), (10, 60), (2, 25)),
}


def _key_hash(start: int, ops: tuple[tuple[str, int], ...]) -> float:
    key = f"{start}|" + "|".join(f"{o}{n}" for o, n in ops)
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def _steps(start: int, ops: tuple[tuple[str, int], ...]) -> list[str]:
    out, value = [], start
    for op, n in ops:
        new = value + n if op == "+" else value - n
        out.append(f"{value} {op} {n} = {new}")
        value = new
    return out


def _text(rng: random.Random, start: int, ops: tuple[tuple[str, int], ...]) -> str:
    name, pronoun = NAMES[rng.randrange(len(NAMES))]
    obj = OBJECTS[rng.randrange(len(OBJECTS))]
    actions = [rng.choice(PLUS if op == "+" else MINUS).format(n=n) for op, n in ops]
    story = ", then ".join(actions)
    return f"{name} has {start} {obj}. {pronoun} {story}. How many {obj} does {name} have now?"


def _examples(split: str, n: int, seed: int) -> list[Example]:
    shape = _SHAPES[split]
    rng = random.Random(f"arithmetic:{seed}:{split}")
    seen: set[tuple] = set()
    out: list[Example] = []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            break
        start = rng.randint(*shape.start)
        sub = random.Random(rng.getrandbits(64))
        ops = _draw_ops(sub, start, shape)
        key = (start, ops)
        if key in seen or (split != "ood" and (_key_hash(start, ops) < TEST_SHARE) != (split == "test")):
            continue
        seen.add(key)
        steps = _steps(start, ops)
        question = _text(sub, start, ops)
        out.append(Example(
            id=f"arith-{split}-{len(out):04d}",
            prompt=({"role": "user", "content": f"{question} {INSTRUCTION}"},),
            answer=steps[-1].rsplit(" ", 1)[1],
            steps=tuple(steps),
            split=split,
            meta={"start": start, "ops": [list(o) for o in ops], "question": question},
        ))
    if len(out) < n:
        raise TaskError(f"only {len(out)} distinct {split} problems could be drawn; ask for fewer than {n}")
    return out


def _draw_ops(rng: random.Random, start: int, shape: _Shape) -> tuple[tuple[str, int], ...]:
    value, ops = start, []
    for _ in range(rng.randint(*shape.steps)):
        if value > shape.operand[0] and rng.random() < 0.5:  # never down to zero
            n = rng.randint(shape.operand[0], min(value - 1, shape.operand[1]))
            ops.append(("-", n))
            value -= n
        else:
            n = rng.randint(*shape.operand)
            ops.append(("+", n))
            value += n
    return tuple(ops)


# --- reading responses --------------------------------------------------------------------------


def _clean_number(text: str) -> str:
    text = text.replace(",", "")
    return text[:-2] if text.endswith(".0") else text


class NumberAnswer:
    """Extractor: the first number after the last cue; without a cue, a first line that is only a
    number (a continuation after the cue), else the last number of the response.

    Example:
        >>> f = NumberAnswer()
        >>> f("7 + 5 = 12\\nAnswer: 12."), f(" 9\\nthen 3 + 4 = 7"), f("so 12 - 3 = 9 apples"), f("none")
        ('12', '9', '9', None)
        >>> f("1. 7 + 5 = 12\\n2. 12 - 3 = 9")
        '9'
    """

    def __init__(self, cue: str = ANSWER_CUE) -> None:
        self.cue = cue

    def __call__(self, text: str) -> str | None:
        seg = after_cue(text, self.cue)
        if seg is not None:
            m = _NUMBER.search(seg)
            return _clean_number(m.group()) if m else None
        line = first_line(text)
        if line is not None and _BARE.fullmatch(line):
            return _clean_number(_NUMBER.match(line).group())
        found = _NUMBER.findall(text)
        return _clean_number(found[-1]) if found else None


def _example_rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


class ResultMistake:
    """Mistake-maker: the result of the first equation of step ``i`` is changed (by 1 to 3,
    seeded by the example and the step); every other step is returned unchanged.

    Example:
        >>> ex = Example("a", "q", "9", ("7 + 5 = 12", "12 - 3 = 9"))
        >>> out = ResultMistake()(ex, list(ex.steps), 1)
        >>> out[0], out[1] != "12 - 3 = 9", out[1].startswith("12 - 3 = ")
        ('7 + 5 = 12', True, True)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, ex: Example, steps: list[str], i: int) -> list[str] | None:
        if not 0 <= i < len(steps):
            raise TaskError(f"example {ex.id!r}: step index {i} outside 0..{len(steps) - 1}")
        m = _EQUATION.search(steps[i]) or _VERBAL.search(steps[i])
        if m is None:
            return None
        result = int(m.group(4))
        wrong = _wrong(result, _example_rng(self.seed, ex.id, i))
        out = list(steps)
        out[i] = steps[i][: m.start(4)] + str(wrong) + steps[i][m.end(4) :]
        return out


def _wrong(value: int, rng: random.Random) -> int:
    delta = rng.choice((1, 2, 3)) * rng.choice((1, -1))
    return value + delta if value + delta >= 0 else value + abs(delta)


class VerbalParaphrase:
    """Paraphraser: ``7 + 5 = 12`` becomes ``7 plus 5 is 12`` and back; ``None`` when no step
    holds an equation.

    Example:
        >>> VerbalParaphrase()(Example("a", "q", "9"), ["7 + 5 = 12", "12 minus 3 is 9"])
        ['7 plus 5 is 12', '12 - 3 = 9']
    """

    def __call__(self, ex: Example, steps: list[str]) -> list[str] | None:
        out = []
        for step in steps:
            if _EQUATION.search(step):
                step = _EQUATION.sub(lambda m: f"{m[1]} {_WORDS[m[2]]} {m[3]} is {m[4]}", step)
            else:
                step = _VERBAL.sub(lambda m: f"{m[1]} {_SIGNS[m[2]]} {m[3]} = {m[4]}", step)
            out.append(step)
        return None if out == list(steps) else out


class CheckedSolution:
    """Solution writer: the plain gold solution, or (``with_checks``) the verbalising one.

    In the verbalising format every step is followed by ``Let me check: ... Correct.``; in a
    ``mistake_rate`` share of problems (seeded by the example's id) one step is first written
    with a wrong result and caught: ``12 - 3 = 8. Wait, let me check: 12 - 3 = 9.``

    Example:
        >>> ex = Example("arith-test-0000", "q", "9", ("7 + 5 = 12", "12 - 3 = 9"))
        >>> print(CheckedSolution(mistake_rate=0.0)(ex, True))
        7 + 5 = 12. Let me check: 7 + 5 = 12. Correct.
        12 - 3 = 9. Let me check: 12 - 3 = 9. Correct.
        Answer: 9
    """

    def __init__(self, mistake_rate: float = 0.3, seed: int = 0) -> None:
        if not isinstance(mistake_rate, int | float) or not 0.0 <= mistake_rate <= 1.0:
            raise TaskError(f"mistake_rate={mistake_rate!r}; expected a probability in [0, 1]")
        self.mistake_rate, self.seed = float(mistake_rate), seed

    def __call__(self, ex: Example, with_checks: bool) -> str:
        tail = f"{ANSWER_CUE} {ex.answer}"
        if not with_checks:
            return "\n".join([*ex.steps, tail])
        rng = _example_rng(self.seed, "checks", ex.id)
        slip = rng.randrange(len(ex.steps)) if ex.steps and rng.random() < self.mistake_rate else -1
        lines = []
        for i, step in enumerate(ex.steps):
            m = _EQUATION.search(step)
            if i == slip and m is not None:
                wrong = step[: m.start(4)] + str(_wrong(int(m.group(4)), rng)) + step[m.end(4) :]
                lines.append(f"{wrong}. Wait, let me check: {step}.")
            else:
                lines.append(f"{step}. Let me check: {step}. Correct.")
        return "\n".join([*lines, tail])


def arithmetic_task(
    n: int = 100,
    seed: int = 0,
    splits: tuple[str, ...] = SPLITS,
    mistake_rate: float = 0.3,
) -> Task:
    """Seeded word problems with gold steps, ``n`` per split.

    The same ``seed`` and ``n`` give the same examples; a split's problems do not depend on the
    other splits' sizes, and ``train`` and ``test`` never share a problem (the same numbers and
    operations), whatever the seeds.

    Args:
        n: problems per split.
        seed: seed of the problems and their wording.
        splits: which of ``train``, ``test``, ``ood`` to make.
        mistake_rate: share of problems whose verbalising solution catches a mistake.

    Returns:
        A :class:`Task` named ``arithmetic`` with cue ``Answer:``, a number extractor, a line
        splitter, :class:`ResultMistake`, :class:`VerbalParaphrase` and :class:`CheckedSolution`.

    Raises:
        TaskError: a bad ``n``, split or ``mistake_rate``.

    Example:
        >>> t = arithmetic_task(n=2)
        >>> first = t.split("test").examples[0]
        >>> [ex.id for ex in t.split("test")], first == arithmetic_task(n=5).split("test").examples[0]
        (['arith-test-0000', 'arith-test-0001'], True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise TaskError(f"arithmetic n={n!r}; expected an integer in 1..100000")
    splits = tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if not splits or bad:
        raise TaskError(f"arithmetic splits {list(splits)!r}; expected a non-empty subset of {list(SPLITS)}")
    writer = CheckedSolution(mistake_rate, seed)
    examples = [ex for split in splits for ex in _examples(split, n, seed)]
    return Task(
        name="arithmetic",
        examples=tuple(examples),
        answer_cue=ANSWER_CUE,
        extract_answer=NumberAnswer(ANSWER_CUE),
        split_steps=LineSteps(ANSWER_CUE),
        is_correct=answers_match,
        mistake_maker=ResultMistake(seed),
        paraphraser=VerbalParaphrase(),
        meta={"seed": seed, "n": n, "mistake_rate": mistake_rate},
        solution_writer=writer,
    )
