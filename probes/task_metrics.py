"""A :class:`~interp.tasks.Task` and a model, turned into what each probe takes.

The probes were written against token ids or prompt strings; a task gives examples whose
prompts may be chat messages. These adapters render every prompt the one way
(:func:`interp.tasks.render_prompt`: the chat template with one BOS, or the checkpoint's BOS
policy for plain text), generate the model's own responses up to the end of its turn, and hand
the probes text that continues the rendered prompt:

- :func:`respond`: responses to every example (greedy or sampled, ``samples`` each);
- :func:`task_pass_at_k`: unbiased pass@k with a bootstrap interval over problems;
- :func:`task_scorer`: a damage scorer, accuracy of greedy responses or mean gold log-prob;
- :func:`cot_task`: a :class:`probes.cot_task.CotTask` of given responses, and
  :func:`model_cot_task`: of the model's own greedy chains of thought;
- :func:`info_gain_inputs`: questions, step lists and reference answers for
  :func:`probes.info_gain.info_gain`.

Probes that encode text themselves (:mod:`probes.info_gain`, :mod:`probes.faithfulness`) get
:func:`text_model`: for chat tasks a view of the model whose ``encode`` adds no special tokens,
since every text they encode starts with a rendered template that already holds them.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from interp.models import Model, as_model
from interp.tasks.protocol import Example, Task, TaskError

log = logging.getLogger(__name__)

METRICS = ("accuracy", "logprob")


def select(task: Task, split: str | None = None, n: int | None = None, seed: int = 0) -> Task:
    """The task's ``split`` (when given), then at most ``n`` examples drawn by ``seed``."""
    if split is not None:
        task = task.split(split)
    if n is not None:
        task = task.subset(n, seed)
    return task


def is_chat_task(task: Task) -> bool:
    """Whether every prompt is chat messages (``False``: every prompt is plain text).

    Raises:
        TaskError: a task that mixes chat and plain prompts (render them one way or the other).
    """
    kinds = {ex.is_chat for ex in task.examples}
    if len(kinds) > 1:
        raise TaskError(f"task {task.name!r} mixes chat and plain-text prompts; expected one kind")
    return kinds == {True}


class _RenderedTextModel(Model):
    """The same module and tokenizer; ``encode`` never adds special tokens (the text holds them)."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return super().encode(text, add_special_tokens=False)


def text_model(model: Any, task: Task) -> Model:
    """The model to hand probes that encode prompt text themselves.

    For a chat task, a view sharing the model's module (hooks reach it) whose ``encode`` adds no
    BOS, since each text starts with a rendered chat prompt; for a plain task, the model itself.
    """
    m = as_model(model)
    if not is_chat_task(task):
        return m
    view = _RenderedTextModel(m.module, m.tokenizer, m.spec)
    if "fingerprint" in m.__dict__:
        view.__dict__["fingerprint"] = m.__dict__["fingerprint"]
    return view


def prompt_texts(model: Any, task: Task) -> list[str]:
    """Each example's prompt as the text the model reads (chat messages through its template)."""
    from interp.tasks.render import render_text

    return [render_text(model, ex.prompt) for ex in task.examples]


@dataclass(frozen=True)
class Responses:
    """The model's responses to a task: ``texts[i][j]`` is sample ``j`` of example ``i``.

    ``ids`` are the generated token ids (the end-of-turn token removed), ``prompts`` the
    rendered prompt ids, one per example.
    """

    prompts: tuple[tuple[int, ...], ...]
    ids: tuple[tuple[tuple[int, ...], ...], ...]
    texts: tuple[tuple[str, ...], ...]

    def first(self) -> list[str]:
        """The first sample of each example."""
        return [t[0] for t in self.texts]


def respond(
    model: Any,
    task: Task,
    max_new_tokens: int,
    *,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 32,
    generate: Callable[..., list[list[int]]] | None = None,
) -> Responses:
    """Responses of ``model`` to every example of ``task``, through its chat template.

    Generation stops at the end of the assistant's turn (:func:`interp.tasks.stop_token_id`),
    else at ``task.stop`` when that is one token (kept in the text: the organism's ``E`` ends its
    answer), else after ``max_new_tokens``.

    Args:
        model: a :class:`~interp.models.Model` with a tokenizer.
        task: the examples.
        max_new_tokens: generation budget per response.
        samples: responses per example.
        temperature: 0 for greedy, else the sampling temperature.
        top_p: nucleus sampling mass (1: all tokens).
        top_k: keep only the ``top_k`` most likely tokens (``None``: all).
        seed: seeds the sampling generator.
        batch_size: rows generated together.
        generate: the generator to call (default :func:`interp.generation.generate`); a steering
            sweep passes one that runs under its vector.

    Returns:
        :class:`Responses`.

    Raises:
        GenerationError: a bad budget or sampling setting, or a prompt longer than the context.
    """
    from interp.tasks.render import end_of_turn_id, render_prompt, stop_token_id

    if generate is None:
        from interp.generation import generate
    m = as_model(model)
    stop = stop_token_id(m, task.stop)
    eot = end_of_turn_id(m)
    prompts = [render_prompt(m, ex.prompt) for ex in task.examples]
    rows = [p for p in prompts for _ in range(samples)]
    gen = torch.Generator().manual_seed(seed)
    outs = generate(
        m,
        rows,
        max_new_tokens,
        temperature=temperature,
        stop_id=stop,
        generator=gen,
        batch_size=batch_size,
        top_k=top_k,
        top_p=top_p,
    )
    outs = [o[:-1] if eot is not None and o and o[-1] == eot else list(o) for o in outs]
    texts = [m.decode(o) for o in outs]
    return Responses(
        tuple(tuple(p) for p in prompts),
        tuple(tuple(tuple(outs[i * samples + j]) for j in range(samples)) for i in range(len(prompts))),
        tuple(tuple(texts[i * samples : (i + 1) * samples]) for i in range(len(prompts))),
    )


def task_pass_at_k(
    model: Any,
    task: Task,
    n: int,
    ks: Sequence[int],
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = None,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 32,
    resamples: int = 2000,
):
    """Unbiased pass@k of ``n`` sampled responses per example, each ``k`` with a 95% interval.

    The interval is a percentile bootstrap over problems of the per-problem estimates
    (:func:`probes.stats.bootstrap`), so it says how much the mean would move on other problems.

    Returns:
        :class:`probes.passk.PassAtKResult`; ``meta["intervals"]`` maps each ``k`` to its
        interval and ``meta["task"]`` describes the task.

    Raises:
        ValueError: ``n < 1`` or a ``k`` outside ``1..n``.
    """
    from probes.passk import PassAtKResult, pass_at_k
    from probes.stats import bootstrap

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}; expected at least one sample per problem")
    bad = [k for k in ks if not 1 <= k <= n]
    if bad or not ks:
        raise ValueError(f"k={bad[0] if bad else list(ks)!r}; expected budgets in 1..n={n}")
    m = as_model(model)
    out = respond(
        m,
        task,
        max_new_tokens,
        samples=n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        batch_size=batch_size,
    )
    correct = [
        sum(task.correct(ex, t) for t in texts) for ex, texts in zip(task.examples, out.texts, strict=True)
    ]
    intervals = {}
    for k in ks:
        per_problem = [pass_at_k(n, c, k) for c in correct]
        intervals[str(k)] = (
            bootstrap(per_problem, resamples=resamples, seed=seed).to_dict() if len(per_problem) > 1 else None
        )
    meta = {
        "model": m.spec,
        "fingerprint": m.fingerprint,
        "task": task.describe(),
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "intervals": intervals,
    }
    return PassAtKResult(n, tuple(correct), tuple(int(k) for k in ks), meta)


def task_scorer(
    task: Task,
    metric: Literal["accuracy", "logprob"] = "accuracy",
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
) -> Callable[[Model], float]:
    """A damage scorer ``scorer(model) -> float`` (higher is better) from a task.

    Args:
        task: the examples.
        metric: ``accuracy`` of greedy responses (extracted and scored by the task), or
            ``logprob``, the mean log-probability per token of each gold answer after its prompt
            (:func:`interp.tasks.fact_logprob`): smooth, so small damage still shows.
        max_new_tokens: generation budget for ``accuracy``.
        batch_size: rows per batch.

    Raises:
        TaskError: an unknown metric.

    Example:
        >>> from interp.tasks import arithmetic_task
        >>> task_scorer(arithmetic_task(n=2), "recall")
        Traceback (most recent call last):
        ...
        interp.tasks.protocol.TaskError: metric 'recall'; expected one of ('accuracy', 'logprob')
    """
    if metric not in METRICS:
        raise TaskError(f"metric {metric!r}; expected one of {METRICS}")

    if metric == "logprob":

        def logprob(model: Model) -> float:
            from interp.tasks.facts import fact_logprob

            return float(fact_logprob(model, task, batch_size=batch_size).mean())

        logprob.__name__ = f"{task.name}_logprob"
        return logprob

    def accuracy(model: Model) -> float:
        return task.accuracy(respond(model, task, max_new_tokens, batch_size=batch_size).first())

    accuracy.__name__ = f"{task.name}_accuracy"
    return accuracy


def _question(prompt_text: str, joiner: str) -> str:
    # the probes join question and steps with the task's joiner; the rendered prompt already
    # ends where the response starts, so drop a trailing joiner to keep the text the model read
    return prompt_text[: -len(joiner)] if joiner and prompt_text.endswith(joiner) else prompt_text


def cot_task(model: Any, task: Task, responses: Sequence[str], min_steps: int = 1):
    """A :class:`~probes.cot_task.CotTask` of the model's own chains of thought.

    Each response is split by the task's step splitter; examples with fewer than ``min_steps``
    steps are left out. The answer is forced by the task's cue and read by its extractor; the
    task's mistake-maker and paraphraser (when it has them) edit the steps; the filler word of the
    filler test is the task's ``meta["filler"]`` when it names one (the organism's ``;``).

    Returns:
        ``(cot_task, kept)``: the CotTask and the indices of the examples it holds.

    Raises:
        TaskError: the number of responses differs from the number of examples, or no response
            has ``min_steps`` steps.
    """
    from probes.cot_task import CotTask

    if len(responses) != len(task.examples):
        raise TaskError(f"{len(responses)} responses for {len(task.examples)} examples; expected one each")
    texts = prompt_texts(model, task)
    kept = [i for i, r in enumerate(responses) if len(task.split_steps(r)) >= min_steps]
    if not kept:
        raise TaskError(
            f"none of the {len(responses)} responses to task {task.name!r} has {min_steps} step(s) "
            "by its step splitter; nothing to test"
        )
    examples: list[Example] = [task.examples[i] for i in kept]

    def is_correct(i: int, answer: Any) -> bool:
        return bool(task.is_correct(examples[i], answer))

    def mistakes(ex: Example, steps: list[str], i: int) -> list[str] | None:
        return task.mistake_maker(ex, steps, i)  # type: ignore[misc]

    def paraphrase(ex: Example, steps: list[str]) -> list[str] | None:
        return task.paraphraser(ex, steps)  # type: ignore[misc]

    filler = task.meta.get("filler")
    ct = CotTask(
        prompts=[_question(texts[i], task.joiner) for i in kept],
        steps=[task.split_steps(responses[i]) for i in kept],
        answer_cue=task.answer_cue,
        extract_answer=task.extract_answer,
        is_correct=is_correct,
        problems=examples,
        joiner=task.joiner,
        stop=task.stop,
        mistake_maker=mistakes if task.mistake_maker is not None else None,
        paraphraser=paraphrase if task.paraphraser is not None else None,
        meta={"task": task.describe(), "n_generated": len(responses),
              "n_skipped": len(responses) - len(kept)},
        **({"filler": filler} if isinstance(filler, str) and filler.strip() else {}),
    )
    return ct, kept


def model_cot_task(
    model: Any, task: Task, max_new_tokens: int = 120, *, batch_size: int = 64, min_steps: int = 1
):
    """The model's own greedy chains of thought on ``task``, as a :class:`~probes.cot_task.CotTask`.

    :func:`respond` (greedy, through the chat template, to the end of the turn or the task's
    stop), then :func:`cot_task`. The organism's path-finding is ``organism_task("solve")`` of
    :mod:`interp.organism.tasks`, passed in by the caller: this module knows no world.

    Args:
        model: a :class:`~interp.models.Model`.
        task: the problems, with a step splitter (and optionally a mistake-maker and paraphraser).
        max_new_tokens: budget of each trace.
        batch_size: rows generated together.
        min_steps: fewest steps a trace needs to be kept.

    Returns:
        ``(cot_task, kept)``: the CotTask (``meta`` counts ``n_generated`` and ``n_skipped``) and
        the indices of the examples it holds.

    Raises:
        TaskError: no trace has ``min_steps`` steps.
    """
    responses = respond(model, task, max_new_tokens, batch_size=batch_size).first()
    return cot_task(model, task, responses, min_steps)


def info_gain_inputs(
    model: Any, task: Task, responses: Sequence[str], reference: Literal["gold", "own"] = "gold"
) -> tuple[list[str], list[list[str]], list[str], list[int]]:
    """Questions, step lists and reference answers for :func:`probes.info_gain.info_gain`.

    Each response is split by the task's step splitter (responses without a step are left
    out); the reference answer is scored after the task's cue.

    Args:
        model: the model whose prompts are rendered.
        task: the examples.
        responses: one response per example.
        reference: ``gold``: the example's gold answer; ``own``: the response's own answer when
            the task scores it correct (several answers may be right), else the gold one, and
            then the task's stop when it has one (the organism's ``E``).

    Returns:
        ``(questions, traces, answers, kept)``, ``kept`` the indices of the examples used.
    """
    texts = prompt_texts(model, task)
    questions, traces, answers, kept = [], [], [], []
    for i, (ex, r) in enumerate(zip(task.examples, responses, strict=True)):
        steps = task.split_steps(r)
        if steps:
            questions.append(_question(texts[i], task.joiner))
            traces.append(steps)
            answers.append(ex.answer if reference == "gold" else _own_reference(task, ex, r))
            kept.append(i)
    return questions, traces, answers, kept


def _own_reference(task: Task, ex: Example, response: str) -> str:
    own = task.extract_answer(response)
    answer = own if own is not None and task.is_correct(ex, own) else ex.answer
    return answer if task.stop is None else f"{answer}{task.joiner}{task.stop}"


def text_token_type(word: str) -> str:
    """Type of a decoded token of a real model's response, for entropy profiles.

    Example:
        >>> [text_token_type(w) for w in ["12", "Wait", "the", "=", ""]]
        ['number', 'self-check', 'word', 'symbol', 'space']
    """
    w = word.strip()
    if not w:
        return "space"
    if w.isdigit():
        return "number"
    if w.casefold().strip(",.!?:") in SELF_CHECK:
        return "self-check"
    if any(c.isalpha() for c in w):
        return "word"
    return "symbol"


SELF_CHECK = ("wait", "check", "verify", "hmm", "actually")
