"""One checkpoint, measured once: arithmetic answers (accuracy, self-checks) and fact recall.

Every later stage compares checkpoints example by example, so everything is kept per example:
``correct`` and ``self_checks`` per arithmetic problem, ``exact`` and ``logprob`` per fact.
"""

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from experiments.real.common import correct_list, mean, proportion, respond, self_checks
from experiments.real.profile import RealProfile

log = logging.getLogger(__name__)


EVAL_VERSION = 2
"""Bumped whenever what :func:`evaluate` measures changes: older stored evaluations are then ignored."""


def eval_key(model: Any, problems: Any, facts: Any, profile: RealProfile) -> str:
    """What an evaluation depends on: the weights (fingerprint), the examples, the budget."""
    what = {
        "version": EVAL_VERSION,
        "model": model.fingerprint,
        "problems": [[ex.id, ex.prompt, ex.answer] for ex in problems.examples],
        "facts": [[ex.id, ex.split, ex.prompt, ex.answer] for ex in facts.examples],
        "max_new_tokens": profile.max_new_tokens,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def evaluate_stored(
    model: Any, problems: Any, facts: Any, profile: RealProfile, store: "Path | None"
) -> dict[str, Any]:
    """:func:`evaluate`, read back from ``store`` when the same weights were measured on the same
    examples before (a rerun), else measured and stored there (atomically) for the next run."""
    from interp.atomic import atomic_write_json

    if store is None:
        return evaluate(model, problems, facts, profile)
    key = eval_key(model, problems, facts, profile)
    path = Path(store) / f"eval-{key[:24]}.json"
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            kept = None
        if isinstance(kept, dict) and kept.get("key") == key:
            log.info("evaluation of %s reused from %s", model.spec, path)
            return kept["evaluation"]
        log.warning("%s is damaged or stale; measuring again", path)
    out = evaluate(model, problems, facts, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "evaluation": out})
    return out


def evaluate(model: Any, problems: Any, facts: Any, profile: RealProfile) -> dict[str, Any]:
    """Greedy answers to ``problems`` and greedy recall plus log-probability of ``facts``.

    Args:
        model: a loaded model.
        problems: the arithmetic test problems (a task).
        facts: known facts with splits ``rehearsed`` and ``heldout`` (a task).
        profile: sizes (response budget).

    Returns:
        Per-example lists and their summaries; ``responses`` keeps the texts (for steering
        and the report's examples).
    """
    from interp.tasks.facts import fact_logprob

    responses = [r[0] for r in respond(model, problems, profile.max_new_tokens)]
    correct = correct_list(problems, responses)
    checks = self_checks(responses)
    out: dict[str, Any] = {
        "spec": model.spec,
        "fingerprint": model.fingerprint,
        "responses": responses,
        "correct": correct,
        "accuracy": mean(correct),
        "accuracy_wilson": proportion(sum(correct), len(correct)),
        "self_checks": checks,
        "self_checks_per_response": mean(checks),
        "mean_response_chars": mean([len(r) for r in responses]),
        "facts": {},
    }
    for split in facts.splits:
        sub = facts.split(split)
        replies = [r[0] for r in respond(model, sub, 24)]
        exact = correct_list(sub, replies)
        logprob = [float(x) for x in fact_logprob(model, sub)]
        out["facts"][split] = {
            "ids": [ex.id for ex in sub.examples],
            "exact": exact,
            "logprob": logprob,
            "recall": mean(exact),
            "mean_logprob": mean(logprob),
        }
    return out


def summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The numbers of an evaluation without its per-example lists (for tables)."""
    facts = {
        s: {"recall": f["recall"], "mean_logprob": f["mean_logprob"], "n": len(f["exact"])}
        for s, f in ev["facts"].items()
    }
    return {
        "accuracy": ev["accuracy"],
        "accuracy_wilson": ev["accuracy_wilson"],
        "self_checks_per_response": ev["self_checks_per_response"],
        "n_problems": len(ev["correct"]),
        "facts": facts,
    }
