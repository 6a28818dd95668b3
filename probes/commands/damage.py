"""``interp probe damage``: localise in which layers fine-tuning damaged a task (organism models)."""

import argparse

from interp.commands import add_model_options

TASKS = ("fact_recall", "solve_rate")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``damage`` to the ``interp probe`` subcommands."""
    p = subparsers.add_parser(
        "damage",
        help="layer-wise damage localisation between a base and a fine-tuned model",
        description=(
            "Cross-model patching both ways, probe retention, weight-change norms and linear CKA, "
            "per layer and component; writes damage.json and damage.png to --out."
        ),
    )
    p.add_argument("--base", required=True, help="the model before fine-tuning, e.g. organism:base")
    p.add_argument("--tuned", required=True, help="the fine-tuned model, e.g. organism:sft-answer")
    p.add_argument("--task", default="fact_recall", choices=TASKS, help="the organism scorer")
    p.add_argument("--split", default="test_id", help="problems for solve_rate")
    p.add_argument("--max-problems", type=int, default=None, help="most problems for solve_rate")
    p.add_argument("--max-new-tokens", type=int, default=120, help="generation budget for solve_rate")
    p.add_argument("--directions", default="both", choices=["both", "restore"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="directory for damage.json and damage.png")
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import output_dir, require_at_least
    from interp.models import load_model
    from probes.damage import DamageConfig, localise_damage, organism_probe_task, organism_scorer

    for spec in (args.base, args.tuned):
        if not spec.startswith("organism:"):
            raise ValueError(
                f"--task {args.task} scores organism models; {spec!r} is not organism:NAME (for other "
                "models call probes.damage.localise_damage with your own scorer)"
            )
    require_at_least("--max-problems", args.max_problems)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    config = DamageConfig(directions=args.directions, batch_size=args.batch_size)  # bad values: fail first
    scorer = organism_scorer(
        args.task, split=args.split, max_problems=args.max_problems, max_new_tokens=args.max_new_tokens
    )
    base = load_model(args.base, device=args.device, dtype=args.model_dtype)
    tuned = load_model(args.tuned, device=args.device, dtype=args.model_dtype)
    report = localise_damage(
        base, tuned, scorer, probe_task=organism_probe_task(), config=config, progress=not args.quiet
    )
    json_path = report.save(out_dir / "damage.json")
    png_path = report.plot(out_dir / "damage.png")
    print(report)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
