"""A :class:`~interp.tasks.Task` as steering targets and costs, and as CoT-decoding problems.

:func:`task_metrics` gives :func:`steering.sweep.dose_response` a behaviour target measured on
the model's own greedy responses to the task (through its chat template, to the end of the
turn): the task's accuracy and self-check phrases per response; and a cost: the KL to the
unsteered model on the task's gold solutions. :func:`cue_answer_span` finds the answer after the
task's cue in a generated branch, for :func:`steering.cot_decoding.cot_decode`.
"""

import re
from collections.abc import Callable, Sequence
from typing import Any

from interp.tasks.protocol import Task

SELF_CHECK = ("let me check", "double-check", "wait", "hmm", "actually", "verify", "check")
_SELF_CHECK = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(p) for p in sorted(SELF_CHECK, key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)

Metric = Callable[[Any], dict[str, float]]


def self_checks(text: str) -> int:
    """Self-check phrases in ``text`` (whole words, any case; a phrase counts once).

    Example:
        >>> self_checks("Wait, let me check: 2 + 2 = 4. Verify: yes."), self_checks("checked")
        (3, 0)
    """
    return len(_SELF_CHECK.findall(text))


def task_prompts(model: Any, task: Task) -> list[list[int]]:
    """The rendered prompt ids of every example (chat template, one BOS)."""
    from interp.tasks.render import render_prompt

    return [render_prompt(model, ex.prompt) for ex in task.examples]


def greedy_responses(model: Any, task: Task, max_new_tokens: int, batch_size: int = 32) -> list[str]:
    """Greedy responses to every example, generated under whatever hooks the model carries now."""
    from interp.generation import generate
    from interp.models import as_model
    from interp.tasks.render import end_of_turn_id, stop_token_id

    m = as_model(model)
    stop, eot = stop_token_id(m, task.stop), end_of_turn_id(m)
    outs = generate(m, task_prompts(m, task), max_new_tokens, stop_id=stop, batch_size=batch_size)
    return [m.decode(o[:-1] if eot is not None and o and o[-1] == eot else o) for o in outs]


def task_metrics(
    model: Any, task: Task, max_new_tokens: int = 128, batch_size: int = 32
) -> tuple[list[Metric], list[Metric]]:
    """Targets and costs of a task for :func:`steering.sweep.dose_response`.

    Targets: ``accuracy`` (the task's scorer on greedy responses) and ``self_checks_per_response``
    (:data:`SELF_CHECK` phrases). Costs: ``kl_task_solutions``, the KL from the unsteered model
    on the rendered prompts followed by the task's gold solutions.

    Args:
        model: the model the vector is applied to.
        task: the examples.
        max_new_tokens: generation budget per response.
        batch_size: rows per batch.

    Returns:
        ``(targets, costs)``.
    """
    from interp.models import as_model
    from interp.tasks.render import render_example
    from steering.sweep import kl_cost

    m = as_model(model)

    def behaviour(model_now: Any) -> dict[str, float]:
        texts = greedy_responses(model_now, task, max_new_tokens, batch_size)
        return {
            "accuracy": task.accuracy(texts),
            "self_checks_per_response": sum(self_checks(t) for t in texts) / len(texts),
        }

    rows = []
    for ex in task.examples:
        prompt, response = render_example(m, ex, task.solution(ex))
        rows.append(prompt + response)
    return [behaviour], [kl_cost(m, rows, batch_size=batch_size, name="kl_task_solutions")]


def cue_answer_span(
    model: Any, cue: str, close_id: int | None
) -> Callable[[list[int]], tuple[int, int] | None]:
    """An answer span for CoT-decoding: the tokens after the last ``cue`` in the decoded text, up
    to ``close_id`` (not included) or the end of the branch.

    The cue is found in the decoded text rather than as token ids, since its tokens differ with
    what precedes it (``Answer:`` after a newline or after a space).
    """
    from interp.models import as_model

    m = as_model(model)

    def span(tokens: Sequence[int]) -> tuple[int, int] | None:
        tokens = list(tokens)
        end = tokens.index(close_id) if close_id is not None and close_id in tokens else len(tokens)
        total = m.decode(tokens[:end]).count(cue)
        if total == 0:
            return None
        start = next(j for j in range(end + 1) if m.decode(tokens[:j]).count(cue) == total)
        return (start, end) if end > start else None

    return span


def answer_text(model: Any, task: Task, tokens: Sequence[int], close_id: int | None) -> str:
    """A branch's text without its closing token."""
    tokens = list(tokens)
    if close_id is not None and close_id in tokens:
        tokens = tokens[: tokens.index(close_id)]
    return model.decode(tokens)


def scores(task: Task, texts: Sequence[str]) -> list[int]:
    """1 for each example the text answers correctly, else 0."""
    return [int(task.correct(ex, t)) for ex, t in zip(task.examples, texts, strict=True)]
