"""The built-in ``facts`` task: public-knowledge questions with one-to-few-token answers.

Countries and their capitals, chemical elements and their symbols (``data/facts.json``), asked
as chat messages ("What is the capital of France? Answer with the name only."; answer
``Paris``). :func:`known_facts` keeps those a model answers correctly and splits them into
``rehearsed`` and ``heldout``; :func:`fact_logprob` measures knowledge by the log-probability of
the gold answer, since exact match moves only at strong doses of forgetting.
"""

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.tasks.protocol import (
    Example,
    LineSteps,
    Task,
    TaskError,
    after_cue,
    answers_match,
    first_line,
)

log = logging.getLogger(__name__)

KINDS = ("capital", "symbol")
ANSWER_CUE = "Answer:"
_QUESTION = {
    "capital": "What is the capital of {subject}? Answer with the name only.",
    "symbol": "What is the chemical symbol of {subject}? Answer with the symbol only.",
}
# How the model says it in its own words; the answer is scored after this lead-in.
_LEAD = {"capital": "The capital of {subject} is", "symbol": "The chemical symbol of {subject} is"}
_RESTATED = ("the capital", "the chemical symbol", "the symbol")
_SYMBOL_IN = re.compile(r"\bsymbol(?: of)? ([A-Z][a-z]?)\b")


@cache
def _data() -> dict[str, Any]:
    return json.loads(resources.files("interp.tasks").joinpath("data/facts.json").read_text("utf-8"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.removeprefix("the ")).strip("-")


class FactAnswer:
    """Extractor: the answer in a short reply, ``Paris`` from ``The capital of France is Paris.``.

    Reads the first sentence of the first line after the cue (or of the reply); in
    ``X is Y`` it keeps ``Y`` (or ``X`` when ``Y`` restates the question: ``Paris is the capital
    of France``; or the symbol named in a description: ``Cadmium is an element with the symbol
    Cd``); parentheses are dropped.

    Example:
        >>> f = FactAnswer()
        >>> f("The capital of France is Paris."), f("Paris is the capital of France."), f(" Au (gold)")
        ('Paris', 'Paris', 'Au')
    """

    def __init__(self, cue: str = ANSWER_CUE) -> None:
        self.cue = cue

    def __call__(self, text: str) -> str | None:
        seg = after_cue(text, self.cue)
        line = first_line(text if seg is None else seg)
        if line is None:
            return None
        sentence = re.split(r"(?<=[a-z\]\)][.!?])\s+", line)[0]
        parts = sentence.split(" is ")
        answer = parts[-1]
        if len(parts) > 1 and answer.lower().startswith(_RESTATED):
            answer = parts[0]
        elif len(parts) > 1 and answer.lower().startswith(("a ", "an ")):  # a description
            named = _SYMBOL_IN.search(answer)
            answer = named.group(1) if named else answer
        answer = re.sub(r"\s*\([^)]*\)", "", answer).strip()
        answer = re.sub(r"(?<=[a-z0-9])[.!?;:,]+$", "", answer)  # a sentence's end, not D.C.'s
        return answer or None


def facts_task(n: int | None = None, seed: int = 0, kinds: Sequence[str] = KINDS) -> Task:
    """The facts, as chat questions, all in split ``test``.

    Args:
        n: keep at most ``n`` of them (a seeded draw); ``None`` keeps all.
        seed: seed of that draw.
        kinds: which facts: ``capital`` (countries), ``symbol`` (chemical elements).

    Returns:
        A :class:`Task` named ``facts``; each example's ``meta`` holds ``kind``, ``subject``,
        ``lead`` (how the model would state the answer, used by :func:`fact_logprob`) and any
        ``aliases``.

    Raises:
        TaskError: an unknown kind, or a bad ``n``.

    Example:
        >>> t = facts_task()
        >>> len(t) > 200, t.examples[0].id, t.examples[0].answer
        (True, 'facts-capital-Afghanistan', 'Kabul')
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise TaskError(f"facts kinds {list(kinds)!r}; expected a non-empty subset of {list(KINDS)}")
    examples = []
    for kind in kinds:
        for row in _data()[kind]:
            subject = row["subject"]
            question = _QUESTION[kind].format(subject=subject)
            lead = _LEAD[kind].format(subject=subject)
            meta = {"kind": kind, "subject": subject, "lead": lead[0].upper() + lead[1:]}
            if row.get("aliases"):
                meta["aliases"] = list(row["aliases"])
            examples.append(
                Example(
                    id=f"facts-{kind}-{_slug(subject)}",
                    prompt=({"role": "user", "content": question},),
                    answer=row["answer"],
                    meta=meta,
                )
            )
    task = Task(
        name="facts",
        examples=tuple(examples),
        answer_cue=ANSWER_CUE,
        extract_answer=FactAnswer(ANSWER_CUE),
        split_steps=LineSteps(ANSWER_CUE),
        is_correct=answers_match,
        meta={"source": "interp/tasks/data/facts.json", "kinds": list(kinds)},
    )
    return task if n is None else task.subset(n, seed)


def split_of(example_id: str, seed: int, rehearsed_fraction: float) -> str:
    """``rehearsed`` or ``heldout``: a pure function of the seed and the id, so a fact keeps its
    split whichever model filtered it."""
    digest = hashlib.sha256(f"{seed}:{example_id}".encode()).digest()
    return "rehearsed" if int.from_bytes(digest[:8], "big") / 2**64 < rehearsed_fraction else "heldout"


def known_facts(
    model: Any,
    task: Task | None = None,
    batch_size: int = 16,
    *,
    rehearsed_fraction: float = 0.5,
    seed: int = 0,
    max_new_tokens: int = 24,
    progress: bool = False,
) -> Task:
    """The facts ``model`` answers correctly when decoding greedily, split into rehearsed and held-out.

    Each question is rendered (chat template where the model has one) and continued greedily
    until the end of the turn; the reply is read with the task's extractor and scored by exact
    match after normalisation. A kept fact goes to ``rehearsed`` or ``heldout`` by
    :func:`split_of` (seeded by ``seed`` and the fact's id only). Each kept example's ``meta``
    records the model's ``response``.

    Args:
        model: a loaded :class:`~interp.models.Model`.
        task: the facts to filter (default :func:`facts_task` ``()``).
        batch_size: prompts decoded together.
        rehearsed_fraction: expected share of kept facts in ``rehearsed``, in (0, 1).
        seed: seed of the split.
        max_new_tokens: reply budget.
        progress: show a progress bar.

    Returns:
        The kept facts as a task; its ``meta`` records the model's fingerprint and how many of
        how many were kept.

    Raises:
        TaskError: a bad ``rehearsed_fraction`` or ``batch_size``, or the model answers none.
    """
    from interp.generation import generate
    from interp.tasks.render import _model, render_prompt, stop_token_id

    if not isinstance(rehearsed_fraction, int | float) or not 0.0 < rehearsed_fraction < 1.0:
        raise TaskError(f"rehearsed_fraction={rehearsed_fraction!r}; expected a number in (0, 1)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TaskError(f"batch_size={batch_size!r}; expected a positive integer")
    m = _model(model)
    task = task or facts_task()
    stop = stop_token_id(m, task.stop)
    prompts = [render_prompt(m, ex.prompt) for ex in task.examples]
    outs = generate(m, prompts, max_new_tokens, stop_id=stop, batch_size=batch_size, progress=progress)
    kept = []
    for ex, out in zip(task.examples, outs, strict=True):
        reply = m.decode([t for t in out if t != stop])
        if task.correct(ex, reply):
            split = split_of(ex.id, seed, rehearsed_fraction)
            kept.append(Example(ex.id, ex.prompt, ex.answer, ex.steps, split, {**ex.meta, "response": reply}))
    log.info("%s answers %d of %d facts correctly", m.spec, len(kept), len(task))
    if not kept:
        raise TaskError(f"model {m.spec!r} answers none of the {len(task)} facts correctly; nothing to keep")
    return task.with_examples(
        kept,
        known={
            "model": m.fingerprint,
            "kept": len(kept),
            "of": len(task),
            "seed": seed,
            "rehearsed_fraction": rehearsed_fraction,
        },
    )


def _answer_ids(m, ex: Example) -> tuple[list[int], list[int]]:
    """Context ids (prompt and lead-in) and the gold answer's ids after them."""
    from interp.tasks.render import render_example

    lead = ex.meta.get("lead", "")
    prompt, with_lead = render_example(m, ex, lead, end_turn=False) if lead else (None, [])
    prompt, full = render_example(m, ex, f"{lead} {ex.answer}" if lead else ex.answer, end_turn=False)
    if full[: len(with_lead)] == with_lead and len(full) > len(with_lead):
        return prompt + with_lead, full[len(with_lead) :]
    return prompt + with_lead, m.encode((" " if lead else "") + ex.answer, add_special_tokens=False)


def fact_logprob(model: Any, task: Task, batch_size: int = 16) -> Float[Tensor, " batch"]:
    """Per-example mean log-probability (nats per token) of the gold answer given the prompt.

    The answer's tokens are scored as the continuation of the rendered prompt and, when the
    example has one (``meta["lead"]``, e.g. ``The capital of France is``), of that lead-in, so
    that the answer sits where the model would say it.

    Args:
        model: a loaded :class:`~interp.models.Model`.
        task: the examples (any task; ``lead`` is optional).
        batch_size: sequences per forward pass.

    Returns:
        One value per example, in order (float32, on the CPU).

    Raises:
        TaskError: a bad ``batch_size``, or an example longer than the model's context.
    """
    from interp.tasks.render import _model

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TaskError(f"batch_size={batch_size!r}; expected a positive integer")
    m = _model(model)
    pairs = [_answer_ids(m, ex) for ex in task.examples]
    for ex, (ctx, ans) in zip(task.examples, pairs, strict=True):
        if len(ctx) + len(ans) > m.n_ctx:
            n = len(ctx) + len(ans)
            raise TaskError(f"example {ex.id!r} has {n} tokens; the model's context is {m.n_ctx}")
    out = torch.empty(len(pairs))
    pad = m.pad_token_id
    for b in range(0, len(pairs), batch_size):
        chunk = pairs[b : b + batch_size]
        rows = [ctx + ans for ctx, ans in chunk]
        width = max(len(r) for r in rows)
        # right padding: a causal model's logits at real positions never see the pads
        tokens = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        with torch.no_grad():
            logprobs = torch.log_softmax(m(tokens).float(), dim=-1).cpu()
        for j, (ctx, ans) in enumerate(chunk):
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(ans) - 1)
            out[b + j] = logprobs[j, pos, torch.tensor(ans)].mean()
    return out
