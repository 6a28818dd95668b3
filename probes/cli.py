"""``interp probe ...``: registered with the ``interp`` command line through an entry point.

Each subcommand lives in ``probes/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which adds its parser and sets ``func`` to a function ``(args) -> int``; heavy imports happen
inside that function so that ``interp --help`` stays fast.
"""

import argparse

from interp.commands import add_command_modules

COMMANDS = ("info_gain", "entropy", "faithfulness", "damage", "passk")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``probe`` and its subcommands to the ``interp`` parser."""
    p = subparsers.add_parser("probe", help="reasoning metrics, faithfulness, damage localisation")
    sub = p.add_subparsers(dest="probe_command", required=True, metavar="METRIC")
    add_command_modules(sub, "probes.commands", COMMANDS)
    return p
