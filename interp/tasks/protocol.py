"""The :class:`Task` protocol: what a probe or a steering sweep measures, whatever the model's world.

A task is a tuple of :class:`Example` (a prompt, plain text or chat messages; a gold answer;
optionally gold reasoning steps; a split name) and the functions that read a response: the
answer extractor, the step splitter and the scorer, with an optional mistake-maker and
paraphraser for the chain-of-thought faithfulness tests. Probes and steering take a task and
never know whether it came from the organism, a built-in real-model task or a user's file.

Response texts are the assistant's side only: steps joined by ``task.joiner``, then
``task.answer_cue`` and the answer (``"7 + 5 = 12\\n12 - 3 = 9\\nAnswer: 9"``). Prompts are
rendered into token ids by :mod:`interp.tasks.render` (through the model's chat template for
messages).
"""

import hashlib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from interp.errors import SpecError

ROLES = ("system", "user", "assistant")

Message = dict[str, str]
Prompt = str | tuple[Message, ...]


class TaskError(SpecError):
    """A task, example or task file that cannot be used (bad field, empty split, bad spec)."""


def check_messages(messages: Any, where: str = "messages") -> tuple[Message, ...]:
    """Validate chat messages and return them as a tuple of fresh dicts.

    Args:
        messages: a non-empty list or tuple of ``{"role": ..., "content": ...}`` with a role in
            :data:`ROLES` and string content (other string-valued keys are kept).
        where: what to call them in an error (a file and line, an example id).

    Raises:
        TaskError: anything else, naming ``where`` and the message at fault.

    Example:
        >>> check_messages([{"role": "user", "content": "Hi"}])
        ({'role': 'user', 'content': 'Hi'},)
    """
    if isinstance(messages, str | bytes | dict) or not isinstance(messages, Sequence) or not messages:
        raise TaskError(
            f"{where}: expected a non-empty list of {{'role', 'content'}} messages, got "
            f"{_short(messages)}"
        )
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise TaskError(
                f"{where}: message {i} is {_short(m)}; expected {{'role': ..., 'content': '...'}}"
            )
        if m.get("role") not in ROLES:
            raise TaskError(f"{where}: message {i} has role {m.get('role')!r}; expected one of {ROLES}")
        bad = [k for k, v in m.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TaskError(f"{where}: message {i} has non-string field {bad[0]!r}; expected strings")
        out.append(dict(m))
    return tuple(out)


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def check_prompt(prompt: Any, where: str = "prompt") -> Prompt:
    """A non-empty string, or chat messages (see :func:`check_messages`), normalised to a :data:`Prompt`."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise TaskError(f"{where}: empty prompt; expected text or chat messages")
        return prompt
    return check_messages(prompt, where)


@dataclass(frozen=True)
class Example:
    """One question of a task.

    Args:
        id: a stable identifier, unique within its task (``arith-test-0007``).
        prompt: the question, plain text or chat messages (a list is turned into a tuple).
        answer: the gold final answer (``"42"``, ``"Paris"``).
        steps: gold reasoning steps, when the task has them.
        split: ``train``, ``test``, ``rehearsed``, ``heldout``, ``ood``, ...
        meta: free-form data (aliases of the answer, the numbers of a problem, ...).

    Raises:
        TaskError: an empty id, prompt, answer or step, malformed messages, or a split that is
            not a non-empty word.

    Example:
        >>> Example("q1", [{"role": "user", "content": "2 + 2?"}], "4").prompt
        ({'role': 'user', 'content': '2 + 2?'},)
    """

    id: str
    prompt: Prompt | Sequence[Message]  # a list of messages is stored as a tuple
    answer: str
    steps: Sequence[str] = ()  # stored as a tuple
    split: str = "test"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise TaskError(f"example id {self.id!r}; expected a non-empty string")
        where = f"example {self.id!r}"
        object.__setattr__(self, "prompt", check_prompt(self.prompt, where))
        if not isinstance(self.answer, str) or not self.answer.strip():
            raise TaskError(f"{where}: answer {self.answer!r}; expected a non-empty string")
        if isinstance(self.steps, str) or not isinstance(self.steps, Sequence):
            raise TaskError(f"{where}: steps {_short(self.steps)}; expected a list of strings")
        steps = tuple(self.steps)
        for i, s in enumerate(steps):
            if not isinstance(s, str) or not s.strip():
                raise TaskError(f"{where}: step {i} is {_short(s)}; expected non-empty text")
        object.__setattr__(self, "steps", steps)
        if not isinstance(self.split, str) or not re.fullmatch(r"[\w.-]+", self.split):
            raise TaskError(f"{where}: split {self.split!r}; expected a word such as 'train' or 'test'")
        if not isinstance(self.meta, dict):
            raise TaskError(f"{where}: meta {_short(self.meta)}; expected a dict")

    def __hash__(self) -> int:  # meta is a dict; the id identifies an example within its task
        return hash((self.id, self.answer, self.split))

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)

    def record(self) -> dict[str, Any]:
        """The example as JSON-ready data (meta left out: it may hold anything)."""
        prompt = self.prompt if isinstance(self.prompt, str) else [dict(m) for m in self.prompt]
        return {"id": self.id, "prompt": prompt, "answer": self.answer, "steps": list(self.steps),
                "split": self.split}


# --- reading responses --------------------------------------------------------------------------

_WRAPPERS = " \t\r\n\"'`*_.,;:!?()[]{}<>"


def normalise_answer(text: str) -> str:
    """Case-folded, accents removed, whitespace collapsed, wrapping punctuation and markup stripped.

    Example:
        >>> normalise_answer("  **Bogotá.** "), normalise_answer("Washington,  D.C.")
        ('bogota', 'washington, d.c')
    """
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split()).strip(_WRAPPERS)


def answers_match(example: Example, answer: str | None) -> bool:
    """The default scorer: normalised equality with the gold answer or one of ``meta["aliases"]``.

    Example:
        >>> ex = Example("f", "Capital of the US?", "Washington, D.C.", meta={"aliases": ["Washington"]})
        >>> answers_match(ex, "washington"), answers_match(ex, None), answers_match(ex, "Paris")
        (True, False, False)
    """
    if answer is None:
        return False
    got = normalise_answer(answer)
    gold = [example.answer, *example.meta.get("aliases", ())]
    return bool(got) and any(got == normalise_answer(g) for g in gold)


def after_cue(text: str, cue: str) -> str | None:
    """The text after the last occurrence of ``cue``; ``None`` when it does not occur.

    Example:
        >>> after_cue("1 + 1 = 2\\nAnswer: 2", "Answer:"), after_cue("no cue", "Answer:")
        (' 2', None)
    """
    i = text.rfind(cue)
    return None if i < 0 else text[i + len(cue) :]


def before_cue(text: str, cue: str) -> str:
    """The text before the last occurrence of ``cue`` (all of it when the cue does not occur)."""
    i = text.rfind(cue)
    return text if i < 0 else text[:i]


def first_line(text: str) -> str | None:
    """The first non-blank line, stripped; ``None`` when there is none."""
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


class CueAnswer:
    """Extractor: the first line after the last answer cue (or of the whole response), stripped.

    Example:
        >>> CueAnswer("Answer:")("thinking\\nAnswer: Paris.\\nmore"), CueAnswer("Answer:")(" 42")
        ('Paris.', '42')
    """

    def __init__(self, cue: str) -> None:
        self.cue = cue

    def __call__(self, text: str) -> str | None:
        seg = after_cue(text, self.cue)
        return first_line(text if seg is None else seg)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


class LineSteps:
    """Step splitter: the lines before the last answer cue; one line of several sentences splits
    into its sentences.

    Example:
        >>> LineSteps("Answer:")("7 + 5 = 12\\n\\n12 - 3 = 9\\nAnswer: 9")
        ['7 + 5 = 12', '12 - 3 = 9']
        >>> LineSteps("Answer:")("He has 7. Then 12. Answer: 12")
        ['He has 7.', 'Then 12.']
    """

    def __init__(self, cue: str) -> None:
        self.cue = cue

    def __call__(self, text: str) -> list[str]:
        lines = [ln.strip() for ln in before_cue(text, self.cue).splitlines() if ln.strip()]
        if len(lines) == 1:
            return [s.strip() for s in _SENTENCE_END.split(lines[0]) if s.strip()]
        return lines


# --- the task -----------------------------------------------------------------------------------

MistakeMaker = Callable[[Example, list[str], int], "list[str] | None"]
Paraphraser = Callable[[Example, list[str]], "list[str] | None"]
SolutionWriter = Callable[[Example, bool], str]


@dataclass(frozen=True)
class Task:
    """Examples plus everything needed to read and score a model's responses to them.

    Args:
        name: the task's name (``facts``, ``arithmetic``, a file's stem).
        examples: at least one example, ids unique (a list is turned into a tuple).
        answer_cue: the text that forces the answer (``Answer:``; ``A`` for the organism).
        extract_answer: ``response -> answer`` (``None`` when there is none); the response is
            the assistant's text, whole or the continuation after the cue.
        split_steps: ``response -> steps``, the reasoning before the answer.
        is_correct: ``(example, answer) -> bool``; default :func:`answers_match`.
        stop: a string that ends generation (besides the end of a chat turn), or ``None``.
        mistake_maker: ``(example, steps, i) -> steps`` with only step ``i`` made wrong, or
            ``None`` when step ``i`` cannot be.
        paraphraser: ``(example, steps) -> steps`` saying the same differently, or ``None``.
        meta: provenance (seed, source file, model fingerprint of a filter).
        joiner: put between steps, and between the last step and the cue.
        solution_writer: ``(example, with_checks) -> response``; default: the gold steps, the
            cue and the answer (with no self-check format).

    Raises:
        TaskError: no examples, duplicate ids, an empty name or cue, or a field of the wrong kind.

    Example:
        >>> t = Task("t", [Example("a", "1+1?", "2", ("1 + 1 = 2",))], "Answer:", CueAnswer("Answer:"),
        ...          LineSteps("Answer:"))
        >>> t.solution(t.examples[0]), t.accuracy(["1 + 1 = 2\\nAnswer: 2"])
        ('1 + 1 = 2\\nAnswer: 2', 1.0)
    """

    name: str
    examples: Sequence[Example]  # stored as a tuple
    answer_cue: str
    extract_answer: Callable[[str], str | None]
    split_steps: Callable[[str], list[str]]
    is_correct: Callable[[Example, str | None], bool] = answers_match
    stop: str | None = None
    mistake_maker: MistakeMaker | None = None
    paraphraser: Paraphraser | None = None
    meta: dict = field(default_factory=dict)
    joiner: str = "\n"
    solution_writer: SolutionWriter | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TaskError(f"task name {self.name!r}; expected a non-empty string")
        if isinstance(self.examples, Example) or not isinstance(self.examples, Sequence):
            got = _short(self.examples)
            raise TaskError(f"task {self.name!r}: examples must be a list of Example, got {got}")
        examples = tuple(self.examples)
        if not examples:
            raise TaskError(f"task {self.name!r} has no examples; expected at least one")
        seen: set[str] = set()
        for ex in examples:
            if not isinstance(ex, Example):
                raise TaskError(f"task {self.name!r}: {_short(ex)} is not an Example")
            if ex.id in seen:
                raise TaskError(f"task {self.name!r}: example id {ex.id!r} occurs twice; ids must be unique")
            seen.add(ex.id)
        object.__setattr__(self, "examples", examples)
        if not isinstance(self.answer_cue, str) or not self.answer_cue.strip():
            raise TaskError(f"task {self.name!r}: answer_cue={self.answer_cue!r}; expected non-empty text")
        if self.stop is not None and (not isinstance(self.stop, str) or not self.stop):
            raise TaskError(f"task {self.name!r}: stop={self.stop!r}; expected None or non-empty text")
        if not isinstance(self.joiner, str):
            raise TaskError(f"task {self.name!r}: joiner={self.joiner!r}; expected a string")
        for name in ("extract_answer", "split_steps", "is_correct"):
            if not callable(getattr(self, name)):
                got = _short(getattr(self, name))
                raise TaskError(f"task {self.name!r}: {name} is {got}; expected a function")
        for name in ("mistake_maker", "paraphraser", "solution_writer"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TaskError(f"task {self.name!r}: {name} is {_short(value)}; expected None or a function")
        if not isinstance(self.meta, dict):
            raise TaskError(f"task {self.name!r}: meta {_short(self.meta)}; expected a dict")

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names present, in order of first appearance."""
        return tuple(dict.fromkeys(ex.split for ex in self.examples))

    def with_examples(self, examples: Sequence[Example], **meta: Any) -> "Task":
        """The same task over other examples, with ``meta`` added to the task's."""
        return replace(self, examples=tuple(examples), meta={**self.meta, **meta})

    def split(self, name: str) -> "Task":
        """The examples of one split.

        Raises:
            TaskError: no example has that split; the message lists the splits there are.
        """
        kept = [ex for ex in self.examples if ex.split == name]
        if not kept:
            raise TaskError(
                f"task {self.name!r} has no examples in split {name!r}; its splits are {list(self.splits)}"
            )
        return self.with_examples(kept, split=name)

    def subset(self, n: int, seed: int = 0) -> "Task":
        """At most ``n`` examples drawn without replacement by ``seed``, in their original order.

        Raises:
            TaskError: ``n`` is not a positive integer.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TaskError(f"subset n={n!r}; expected a positive integer")
        if n >= len(self.examples):
            return self
        keep = sorted(random.Random(seed).sample(range(len(self.examples)), n))
        return self.with_examples([self.examples[i] for i in keep], subset={"n": n, "seed": seed})

    def correct(self, example: Example, response: str) -> bool:
        """Whether ``response`` answers ``example`` correctly (extract, then score)."""
        return bool(self.is_correct(example, self.extract_answer(response)))

    def accuracy(self, responses: Sequence[str]) -> float:
        """Share of correct responses, one per example, in order.

        Raises:
            TaskError: the number of responses differs from the number of examples.
        """
        if isinstance(responses, str) or len(responses) != len(self.examples):
            got = "a string" if isinstance(responses, str) else f"{len(responses)} responses"
            raise TaskError(f"task {self.name!r}: got {got}; expected one per example ({len(self.examples)})")
        return sum(self.correct(ex, r) for ex, r in zip(self.examples, responses, strict=True)) / len(
            self.examples
        )

    def compose(self, steps: Sequence[str], answer: str | None = None, cue: bool = True) -> str:
        """Assistant text of ``steps``, then the cue (and ``answer`` after it, when given).

        Example:
            >>> t = Task("t", [Example("a", "q", "2")], "Answer:", CueAnswer("Answer:"), LineSteps("Answer:"))
            >>> t.compose(["1 + 1 = 2"]), t.compose([], "2")
            ('1 + 1 = 2\\nAnswer:', 'Answer: 2')
        """
        tail = [self.answer_cue + (f" {answer}" if answer is not None else "")] if cue else []
        return self.joiner.join([*steps, *tail])

    def solution(self, ex: Example, with_checks: bool = False) -> str:
        """A gold response: the example's steps, the cue and its answer.

        Args:
            ex: the example.
            with_checks: the self-checking (verbalising) format, for tasks that have one.

        Raises:
            TaskError: ``with_checks`` on a task without a self-check format.
        """
        if self.solution_writer is not None:
            return self.solution_writer(ex, with_checks)
        if with_checks:
            raise TaskError(f"task {self.name!r} has no self-check solution format; use with_checks=False")
        return self.compose(ex.steps, ex.answer)

    def describe(self) -> dict[str, Any]:
        """Name, size, splits and a content hash of the examples, for results and manifests."""
        blob = json.dumps([ex.record() for ex in self.examples], sort_keys=True, separators=(",", ":"))
        return {
            "name": self.name,
            "n_examples": len(self.examples),
            "splits": {s: sum(ex.split == s for ex in self.examples) for s in self.splits},
            "sha256": "sha256:" + hashlib.sha256(blob.encode()).hexdigest(),
        }
