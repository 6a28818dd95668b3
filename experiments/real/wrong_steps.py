"""Hand-written wrong steps for the real model: does a model recover from a mistake put in its mouth?

Each problem is of the real suite's kind (:mod:`interp.tasks.arithmetic`, same phrasing and
instruction) with a partial worked answer whose *last* step is wrong (``17 + 8 = 24``). The
partial answer is fed as the start of the assistant's turn, ending right after the wrong
result, and the model continues it greedily. Two things are scored per problem:

- *recovered*: the final answer of partial answer + continuation is right (the task's own
  extractor: the number after the last ``Answer:``);
- *self-check after the wrong step*: the continuation holds a self-check phrase
  (:data:`experiments.real.profile.SELF_CHECK`).

A model that merely carries on from the wrong value ends on a wrong answer: recovery needs
the mistake caught. The problems are written here (no download); half put the mistake in the
first step, half in a later one.
"""

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from experiments.real.common import mean, paired, self_checks

log = logging.getLogger(__name__)

WRONG_STEP_TOKENS = 64
"""Continuation budget: a caught step, the corrected chain and ``Answer: N`` fit (about 45 tokens
in the parent's checked format)."""

WRONG_STEPS: tuple[tuple[str, str, str], ...] = (
    # (question, partial answer whose last step is wrong, right final answer)
    (
        "Tom has 17 apples. He buys 8 more, then gives away 6. How many apples does Tom have now?",
        "17 + 8 = 24",
        "19",
    ),
    (
        "Anna has 12 pencils. She loses 5, then finds 9 more. How many pencils does Anna have now?",
        "12 - 5 = 7\n7 + 9 = 15",
        "16",
    ),
    (
        "Ben has 9 marbles. He gets 7 more from a friend, then sells 4. How many marbles does Ben have now?",
        "9 + 7 = 15",
        "12",
    ),
    (
        "Maria has 15 books. She gives 6 to a friend, then buys 3 more. How many books does Maria have now?",
        "15 - 6 = 9\n9 + 3 = 11",
        "12",
    ),
    (
        "Sam has 14 cookies. He sells 8, then receives 11 more. How many cookies does Sam have now?",
        "14 - 8 = 7",
        "17",
    ),
    (
        "Lily has 6 coins. She finds 12 more, then gives away 5. How many coins does Lily have now?",
        "6 + 12 = 18\n18 - 5 = 12",
        "13",
    ),
    (
        "Omar has 19 cards. He gives away 7, then loses 4. How many cards does Omar have now?",
        "19 - 7 = 11",
        "8",
    ),
    (
        "Emma has 8 shells. She receives 6 more, then buys 9 more. How many shells does Emma have now?",
        "8 + 6 = 14\n14 + 9 = 22",
        "23",
    ),
    (
        "Jack has 11 stickers. He buys 10 more, then gives 8 to a friend. How many stickers does Jack "
        "have now?",
        "11 + 10 = 22",
        "13",
    ),
    (
        "Sofia has 20 apples. She sells 9, then finds 4 more. How many apples does Sofia have now?",
        "20 - 9 = 11\n11 + 4 = 16",
        "15",
    ),
    (
        "Leo has 7 pencils. He gets 5 more from a friend, then loses 3. How many pencils does Leo have now?",
        "7 + 5 = 13",
        "9",
    ),
    (
        "Mia has 16 marbles. She gives away 7, then receives 2 more. How many marbles does Mia have now?",
        "16 - 7 = 9\n9 + 2 = 12",
        "11",
    ),
    (
        "Tom has 5 books. He finds 8 more, then sells 6, then buys 4 more. How many books does Tom have now?",
        "5 + 8 = 13\n13 - 6 = 8",
        "11",
    ),
    (
        "Anna has 18 coins. She loses 9, then receives 7 more, then gives away 3. How many coins does Anna "
        "have now?",
        "18 - 9 = 8",
        "13",
    ),
    (
        "Ben has 13 cards. He buys 12 more, then gives 9 to a friend. How many cards does Ben have now?",
        "13 + 12 = 25\n25 - 9 = 17",
        "16",
    ),
    (
        "Maria has 10 shells. She sells 4, then finds 6 more. How many shells does Maria have now?",
        "10 - 4 = 5",
        "12",
    ),
)


def wrong_step_task() -> Any:
    """The problems as an arithmetic task (its extractor and scorer), each partial answer in ``meta``."""
    from interp.tasks.arithmetic import INSTRUCTION, arithmetic_task
    from interp.tasks.protocol import Example

    examples = [
        Example(
            id=f"wrong-step-{i:02d}",
            prompt=({"role": "user", "content": f"{q} {INSTRUCTION}"},),
            answer=answer,
            split="test",
            meta={"partial": partial, "question": q},
        )
        for i, (q, partial, answer) in enumerate(WRONG_STEPS)
    ]
    return arithmetic_task(n=1, seed=0, splits=("test",)).with_examples(examples, wrong_steps=True)


def wrong_step_prompts(model: Any, task: Any) -> list[list[int]]:
    """Token rows: the chat prompt (assistant header included) followed by the partial answer.

    The chat prompt is rendered by the template (its special tokens once); the partial answer is
    encoded with ``add_special_tokens=False``, so each row ends with the wrong step's last token.
    """
    from interp.tasks.render import render_prompt

    return [
        render_prompt(model, ex.prompt) + model.encode(ex.meta["partial"], add_special_tokens=False)
        for ex in task.examples
    ]


def continue_wrong_steps(model: Any, task: Any, max_new_tokens: int) -> list[str]:
    """Greedy continuations of every wrong-step row, up to the end of the assistant's turn."""
    from interp.generation import generate
    from interp.tasks.render import end_of_turn_id, stop_token_id

    eot = end_of_turn_id(model)
    outs = generate(
        model, wrong_step_prompts(model, task), max_new_tokens, stop_id=stop_token_id(model, None)
    )
    outs = [o[:-1] if eot is not None and o and o[-1] == eot else list(o) for o in outs]
    return [model.decode(o) for o in outs]


def score(task: Any, continuations: list[str]) -> dict[str, list[int]]:
    """Per problem: ``recovered`` (final answer right) and ``self_checked`` (a phrase after the step)."""
    recovered = [
        int(task.correct(ex, ex.meta["partial"] + c))
        for ex, c in zip(task.examples, continuations, strict=True)
    ]
    checked = [int(n > 0) for n in self_checks(continuations)]
    return {"recovered": recovered, "self_checked": checked}


def recovery(
    runs: dict[str, tuple[Any, Callable[[], AbstractContextManager]]],
    reference: str,
    resamples: int,
    max_new_tokens: int = WRONG_STEP_TOKENS,
    against: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Recovery and self-checks after a wrong step for each run, paired against ``reference``.

    Args:
        runs: ``label -> (model, context)``; the context (e.g. a steering vector's ``apply``) is
            entered around the generation.
        reference: the label the others are compared to (the unsteered tune).
        resamples: bootstrap resamples per interval.
        max_new_tokens: continuation budget.
        against: ``label -> reference label`` for runs paired against another run than
            ``reference`` (a steered parent against the unsteered parent); recorded per run as
            ``paired_against``.

    Returns:
        ``{"n_problems", "reference", "runs": {label: {...}}}``: per run the rates, the per-problem
        lists, paired differences to its reference and the first continuation.

    Raises:
        ValueError: ``against`` names a run or a reference that is not in ``runs``.
    """
    against = dict(against or {})
    unknown = sorted({*against, *against.values(), reference} - set(runs))
    if unknown:
        raise ValueError(f"runs {unknown} are not among the runs {sorted(runs)}")
    task = wrong_step_task()
    per: dict[str, Any] = {}
    for label, (model, context) in runs.items():
        t = time.perf_counter()
        with context():
            texts = continue_wrong_steps(model, task, max_new_tokens)
        s = score(task, texts)
        per[label] = {
            **s,
            "seconds": round(time.perf_counter() - t, 2),
            "recovery_rate": mean(s["recovered"]),
            "self_check_rate": mean(s["self_checked"]),
            "example": task.examples[0].meta["partial"] + texts[0],
        }
    for label, r in per.items():
        ref = against.get(label, reference)
        if label != ref and label != reference:
            r["paired_against"] = ref
            r["recovery_diff"] = paired(r["recovered"], per[ref]["recovered"], resamples)
            r["self_check_diff"] = paired(r["self_checked"], per[ref]["self_checked"], resamples)
    return {"n_problems": len(task), "reference": reference, "max_new_tokens": max_new_tokens, "runs": per}


def unsteered() -> AbstractContextManager:
    """No steering: a context that does nothing."""
    return nullcontext()
