"""Pieces shared by every package's command-line subcommands (``interp probe|sae|steer|decode``).

``interp`` itself imports no subcommand package; ``probes`` and ``steering`` call these.
"""

import argparse
import importlib
from collections.abc import Callable, Sequence
from typing import Any


def add_command_modules(
    subparsers: "argparse._SubParsersAction", package: str, modules: Sequence[str]
) -> None:
    """Let each ``package.MODULE`` add its subcommand (``MODULE.add_parser(subparsers)``).

    A module that does not exist yet is skipped; an import error inside one is raised.
    """
    for name in modules:
        try:
            mod = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            continue
        mod.add_parser(subparsers)


def comma_separated(cast: Callable[[str], Any], what: str, example: str) -> Callable[[str], tuple]:
    """An argparse ``type`` for comma-separated values, with an error naming ``what`` and an example.

    Example:
        >>> comma_separated(float, "scales", "0,2,4")("0,2.5")
        (0.0, 2.5)
    """

    def parse(text: str) -> tuple:
        try:
            return tuple(cast(p) for p in text.split(",") if p.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} {text!r} must be comma-separated, like {example}"
            ) from None

    return parse
