"""The fine-tuning data: prompt and response token ids per example, drawn from the built-in tasks.

Each method turns the arithmetic task's training problems into responses (see
:class:`~interp.finetune.config.FinetuneConfig`); a share of every batch can rehearse known facts.
Prompts are rendered through the model's chat template by :func:`interp.tasks.render_example`
(no second BOS) and responses are encoded as its continuation.

Held-out facts are never in the data: :meth:`TrainingData.check_no_heldout` compares example
ids with the held-out ids before training starts, and a run refuses data that break it.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import torch

from interp.finetune.config import FinetuneConfig, FinetuneError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainExample:
    """One training sequence: a rendered prompt and the response the loss is taken on."""

    id: str
    prompt: str
    response: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    source: str  # "arithmetic" or "facts"


@dataclass(frozen=True)
class TrainingData:
    """The examples of a run: the main pool, the rehearsed facts, and the ids never to train on."""

    main: tuple[TrainExample, ...]
    facts: tuple[TrainExample, ...] = ()
    heldout_ids: frozenset[str] = frozenset()
    skipped: int = 0  # examples left out for being longer than max_len

    def __post_init__(self) -> None:
        self.check_no_heldout()

    def check_no_heldout(self) -> None:
        """Refuse data that hold a held-out example.

        Raises:
            FinetuneError: names the first held-out id found.
        """
        leaked = sorted(e.id for e in (*self.main, *self.facts) if e.id in self.heldout_ids)
        if leaked:
            raise FinetuneError(
                f"held-out example {leaked[0]!r} (and {len(leaked) - 1} more) is in the fine-tuning "
                "data; held-out facts must never be trained on"
            )

    def hash(self) -> str:
        """``sha256:`` of every example's id, source, prompt and response text, in order."""
        h = hashlib.sha256()
        for e in (*self.main, *self.facts):
            h.update(json.dumps([e.id, e.source, e.prompt, e.response]).encode() + b"\n")
        return "sha256:" + h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What a card records of the data."""
        lengths = [len(e.prompt_ids) + len(e.response_ids) for e in (*self.main, *self.facts)]
        return {
            "hash": self.hash(),
            "n_examples": len(self.main),
            "n_facts": len(self.facts),
            "n_heldout_excluded": len(self.heldout_ids),
            "skipped_too_long": self.skipped,
            "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0.0,
            "fact_ids": sorted(e.id for e in self.facts),
        }


def answer_response(task: Any, ex: Any) -> str:
    """The answer-only response of a problem: the task's cue and the answer (``Answer: 9``)."""
    return task.compose([], ex.answer)


def fact_response(ex: Any) -> str:
    """A rehearsed fact's response: the model's own correct reply when the filter kept it, else
    the lead-in and the answer (``The capital of France is Paris.``), else the answer."""
    own = str(ex.meta.get("response", "")).strip()
    if own:
        return own
    lead = ex.meta.get("lead")
    return f"{lead} {ex.answer}." if lead else ex.answer


def encode_examples(
    model: Any, pairs: list[tuple[Any, str]], source: str, max_len: int
) -> tuple[list[TrainExample], int]:
    """Render ``(example, response)`` pairs; those over ``max_len`` tokens are left out (counted)."""
    from interp.tasks.render import render_example, render_text

    out, skipped = [], 0
    for ex, response in pairs:
        prompt_ids, response_ids = render_example(model, ex, response)
        if len(prompt_ids) + len(response_ids) > max_len:
            skipped += 1
            continue
        prompt = render_text(model, ex.prompt)
        out.append(TrainExample(str(ex.id), prompt, response, tuple(prompt_ids), tuple(response_ids), source))
    return out, skipped


def build_data(
    model: Any, config: FinetuneConfig, task: Any = None, facts: Any = None, progress: bool = False
) -> TrainingData:
    """The examples of a run of ``config.method`` on ``model`` (an :class:`interp.models.Model`).

    Args:
        model: the parent, loaded (renders prompts; samples ``sft-self`` solutions; filters facts).
        config: the run's settings.
        task: the arithmetic task; its ``train`` split is used (default:
            ``arithmetic_task(n=config.n_train, seed=config.seed)``).
        facts: known facts, a task with splits ``rehearsed`` and ``heldout`` (default:
            :func:`interp.tasks.facts.known_facts` of the model on ``config.n_facts`` facts);
            read only when ``config.rehearse_facts > 0``.
        progress: progress bars while sampling.

    Raises:
        FinetuneError: no example fits ``max_len``, ``sft-self`` found no correct solution,
            there are no rehearsed facts to mix in, or a held-out fact is in the data.
    """
    from interp.tasks.arithmetic import arithmetic_task

    if task is None:
        task = arithmetic_task(n=config.n_train, seed=config.seed, splits=("train",))
    train = [ex for ex in task.examples if ex.split == "train"]
    if not train:
        raise FinetuneError(f"task {task.name!r} has no 'train' split; its splits are {list(task.splits)}")
    if config.method == "sft-self":
        pairs = sample_own_solutions(model, task, train, config, progress)
    elif config.method == "sft-answer":
        pairs = [(ex, answer_response(task, ex)) for ex in train]
    else:
        checks = config.method == "sft-verbalise"
        pairs = [(ex, task.solution(ex, with_checks=checks)) for ex in train]
    main, skipped = encode_examples(model, pairs, task.name, config.max_len)
    if not main:
        raise FinetuneError(
            f"max_len={config.max_len}: none of the {len(pairs)} {config.method} examples fits; "
            "expected a larger max_len",
            "max_len",
            config.max_len,
            "a larger max_len",
        )
    rehearsed: list[TrainExample] = []
    heldout: frozenset[str] = frozenset()
    if config.rehearse_facts > 0:
        if facts is None:
            from interp.tasks.facts import facts_task, known_facts

            facts = known_facts(
                model, facts_task(n=config.n_facts, seed=config.seed), seed=config.seed, progress=progress
            )
        heldout = frozenset(str(ex.id) for ex in facts.examples if ex.split == "heldout")
        pool = [ex for ex in facts.examples if ex.split == "rehearsed"]
        rehearsed, more = encode_examples(
            model, [(ex, fact_response(ex)) for ex in pool], "facts", config.max_len
        )
        skipped += more
        if not rehearsed:
            raise FinetuneError(
                f"rehearse_facts={config.rehearse_facts}, but there is no rehearsed fact to mix in "
                f"({len(pool)} offered); expected rehearse_facts=0 or a model that knows some facts",
                "rehearse_facts",
                config.rehearse_facts,
                "0 or a model that knows some facts",
            )
    if skipped:
        log.warning("%d examples longer than max_len=%d tokens were left out", skipped, config.max_len)
    return TrainingData(tuple(main), tuple(rehearsed), heldout, skipped)


def sample_own_solutions(
    model: Any, task: Any, problems: list[Any], config: FinetuneConfig, progress: bool = False
) -> list[tuple[Any, str]]:
    """The model's own solutions, sampled at ``config.temperature``, kept when correct.

    Each problem gets ``config.self_samples`` samples, each as long as ``config.max_len`` lets
    the shortest prompt run; samples that do not end their turn and duplicates are dropped,
    distinct correct ones are all kept.

    Raises:
        FinetuneError: no sample was correct.
    """
    from interp.generation import generate
    from interp.tasks.render import render_prompt, stop_token_id

    prompts = [render_prompt(model, ex.prompt) for ex in problems]
    budget = max(1, config.max_len - min(len(p) for p in prompts))
    stop = stop_token_id(model, task.stop)
    gen = torch.Generator().manual_seed(config.seed)
    keep: list[tuple[Any, str]] = []
    seen: set[tuple[str, str]] = set()
    for _ in range(config.self_samples):
        outs = generate(
            model,
            prompts,
            max_new_tokens=budget,
            temperature=config.temperature,
            stop_id=stop,
            generator=gen,
            progress=progress,
        )
        for ex, ids in zip(problems, outs, strict=True):
            if stop is not None and (not ids or ids[-1] != stop):
                continue  # ran out of budget: not a finished solution
            text = model.decode([t for t in ids if t != stop]).strip()
            if text and (ex.id, text) not in seen and task.correct(ex, text):
                seen.add((ex.id, text))
                keep.append((ex, text))
    if not keep:
        raise FinetuneError(
            f"sft-self: none of the {config.self_samples} samples on each of {len(problems)} problems "
            f"was correct at temperature {config.temperature}; expected a parent that solves some problems"
        )
    log.info("sft-self: kept %d correct samples of %d", len(keep), len(problems) * config.self_samples)
    return keep
