"""``interp probe passk``: unbiased pass@k of a model on a task, with bootstrap intervals."""

import argparse

from interp.commands import add_model_options, comma_separated
from probes.commands.task_args import add_task_options

_ks = comma_separated(int, "k", "1,2,4 (whole numbers from 1 to --n)")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``passk`` to the ``interp probe`` subcommands."""
    p = subparsers.add_parser(
        "passk",
        help="unbiased pass@k from N sampled responses per problem (PAPERS.md §6)",
        description="Sample --n responses of --model to each problem of --task (through its chat "
        "template, stopping at the end of the turn), score them with the task, and report the "
        "unbiased pass@k at each k with a 95%% bootstrap interval over problems. Writes passk.json "
        "and passk.png to --out.",
    )
    p.add_argument("--model", required=True, help="organism:NAME, hf:PATH, gguf:PATH, smollm2, ...")
    add_task_options(p, "the problems")
    p.add_argument("--n", type=int, default=8, help="samples per problem (default 8)")
    p.add_argument("--k", type=_ks, default=(1, 2, 4), help="budgets, e.g. 1,2,4 (each <= --n)")
    p.add_argument("--problems", type=int, default=None, help="most problems (default: all)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: all tokens)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the top-k tokens only")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory for passk.json and passk.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from interp.commands import CommandLineError, output_dir, require_at_least
    from probes.commands.task_args import needs_model, no_task_message, resolve

    spec = args.task
    if spec is None:
        if not args.model.startswith("organism:"):
            raise CommandLineError(no_task_message("--model", args.model))
        spec = "organism:solve"
    require_at_least("--n", args.n)
    require_at_least("--problems", args.problems)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    require_at_least("--batch-size", args.batch_size)
    require_at_least("--top-k", args.top_k)
    bad = [k for k in args.k if not 1 <= k <= args.n]
    if bad or not args.k:
        raise CommandLineError(f"--k {bad[0] if bad else ''}: expected budgets from 1 to --n {args.n}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise CommandLineError(
            f"--temperature {args.temperature}: expected a number > 0 (samples must differ)"
        )
    if not (0 < args.top_p <= 1):
        raise CommandLineError(f"--top-p {args.top_p}: expected a number in (0, 1]")
    out_dir = output_dir(args.out)
    task = None if needs_model(spec) else resolve(spec, None, args.task_split, args.problems, args.seed)

    from interp.models import load_model
    from probes.task_metrics import task_pass_at_k

    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    if task is None:
        task = resolve(spec, model, args.task_split, args.problems, args.seed)
    result = task_pass_at_k(
        model,
        task,
        args.n,
        args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    json_path = result.save(out_dir / "passk.json")
    png_path = result.plot(out_dir / "passk.png")
    from interp.results import format_table

    rows = []
    for k, v in result.pass_at.items():
        iv = result.meta["intervals"][str(k)]
        rows.append([k, v, "" if iv is None else f"[{iv['low']:.3f}, {iv['high']:.3f}]"])
    print(
        f"{task.name}: {len(task)} problems, {args.n} samples each, T={args.temperature}, top-p {args.top_p}"
    )
    print(format_table(["k", "pass@k", "95% interval"], rows))
    print(f"wrote {json_path}\nwrote {png_path}")
    return 0
