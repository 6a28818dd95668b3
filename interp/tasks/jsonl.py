"""A user's task file: one JSON object per line.

Each line holds ``"prompt"`` (text) or ``"messages"`` (chat messages), ``"answer"`` (text), and
optionally ``"steps"`` (a list of texts), ``"split"`` (default ``test``), ``"id"`` (default
``<file stem>-<line>``) and ``"meta"`` (an object)::

    {"messages": [{"role": "user", "content": "What is 2 + 3?"}], "answer": "5", "steps": ["2 + 3 = 5"]}

Every error names the file and the line. Unknown keys are warned about, not silently dropped.
"""

import json
import logging
from pathlib import Path

from interp.tasks.protocol import CueAnswer, Example, LineSteps, Task, TaskError, answers_match

log = logging.getLogger(__name__)

KEYS = ("id", "prompt", "messages", "answer", "steps", "split", "meta")


def _example(obj: object, where: str, default_id: str) -> Example:
    if not isinstance(obj, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt == has_messages:
        raise TaskError(f"{where}: expected exactly one of 'prompt' (text) or 'messages' (a list), "
                        f"got {'both' if has_prompt else 'neither'}")
    if has_prompt and not isinstance(obj["prompt"], str):
        raise TaskError(f"{where}: 'prompt' is {type(obj['prompt']).__name__}; expected text "
                        "(use 'messages' for chat messages)")
    if has_messages and not isinstance(obj["messages"], list):
        raise TaskError(f"{where}: 'messages' is {type(obj['messages']).__name__}; expected a non-empty list "
                        "of {'role', 'content'} messages")
    if "answer" not in obj or not isinstance(obj["answer"], str):
        got = "missing" if "answer" not in obj else f"{type(obj['answer']).__name__} {obj['answer']!r}"
        raise TaskError(f"{where}: 'answer' is {got}; expected text (write numbers as \"42\")")
    steps = obj.get("steps", [])
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise TaskError(f"{where}: 'steps' must be a list of texts")
    for key, kind in (("id", str), ("split", str), ("meta", dict)):
        if key in obj and not isinstance(obj[key], kind):
            raise TaskError(f"{where}: {key!r} is {type(obj[key]).__name__}; expected {kind.__name__}")
    unknown = sorted(set(obj) - set(KEYS))
    if unknown:
        log.warning("%s: ignoring unknown keys %s (known: %s)", where, unknown, ", ".join(KEYS))
    try:
        return Example(
            id=obj.get("id", default_id),
            prompt=obj["prompt"] if has_prompt else obj["messages"],
            answer=obj["answer"],
            steps=tuple(steps),
            split=obj.get("split", "test"),
            meta=dict(obj.get("meta", {})),
        )
    except TaskError as exc:
        raise TaskError(f"{where}: {exc}") from None


def load_jsonl_task(
    path: str | Path, name: str | None = None, answer_cue: str = "Answer:", stop: str | None = None
) -> Task:
    """Read a JSONL task file.

    Args:
        path: the ``.jsonl`` file (UTF-8; blank lines are skipped).
        name: the task's name (default: the file's stem).
        answer_cue: the text that forces and precedes the answer.
        stop: a string that ends generation, if any.

    Returns:
        A :class:`Task` with a cue extractor (the first line after the cue), a line step splitter
        and normalised exact match (``meta.aliases`` also accepted); ``meta`` records the file's
        name and sha256.

    Raises:
        TaskError: a missing file, a directory, bytes that are not UTF-8, a line that is not a
            JSON object or misses a field, a duplicate id, or a file with no examples; each names
            the file and (where there is one) the line.

    Example:
        >>> load_jsonl_task("/nonexistent/tasks.jsonl")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.tasks.protocol.TaskError: task file '/nonexistent/tasks.jsonl' does not exist; ...
    """
    from interp.errors import SpecError
    from interp.fingerprint import sha256_file
    from interp.prompts import _numbered_lines

    p = Path(path).expanduser()
    if p.is_dir():
        raise TaskError(f"task file {str(path)!r} is a directory; expected a .jsonl file")
    if not p.is_file():
        raise TaskError(f"task file {str(path)!r} does not exist; expected a .jsonl file with one "
                        "{\"prompt\" or \"messages\", \"answer\"} object per line")
    examples: list[Example] = []
    lines: dict[str, int] = {}
    try:
        for lineno, line in _numbered_lines(p):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{where}: not valid JSON ({exc.msg})") from None
            ex = _example(obj, where, f"{p.stem}-{lineno}")
            if ex.id in lines:
                raise TaskError(
                    f"{where}: id {ex.id!r} already used on line {lines[ex.id]}; ids must be unique"
                )
            lines[ex.id] = lineno
            examples.append(ex)
    except TaskError:
        raise
    except SpecError as exc:  # not UTF-8
        raise TaskError(str(exc)) from None
    if not examples:
        raise TaskError(f"task file {str(p)!r} has no examples; expected one JSON object per line")
    return Task(
        name=name or p.stem,
        examples=tuple(examples),
        answer_cue=answer_cue,
        extract_answer=CueAnswer(answer_cue),
        split_steps=LineSteps(answer_cue),
        is_correct=answers_match,
        stop=stop,
        meta={"source": {"kind": "file", "name": p.name, "sha256": sha256_file(p)}},
    )
