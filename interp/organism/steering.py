"""The organism's targets and costs for a steering sweep (:func:`steering.sweep.dose_response`).

``steering`` knows no world; an experiment on the organism picks these::

    from steering.sweep import dose_response, kl_cost
    targets, costs = organism_metrics(model, tok, world, kl_cost=kl_cost)
    result = dose_response(model, vec, targets, costs)
"""

from collections.abc import Callable, Mapping
from typing import Any

Metric = Callable[[Any], Mapping[str, float]]


def organism_metrics(
    model,
    tok,
    world,
    max_problems: int | None = 64,
    max_new_tokens: int = 120,
    batch_size: int = 64,
    kl_cost: Callable[[Any, list[list[int]]], Metric] | None = None,
) -> tuple[list[Metric], list[Metric]]:
    """Default targets and costs for the built-in organism.

    Targets: ``markers_per_response`` and ``solve_rate_id`` on greedy chain-of-thought responses
    to held-out problems, ``solve_rate_ood`` on the out-of-distribution split. Costs:
    ``fact_recall`` (greedy ``F n :`` completions), ``trace_validity`` (share of in-distribution
    traces whose every step is valid) and, given ``kl_cost``, ``kl_to_unsteered`` on the world's
fact lines.

    Args:
        model: the organism (a :class:`interp.models.Model` or ``HookedTransformer``).
        tok: its :class:`interp.organism.WordTokenizer`.
        world: its :class:`interp.organism.World`.
        max_problems: most problems per split (``None``: all).
        max_new_tokens: generation budget per response.
        batch_size: prompts per generation batch.
        kl_cost: :func:`steering.sweep.kl_cost`, to add the KL cost (``interp`` does not import
            ``steering``; the caller hands it in).

    Returns:
        ``(targets, costs)``, lists of metrics for :func:`dose_response`.
    """
    from interp.generation import generate as gen
    from interp.organism.evaluate import markers_per_response, solve_rate, trace_validity
    from interp.organism.traces import cot_prompt, fact_prompt
    from interp.organism.validator import validate_trace

    stop = tok.token_id("E")

    def respond(m, prompts: list[str], budget: int) -> list[list[str]]:
        ids = gen(
            m,
            [tok.encode(p) for p in prompts],
            budget,
            stop_id=stop,
            pad_id=tok.pad_token_id,
            batch_size=batch_size,
        )
        return [tok.words(o) for o in ids]

    probs = {s: world.split(s)[:max_problems] for s in ("test_id", "test_ood")}
    cached: dict[str, Any] = {}

    def traces(m, split: str):
        words = respond(m, [cot_prompt(a, b) for a, b in probs[split]], max_new_tokens)
        return words, [validate_trace(world, a, b, w) for (a, b), w in zip(probs[split], words, strict=True)]

    def behaviour(m) -> dict[str, float]:
        words, checks = traces(m, "test_id")
        cached["checks_id"] = checks  # reused by the trace-validity cost at the same scale
        _, checks_ood = traces(m, "test_ood")
        return {
            "markers_per_response": markers_per_response(words),
            "solve_rate_id": solve_rate(checks),
            "solve_rate_ood": solve_rate(checks_ood),
        }

    def recall_and_validity(m) -> dict[str, float]:
        outs = respond(m, [fact_prompt(n) for n in range(world.n_nodes)], 8)
        ok = [o == [f"n{v}" for v in world.neighbours(n)] + ["E"] for n, o in enumerate(outs)]
        checks = cached.pop("checks_id", None) or traces(m, "test_id")[1]
        return {"fact_recall": sum(ok) / len(ok), "trace_validity": trace_validity(checks)}

    facts = [
        tok.encode(f"{fact_prompt(n)} " + " ".join(f"n{v}" for v in world.neighbours(n)) + " E")
        for n in range(world.n_nodes)
    ]
    costs = [recall_and_validity] + ([kl_cost(model, facts)] if kl_cost is not None else [])
    return [behaviour], costs
