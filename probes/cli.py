"""``interp probe ...``: registered with the ``interp`` command line through an entry point.

Each subcommand lives in ``probes/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which adds its parser and sets ``func`` to a function ``(args) -> int``; heavy imports happen
inside that function so that ``interp --help`` stays fast.
"""

import argparse
import importlib

COMMANDS = ("info_gain", "entropy", "faithfulness", "damage")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``probe`` and its subcommands to the ``interp`` parser."""
    p = subparsers.add_parser("probe", help="reasoning metrics, faithfulness, damage localisation")
    sub = p.add_subparsers(dest="probe_command", required=True, metavar="METRIC")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"probes.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"probes.commands.{name}":
                raise
            continue  # not built yet
        mod.add_parser(sub)
    return p
