"""The organism's scorers and probe rows for :func:`probes.damage.localise_damage`.

``probes`` knows no world: an experiment picks these for the organism and hands them in::

    from probes.damage import ProbeTask, localise_damage
    report = localise_damage(base, tuned, organism_scorer("fact_recall"),
                             probe_task=ProbeTask(*organism_probe_rows()))
"""

import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from interp.models import Model


def organism_scorer(
    task: Literal["fact_recall", "solve_rate"] = "fact_recall",
    zoo_dir: str | Path | None = None,
    split: str = "test_id",
    max_problems: int | None = None,
    max_new_tokens: int = 120,
) -> Callable[[Model], float]:
    """A scorer for organism models: greedy fact recall over every fact of the world (one
    batched generation), or the solve rate (valid trace and right answer) on a split.

    Args:
        task: ``fact_recall`` or ``solve_rate``.
        zoo_dir: the zoo whose world is used (default as in :func:`interp.organism.load_world`).
        split: problems for ``solve_rate``.
        max_problems: most problems (``None``: the whole split).
        max_new_tokens: generation budget per response for ``solve_rate``.

    Returns:
        ``scorer(model) -> float``, higher is better.

    Raises:
        ValueError: an unknown task; SpecError: no zoo.
    """
    from interp.organism.evaluate import check_responses, fact_recall, respond, solve_rate
    from interp.organism.store import load_world
    from interp.organism.traces import cot_prompt

    if task not in ("fact_recall", "solve_rate"):
        raise ValueError(f"task={task!r}; expected 'fact_recall' or 'solve_rate'")
    world, tok = load_world(zoo_dir)
    problems = world.split(split)[:max_problems]

    def score(model: Model) -> float:
        if task == "fact_recall":
            return fact_recall(model.module, tok, world)
        responses = respond(model.module, tok, [cot_prompt(s, g) for s, g in problems], max_new_tokens)
        return solve_rate(check_responses(world, problems, responses))

    score.__name__ = task if task == "fact_recall" else f"solve_rate_{split}"
    return score


def organism_probe_rows(
    zoo_dir: str | Path | None = None, max_problems: int = 200, seed: int = 0
) -> tuple[str, tuple[tuple[int, ...], ...], tuple[int, ...], tuple[int, ...]]:
    """Is this edge a fact? Labelled at the fact-recall position, in two contexts.

    Rows are a fact prompt ``F x : y`` and the start of a trace ``Q s g T s : y``; the label,
    read at ``y`` (where the model has just recalled, or been shown, the first neighbour), is
    1 when ``y`` is an out-neighbour of the node whose fact is being recalled, else 0. Each
    node / problem gets its true neighbours and as many seeded non-neighbours, so the classes
    are balanced. A binary label keeps the probe fit fast at any ``d_model`` (a probe over
    every node name would need ``n_nodes`` classes, one or two examples each).

    Returns:
        ``(name, tokens, positions, labels)``, the fields of a :class:`probes.damage.ProbeTask`
        (``ProbeTask(*organism_probe_rows())``).

    Raises:
        SpecError: no zoo at ``zoo_dir``.
    """
    from interp.organism.store import load_world
    from interp.organism.traces import cot_prompt, fact_prompt

    world, tok = load_world(zoo_dir)
    rng = random.Random(seed)
    contexts = [(fact_prompt(x), x) for x in range(world.n_nodes)]
    contexts += [
        (f"{cot_prompt(s, g)} n{s} :", s) for s, g in (world.split("train") + world.split("test_id"))
    ]
    contexts = contexts[: world.n_nodes + max_problems]
    rows, labels = [], []
    for text, node in contexts:
        good = world.neighbours(node)
        bad = rng.sample([v for v in range(world.n_nodes) if v not in good and v != node], len(good))
        for y, label in [(v, 1) for v in good] + [(v, 0) for v in bad]:
            rows.append(tuple(tok.encode(f"{text} n{y}")))
            labels.append(label)
    return "edge is a fact (at the recalled neighbour)", tuple(rows), (-1,) * len(rows), tuple(labels)
