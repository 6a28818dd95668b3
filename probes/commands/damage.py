"""``interp probe damage``: localise in which layers fine-tuning damaged a task.

The scorer comes from ``--task``, any task spec (``facts``, ``arithmetic``, a ``.jsonl`` file,
``module:function``, ``organism:fact_recall|solve``) scored by ``--metric``: the mean
log-probability of the gold answers or the accuracy of greedy responses. On organism models the
default is ``organism:fact_recall``; ``fact_recall`` and ``solve_rate`` name the organism's tasks
(``organism:fact_recall``, and ``organism:solve`` on the ``--split`` problems).
"""

import argparse

from interp.commands import add_model_options
from probes.commands.task_args import ORGANISM_SPLITS, task_spec

TASKS = ("fact_recall", "solve_rate")  # short names of the organism's tasks
METRICS = ("accuracy", "logprob")


def _task(text: str) -> str:
    return text if text in TASKS else task_spec(text)


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
    p.add_argument(
        "--task", type=_task, default=None,
        help="a task: facts, arithmetic, a .jsonl task file, module:function, organism:fact_recall|solve "
        "(default organism:fact_recall on organism models; fact_recall and solve_rate are short for "
        "organism:fact_recall and organism:solve on --split)",
    )
    p.add_argument(
        "--metric", choices=METRICS, default=None,
        help="how a task is scored: logprob of the gold answers (default for facts) or accuracy of "
        "greedy responses (default otherwise)",
    )
    p.add_argument("--task-split", default=None, help="one split of the task (e.g. heldout)")
    p.add_argument(
        "--split", default="test_id", help="organism problems for solve_rate: train, test_id or test_ood"
    )
    p.add_argument("--max-problems", type=int, default=None, help="most problems of the task or solve_rate")
    p.add_argument("--max-new-tokens", type=int, default=120, help="generation budget for accuracy")
    p.add_argument("--seed", type=int, default=0, help="draws --max-problems examples of a task")
    p.add_argument("--directions", default="both", choices=["both", "restore"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="directory for damage.json and damage.png")
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, require_at_least
    from interp.models import load_model
    from interp.tasks import render_prompt
    from probes.commands.task_args import needs_model, resolve
    from probes.damage import DamageConfig, localise_damage
    from probes.task_metrics import task_scorer

    not_organism = [spec for spec in (args.base, args.tuned) if not spec.startswith("organism:")]
    short = args.task is None or args.task in TASKS
    if short and not_organism:
        raise CommandLineError(
            f"--task {args.task or 'fact_recall'} scores organism models; {not_organism[0]!r} is not "
            "organism:NAME (for other models pass --task facts, arithmetic, a .jsonl file or module:function)"
        )
    if short and args.metric is not None:
        name = args.task or "fact_recall"
        raise CommandLineError(f"--metric {args.metric}: applies to a --task spec, not to {name}")
    if short:  # the organism's own tasks, resolved by name like any other
        if args.task == "solve_rate":
            if args.split not in ORGANISM_SPLITS:
                raise CommandLineError(
                    f"--split: unknown split {args.split!r}; expected one of {list(ORGANISM_SPLITS)}"
                )
            args.task, args.task_split = "organism:solve", ORGANISM_SPLITS[args.split]
        else:
            args.task = "organism:fact_recall"
        args.metric = "accuracy"
    require_at_least("--max-problems", args.max_problems)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    config = DamageConfig(directions=args.directions, batch_size=args.batch_size)  # bad values: fail first
    task = None
    if not needs_model(args.task):
        task = resolve(args.task, None, args.task_split, args.max_problems, args.seed)
    base = load_model(args.base, device=args.device, dtype=args.model_dtype)
    tuned = load_model(args.tuned, device=args.device, dtype=args.model_dtype)
    if task is None:
        task = resolve(args.task, base, args.task_split, args.max_problems, args.seed)
    metric = args.metric or ("logprob" if task.name == "facts" else "accuracy")
    scorer = task_scorer(task, metric, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    tokens = [render_prompt(base, ex.prompt) for ex in task.examples]
    report = localise_damage(
        base, tuned, scorer, tokens=tokens, probe_task=None, config=config, progress=not args.quiet
    )
    json_path = report.save(out_dir / "damage.json")
    png_path = report.plot(out_dir / "damage.png")
    print(report)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
