"""``--task SPEC`` for every probe command: checked when parsed, resolved before the model loads.

A spec is what :func:`interp.tasks.resolve_task` takes: ``facts``, ``arithmetic``, a ``.jsonl``
task file, ``module:function`` or ``organism:fact_recall|solve``. Its shape is checked by
argparse (one line, ``invalid choice``), the task itself is built before any model loads, except
a ``module:function`` that takes the model, which is built right after.
"""

import argparse
import re
from pathlib import Path
from typing import Any

_FUNCTION = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
BUILT_IN = ("facts", "arithmetic")
# the organism's world splits (``--split``), by the names of its ``organism:solve`` task's splits
ORGANISM_SPLITS = {"train": "train", "test_id": "test", "test_ood": "ood"}


def task_spec(text: str) -> str:
    """An argparse ``type``: a spec of a form :func:`interp.tasks.resolve_task` accepts.

    Example:
        >>> task_spec("arithmetic"), task_spec("organism:solve")
        ('arithmetic', 'organism:solve')
    """
    from interp.tasks.resolve import SPEC_FORMS

    if (
        text in BUILT_IN
        or text.endswith(".jsonl")
        or Path(text).expanduser().is_file()
        or _FUNCTION.fullmatch(text)
    ):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (expected {SPEC_FORMS})")


def add_task_options(p: argparse.ArgumentParser, what: str) -> None:
    """Add ``--task SPEC`` and ``--task-split NAME`` to a command."""
    p.add_argument(
        "--task",
        type=task_spec,
        default=None,
        help=f"{what}: facts, arithmetic, a .jsonl task file, module:function or organism:fact_recall|solve "
        "(default: the organism's own task on organism: models)",
    )
    p.add_argument("--task-split", default=None, help="one split of the task (e.g. test, heldout)")


def needs_model(spec: str) -> bool:
    """Whether resolving waits for the model (``module:function``, which may take it)."""
    return not spec.startswith("organism:") and bool(_FUNCTION.fullmatch(spec))


def resolve(
    spec: str, model: Any = None, split: str | None = None, n: int | None = None, seed: int = 0,
    first: bool = False,
):
    """The task of ``spec``, restricted to ``split`` and at most ``n`` examples drawn by ``seed``
    (``first``: the first ``n``, in order, as the organism's ``--split`` problems always were)."""
    from interp.tasks import resolve_task
    from probes.task_metrics import select

    if first:
        task = select(resolve_task(spec, model=model), split)
        return task if n is None else task.with_examples(task.examples[:n], first=n)
    return select(resolve_task(spec, model=model), split, n, seed)


def organism_default(args: Any) -> bool:
    """Without ``--task`` on an organism model: ``--task organism:solve`` on the ``--split`` problems.

    Sets ``args.task`` and ``args.task_split``; returns whether it did (then the first ``--n``
    problems of the split are taken, in order).
    """
    if args.task is not None:
        return False
    args.task, args.task_split = "organism:solve", ORGANISM_SPLITS[args.split]
    return True


def no_task_message(flag: str, spec: str) -> str:
    return (
        f"{flag} {spec!r}: without --task, expected organism:NAME (the organism's own task); "
        "for other models pass --task facts, arithmetic, a .jsonl file or module:function"
    )
