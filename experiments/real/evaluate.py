"""One checkpoint, measured once: arithmetic answers (accuracy, self-checks) and fact recall.

Every later stage compares checkpoints example by example, so everything is kept per example:
``correct`` and ``self_checks`` per arithmetic problem, ``exact`` and ``logprob`` per fact.
"""

import logging
from typing import Any

from experiments.real.common import correct_list, mean, proportion, respond, self_checks
from experiments.real.profile import RealProfile

log = logging.getLogger(__name__)


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
