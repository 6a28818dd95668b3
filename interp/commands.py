"""Pieces shared by every package's command-line subcommands (``interp probe|sae|steer|decode``).

``interp`` itself imports no subcommand package; ``probes`` and ``steering`` call these. The
checks here run before any model loads, so a bad flag answers at once with one line naming the
flag, its value and what is accepted (:class:`CommandLineError`), and nothing is written.
"""

import argparse
import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interp.errors import CommandLineError  # noqa: F401  (re-exported: commands import it from here)


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


MODEL_DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser, *, placement: bool = True) -> None:
    """Add ``--model-dtype`` (and ``--device``, unless the command already has it) to a command,
    and with ``placement`` ``--device-map`` / ``--max-memory`` for models larger than one device.

    Every command that loads a model calls this, and passes the first two on:
    ``load_model(spec, device=args.device, dtype=args.model_dtype)``. The placement flags need
    no passing: ``interp``'s ``main`` loads every model of the command with them (see
    :func:`interp.models.default_placement`). A command that cannot use a device map (one that
    trains) passes ``placement=False``.

    Example:
        >>> p = argparse.ArgumentParser()
        >>> add_model_options(p)
        >>> args = p.parse_args(["--model-dtype", "bfloat16", "--device-map", "auto",
        ...                      "--max-memory", "cpu=2GiB"])
        >>> args.model_dtype, args.device, args.device_map, args.max_memory
        ('bfloat16', None, 'auto', {'cpu': '2GiB'})
    """
    try:
        parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if any)")
    except argparse.ArgumentError:  # the command has its own --device (with its own default)
        pass
    parser.add_argument(
        "--model-dtype",
        choices=MODEL_DTYPES,
        default="float32",
        help="the dtype the model's weights are loaded in (default float32)",
    )
    if not placement:
        return
    parser.add_argument(
        "--device-map", type=device_map_arg, default=None, metavar="MAP",
        help="spread an hf: model over devices instead of --device: auto, balanced, balanced_low_0, "
        "sequential, one device, or a JSON object from Hugging Face module name to device",
    )
    parser.add_argument(
        "--max-memory", type=max_memory_arg, default=None, metavar="DEV=SIZE,...",
        help="budget per device for --device-map auto|balanced|sequential, e.g. cpu=2GiB,cuda:0=40GiB",
    )


def device_map_arg(text: str) -> str | dict:
    """An argparse ``type`` for ``--device-map``: a strategy or device name, or a JSON object.

    Example:
        >>> device_map_arg("auto"), device_map_arg('{"": "cpu"}')
        ('auto', {'': 'cpu'})
    """
    from interp.placement import PlacementError, check_placement

    value: Any = text.strip()
    if value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a JSON object ({exc}); expected e.g. "
                '\'{"model.embed_tokens": 0, "model.layers.0": 0, "lm_head": 1}\''
            ) from None
    try:
        check_placement(value, None)
    except PlacementError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def max_memory_arg(text: str) -> dict[str, str]:
    """An argparse ``type`` for ``--max-memory``: ``DEVICE=SIZE`` pairs, comma-separated.

    Example:
        >>> max_memory_arg("cpu=2GiB")
        {'cpu': '2GiB'}
    """
    from interp.placement import PlacementError, check_max_memory

    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if p.count("=") != 1 or not all(s.strip() for s in p.split("="))]
    if not pairs or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated DEVICE=SIZE pairs like cpu=2GiB,cuda:0=40GiB"
            + (f" ({bad[0]!r} is not one)" if bad else "")
        )
    given = {k.strip(): v.strip() for k, v in (p.split("=") for p in pairs)}
    try:
        check_max_memory(given)
    except PlacementError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return given


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


def require_at_least(flag: str, value: int | None, minimum: int = 1) -> None:
    """Refuse a count below ``minimum`` (``None``, an unset optional flag, passes).

    Raises:
        CommandLineError: names the flag, the value and the smallest accepted one.

    Example:
        >>> require_at_least("--n", 0)
        Traceback (most recent call last):
        ...
        interp.errors.CommandLineError: --n 0: expected an integer >= 1
    """
    if value is not None and value < minimum:
        raise CommandLineError(f"{flag} {value}: expected an integer >= {minimum}")


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be (or already is) an output directory.

    Nothing is created: the command makes the directory when it writes its results, so a
    refusal here or a failure later leaves nothing behind.

    Raises:
        CommandLineError: ``path`` or one of its parents is a file, or the nearest existing
            parent is not writable.

    Example:
        >>> output_dir("/dev/null/results")
        Traceback (most recent call last):
        ...
        interp.errors.CommandLineError: --out '/dev/null/results': '/dev/null' is a file, ...
    """
    p = Path(path).expanduser()
    for existing in (p, *p.parents):
        if existing.is_dir():
            break
        if existing.exists() or existing.is_symlink():
            where = "" if existing == p else f": {str(existing)!r}"
            raise CommandLineError(
                f"{flag} {str(path)!r}{where} is a file, not a directory; "
                "expected a new or existing directory"
            )
    else:  # pragma: no cover - the file-system root always exists
        return p
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandLineError(
            f"{flag} {str(path)!r}: {str(existing)!r} is not writable; expected a directory you can write"
        )
    return p


def read_lines(path: str | Path, flag: str, expected: str = "one prompt a line") -> list[str]:
    """The non-blank lines of a UTF-8 text file named by ``flag``, without their line ends.

    Raises:
        CommandLineError: the file is missing, is a directory, is not UTF-8 (the message names
            the line) or has no non-blank line.

    Example:
        >>> read_lines("/nonexistent.txt", "--prompts")
        Traceback (most recent call last):
        ...
        interp.errors.CommandLineError: --prompts '/nonexistent.txt' does not exist; expected a UTF-8 ...
    """
    p = Path(path).expanduser()
    what = f"expected a UTF-8 text file, {expected}"
    if p.is_dir():
        raise CommandLineError(f"{flag} {str(path)!r} is a directory; {what}")
    if not p.is_file():
        raise CommandLineError(f"{flag} {str(path)!r} does not exist; {what}")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CommandLineError(
            f"{flag} {str(path)!r} line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); {what}"
        ) from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise CommandLineError(f"{flag} {str(path)!r} has no non-blank line; {what}")
    return lines
