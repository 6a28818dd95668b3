"""``interp cache pair``: cache several models (base, fine-tunes) over the same token rows.

The command is a thin layer over :func:`interp.cache.build_paired_cache`: it checks every
flag before any model loads (one line naming the bad value), then builds ``OUT/LABEL`` for each
model, the first tokenizing the prompts and the others running on its token rows, and
``OUT/pair.json`` last. It prints each cache's ID, which is what a paper cites.

``interp.cli`` adds it to the ``interp cache`` subcommands with :func:`add_parser`.
"""

import argparse

from interp.commands import CommandLineError

EXAMPLE = "base=smollm2 tuned=hf:ckpt/sft-50"


def add_parser(cache_subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add ``pair`` to the ``interp cache`` subcommands; returns its parser."""
    from interp.cli import add_build_options

    p = cache_subparsers.add_parser(
        "pair",
        help="cache two or more models over the same token rows (a paired cache, for diffing)",
        description="Cache the activations of several models (e.g. a base model and its "
        "fine-tunes) over identical token rows: the first model tokenizes the prompts, the "
        "others run on its rows. Writes OUT/LABEL (one cache each) and OUT/pair.json, and "
        "prints each cache's ID. Rerunning on a partial OUT resumes it.",
    )
    p.add_argument(
        "--models", required=True, nargs="+", metavar="LABEL=SPEC",
        help=f"two or more labelled model specs, the first tokenizing the prompts, e.g. {EXAMPLE}",
    )
    p.add_argument("--prompts", required=True, help="a .txt/.jsonl file, organism:SPLIT or cache:DIR")
    p.add_argument("--hooks", required=True, nargs="+", help="hook names or globs")
    p.add_argument("--out", required=True, help="the pair's directory (one cache per label inside)")
    add_build_options(p)
    p.set_defaults(func=run)
    return p


def parse_models(items: list[str]) -> dict[str, str]:
    """``["base=SPEC", "tuned=SPEC"]`` as ``{"base": "SPEC", "tuned": "SPEC"}``, checked.

    Raises:
        CommandLineError: an item without ``=``, an empty label or spec, a label that cannot
            name a directory, a repeated label, a spec of no known source (or an ``hf:`` folder
            without ``config.json``), or fewer than two models.

    Example:
        >>> parse_models(["base=smollm2", "tuned=organism:sft-answer"])
        {'base': 'smollm2', 'tuned': 'organism:sft-answer'}
        >>> parse_models(["smollm2"])
        Traceback (most recent call last):
        ...
        interp.errors.CommandLineError: --models 'smollm2': expected LABEL=SPEC, like base=smollm2 ...
    """
    from interp.cache.paired import check_labels
    from interp.errors import CacheError

    models: dict[str, str] = {}
    for item in items:
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            raise CommandLineError(f"--models {item!r}: expected LABEL=SPEC, like {EXAMPLE}")
        try:
            check_labels([*models, label])
        except CacheError as exc:
            raise CommandLineError(f"--models {item!r}: {exc}") from None
        _check_spec(item, spec)
        models[label] = spec
    if len(models) < 2:
        raise CommandLineError(
            f"--models {' '.join(items)}: a paired cache needs two or more models, like {EXAMPLE}"
        )
    return models


def _check_spec(item: str, spec: str) -> None:
    """What can be checked of a spec without loading it: its source, and an hf: folder's config."""
    from pathlib import Path

    from interp import real_model
    from interp.models import SPEC_KINDS

    kind, sep, rest = spec.partition(":")
    if not sep and spec in real_model.NAMED_MODELS:
        return
    if not sep or not rest or kind not in ("hf", "tl", "organism", "gguf"):
        raise CommandLineError(
            f"--models {item!r}: unknown model spec {spec!r}; expected one of {SPEC_KINDS}"
        )
    if kind == "hf" and not (Path(rest).expanduser() / "config.json").is_file():
        raise CommandLineError(
            f"--models {item!r}: {rest!r} is not a Hugging Face model directory (no config.json there)"
        )


def run(args: argparse.Namespace) -> int:
    from interp.cache import CacheConfig, build_paired_cache
    from interp.cli import _lead, _load_options
    from interp.commands import output_dir
    from interp.prompts import resolve_prompts

    models = parse_models(args.models)
    out = output_dir(args.out)  # nothing is created before every check has passed
    config = CacheConfig(
        hooks=tuple(args.hooks),
        positions=args.positions,
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard_tokens=args.shard_tokens,
        max_tokens=args.max_tokens,
        max_seq_len=args.max_seq_len,
        seed=args.seed,
    )
    source = resolve_prompts(args.prompts, field=args.prompt_field)  # fails before any model loads
    pair = build_paired_cache(
        models, source, out, config, progress=not args.quiet,
        load_options={**_load_options(args), "dtype": args.model_dtype},
    )
    if not _lead():
        return 0
    width = max(len(label) for label in pair.labels)
    for label in pair.labels:
        print(f"{label:<{width}}  {pair[label].id}")  # noqa: T201 (a command's output)
    first = pair[pair.labels[0]]
    print(  # noqa: T201
        f"{len(pair.labels)} caches over {first.n_rows} rows, {first.n_positions} positions each "
        f"-> {out} (pair.json)"
    )
    return 0
