"""``interp sae|steer|decode|diff ...``: registered with the ``interp`` command line through entry points.

Each subcommand lives in ``steering/commands/<name>.py`` and exposes ``add_parser(subparsers)``,
which adds its parser and sets ``func`` to a function ``(args) -> int``; heavy imports happen
inside that function so that ``interp --help`` stays fast.
"""

import argparse

from interp.commands import add_command_modules

GROUPS = {
    "sae": ("train SAEs on caches and rank their features", ("sae_train", "sae_features")),
    "steer": ("steering vectors and dose-response sweeps", ("steer_vector", "steer_sweep")),
    "decode": (
        "decoding-time tuning: proxy-tuning, model-diff amplification and CoT-decoding",
        ("decode_proxy", "decode_amplify", "decode_cot"),
    ),
    "diff": (
        "model diffing: crosscoders and the activation-difference lens",
        ("diff_crosscoder", "diff_lens"),
    ),
}


def _add_group(subparsers: "argparse._SubParsersAction", group: str) -> argparse.ArgumentParser:
    help_text, modules = GROUPS[group]
    p = subparsers.add_parser(group, help=help_text)
    sub = p.add_subparsers(dest=f"{group}_command", required=True, metavar="ACTION")
    add_command_modules(sub, "steering.commands", modules)
    return p


def add_sae_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    return _add_group(subparsers, "sae")


def add_steer_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    return _add_group(subparsers, "steer")


def add_decode_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    return _add_group(subparsers, "decode")


def add_diff_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    return _add_group(subparsers, "diff")
