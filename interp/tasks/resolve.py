"""One resolver for every ``--task``: built-in names, task files, the organism, and user functions."""

import importlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.tasks.protocol import Task, TaskError

SPEC_FORMS = (
    "'facts', 'arithmetic', a .jsonl task file, 'module:function', "
    "'organism:fact_recall' or 'organism:solve'"
)
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _call(fn: Callable[..., Any], spec: str, kwargs: dict[str, Any], **fixed: Any) -> Any:
    """Call ``fn`` with ``kwargs``, refusing in one line an option it does not take."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    allowed = set(kwargs) if takes_any else set(named)
    unknown = sorted(set(kwargs) - (allowed - set(fixed)))
    if unknown:
        accepted = [n for n in named if n not in fixed]
        raise TaskError(f"task {spec!r} takes no option {unknown[0]!r}; it takes {accepted}")
    return fn(**fixed, **kwargs)


def resolve_task(spec: "str | Path | Task", model: Any = None, **kwargs: Any) -> Task:
    """Turn a task spec into a :class:`Task`.

    Args:
        spec: ``facts`` (:func:`~interp.tasks.facts.facts_task`; with ``known=True`` and a model,
            filtered by :func:`~interp.tasks.facts.known_facts`), ``arithmetic``
            (:func:`~interp.tasks.arithmetic.arithmetic_task`), a ``.jsonl`` task file
            (:func:`~interp.tasks.jsonl.load_jsonl_task`), ``organism:fact_recall`` or
            ``organism:solve`` (the zoo's world; option ``zoo_dir``), ``module:function`` (the
            module is imported only because the user named it; the function returns a Task and
            gets ``model`` when it takes that argument), or a :class:`Task` (returned as is).
        model: the loaded model, for specs that need one.
        **kwargs: options of the chosen task (``n=``, ``seed=``, ...).

    Returns:
        The task.

    Raises:
        TaskError: an unknown spec (the message lists the accepted forms), an option the task
            does not take, a module or function that cannot be found, or a function that does
            not return a Task.

    Example:
        >>> resolve_task("arithmetic", n=3).name
        'arithmetic'
        >>> resolve_task("nonsense")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        interp.tasks.protocol.TaskError: unknown task 'nonsense'; expected 'facts', 'arithmetic', ...
    """
    if isinstance(spec, Task):
        if kwargs:
            raise TaskError(f"task {spec.name!r} is already built; options {sorted(kwargs)} do not apply")
        return spec
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise TaskError(f"task spec {spec!r}; expected {SPEC_FORMS}")
    if spec == "facts":
        from interp.tasks.facts import facts_task, known_facts

        known = kwargs.pop("known", False)
        task = _call(facts_task, spec, kwargs)
        if known:
            if model is None:
                raise TaskError("task 'facts' with known=True needs the model whose known facts to keep")
            task = known_facts(model, task)
        return task
    if spec == "arithmetic":
        from interp.tasks.arithmetic import arithmetic_task

        return _call(arithmetic_task, spec, kwargs)
    kind, sep, rest = spec.partition(":")
    if sep and kind == "organism":
        from interp.organism.tasks import organism_task

        return organism_task(rest, **kwargs)
    if spec.endswith(".jsonl") or Path(spec).expanduser().is_file():
        from interp.tasks.jsonl import load_jsonl_task

        if not spec.endswith(".jsonl"):
            raise TaskError(f"task file {spec!r} is not a .jsonl file; expected {SPEC_FORMS}")
        return _call(load_jsonl_task, spec, kwargs, path=spec)
    if sep and _DOTTED.fullmatch(kind) and _NAME.fullmatch(rest):
        return _from_function(spec, kind, rest, model, kwargs)
    raise TaskError(f"unknown task {spec!r}; expected {SPEC_FORMS}")


def _from_function(spec: str, module_name: str, name: str, model: Any, kwargs: dict[str, Any]) -> Task:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"task {spec!r}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise TaskError(f"task {spec!r}: module {module_name!r} has no function {name!r}")
    params = inspect.signature(fn).parameters
    fixed = {"model": model} if "model" in params else {}
    task = _call(fn, spec, kwargs, **fixed)
    if not isinstance(task, Task):
        raise TaskError(f"task {spec!r}: {name}() returned {type(task).__name__}, not an interp.tasks.Task")
    return task
