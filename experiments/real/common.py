"""What every stage of the real-model suite shares: responses, self-check counts, intervals, verdicts."""

import logging
import math
from collections.abc import Sequence
from typing import Any

from experiments.real.profile import SELF_CHECK

log = logging.getLogger(__name__)

VERDICTS = ("reproduced", "not reproduced", "not testable")


def verdict(status: str, why: str, **numbers: Any) -> dict[str, Any]:
    """One finding's verdict on the real model, with the sentence that justifies it."""
    if status not in VERDICTS:
        raise ValueError(f"verdict {status!r}; expected one of {VERDICTS}")
    return {"verdict": status, "why": why, **numbers}


def interval(iv) -> dict[str, Any]:
    """A :class:`probes.stats.Interval` as JSON, with whether it excludes 0."""
    d = iv.to_dict()
    d["excludes_0"] = bool(iv.excludes(0.0))
    return d


def fmt_iv(d: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.123 [0.01, 0.2]`` from :func:`interval`'s dict; ``-`` for none."""
    if not d:
        return "-"
    f = f"{{:.{digits}f}}"
    return f"{f.format(d['estimate'])} [{f.format(d['low'])}, {f.format(d['high'])}]"


def paired(a: Sequence, b: Sequence, resamples: int, seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap of ``mean(a - b)`` (same examples), as :func:`interval` gives it."""
    from probes.stats import bootstrap_paired_diff

    # floats: probes.stats is typed Sequence[float], which the test-time type checker holds ints to
    xa, xb = [float(x) for x in a], [float(x) for x in b]
    return interval(bootstrap_paired_diff(xa, xb, resamples=resamples, seed=seed))


def proportion(successes: int, n: int) -> dict[str, Any]:
    """Wilson interval of a proportion."""
    from probes.stats import wilson

    return interval(wilson(successes, n))


def self_checks(texts: Sequence[str]) -> list[int]:
    """Self-check phrases (:data:`SELF_CHECK`) in each text."""
    from probes.markers import count_markers

    return list(count_markers(list(texts), SELF_CHECK).per_response) if texts else []


def respond(
    model: Any,
    task: Any,
    max_new_tokens: int,
    *,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
) -> list[list[str]]:
    """Responses of ``model`` to every example of ``task`` (:func:`probes.task_metrics.respond`:
    chat template, stop at the end of the turn), as one list of ``samples`` texts per example."""
    from probes.task_metrics import respond as task_respond

    out = task_respond(
        model,
        task,
        max_new_tokens,
        samples=samples,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
    )
    return [list(t) for t in out.texts]


def correct_list(task: Any, responses: Sequence[str]) -> list[int]:
    """1 for each example answered correctly, else 0."""
    return [int(task.correct(ex, r)) for ex, r in zip(task.examples, responses, strict=True)]


def mean(values: Sequence) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def load(spec: str) -> Any:
    """A model by spec (float32 on the CPU), never with remote code."""
    from interp.models import load_model

    return load_model(spec, trust_remote_code=False)
