"""``interp steer vector``: a steering vector from contrastive prompts or labelled cached positions."""

import argparse

from interp.commands import add_model_options, comma_separated

_int_tuple = comma_separated(int, "integers", "0,2,3")


def _ints(text: str) -> list[int]:
    return list(_int_tuple(text))


def _positions(text: str):
    if text in ("last", "all"):
        return text
    try:
        values = _ints(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"positions {text!r} must be 'last', 'all' or comma-separated integers like 0,-1"
        ) from None
    return values[0] if len(values) == 1 else values


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "vector",
        help="build a steering vector (difference of means or PCA) and save it to a directory",
        description="From --positive/--negative prompt files (one prompt per line) with --model, "
        "or from --cache DIR with --labels FILE (one 0/1 per cached position).",
    )
    p.add_argument("--model", help="hf:PATH, tl:NAME or organism:NAME (with --positive/--negative)")
    p.add_argument("--positive", help="prompts showing the behaviour, one per line")
    p.add_argument("--negative", help="prompts without it, one per line (paired with --positive for pca)")
    p.add_argument("--cache", help="an activation cache directory (instead of --model and prompts)")
    p.add_argument("--labels", help="with --cache: a text file of 0/1, one per cached position")
    p.add_argument("--layers", type=_ints, default=None, help="layers, e.g. 1,2 (site: --site)")
    p.add_argument("--site", default="hook_resid_post", help="residual site at each layer")
    p.add_argument("--hooks", nargs="+", default=None, help="hook names or globs (instead of --layers)")
    p.add_argument("--method", default="mean", choices=["mean", "pca"])
    p.add_argument("--positions", type=_positions, default="last", help="last, all, or 0,-1,...")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory for vector.safetensors, vector.json, vector.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, read_lines, require_at_least

    require_at_least("--batch-size", args.batch_size)
    out_dir = output_dir(args.out)  # checked before any model loads; written only at the end
    if args.cache:
        if not args.labels:
            raise CommandLineError("--cache needs --labels FILE (one 0/1 per cached position)")
        raw = [line.strip() for line in read_lines(args.labels, "--labels", "one 0 or 1 a line")]
        bad = [v for v in raw if v not in ("0", "1")]
        if bad:
            raise CommandLineError(f"--labels {args.labels!r}: labels must be 0 or 1, found {bad[:3]}")
    else:
        if not (args.model and args.positive and args.negative):
            raise CommandLineError("give --model with --positive and --negative, or --cache with --labels")
        if args.hooks is None and args.layers is None:
            raise CommandLineError("give --layers (e.g. 1,2) or --hooks")
        positive = read_lines(args.positive, "--positive")
        negative = read_lines(args.negative, "--negative")

    import torch

    from steering.vectors import from_cache, from_prompts, layer_hooks

    if args.cache:
        hooks = args.hooks or (layer_hooks(args.layers, args.site) if args.layers is not None else None)
        vec = from_cache(args.cache, torch.tensor([v == "1" for v in raw]), hooks)
    else:
        from interp.models import load_model

        model = load_model(args.model, device=args.device, dtype=args.model_dtype)
        hooks = args.hooks or layer_hooks(args.layers, args.site)
        vec = from_prompts(
            model,
            positive,
            negative,
            hooks,
            args.method,
            args.positions,
            args.batch_size,
            progress=not args.quiet,
        )
    out = vec.save(out_dir)
    png = vec.plot(out / "vector.png")
    print(vec)
    print(f"wrote {out / 'vector.safetensors'}, {out / 'vector.json'}, {png}")
    return 0
