"""``interp probe info-gain``: information gain of a model's own traces under a fixed scorer.

Any model's responses to ``--task`` (through its chat template) are split by the task's step
splitter and the gold answer is scored after the task's answer cue. On organism models the
default task is ``organism:solve`` on ``--split``, scored against each trace's own answer when it
is a shortest path.
"""

import argparse

from interp.commands import add_model_options
from probes.commands.task_args import add_task_options


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "info-gain",
        help="step-wise information gain of generated traces (PAPERS.md §1)",
        description="Generate chain-of-thought traces with --model on organism problems, split them "
        "into steps, and score how each step changes the reference answer's likelihood under --scorer.",
    )
    p.add_argument("--scorer", required=True, help="the fixed scoring model: organism:NAME, hf:PATH, tl:NAME")
    p.add_argument("--model", required=True, help="the model whose traces are scored")
    add_task_options(p, "the problems")
    p.add_argument(
        "--split", default="test_id", choices=["train", "test_id", "test_ood"],
        help="organism problems without --task (the first --n of them)",
    )
    p.add_argument("--n", type=int, default=None, help="most problems (default: the whole split)")
    p.add_argument("--max-new-tokens", type=int, default=120)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy traces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--answer-marker", default=None,
        help="words before the answer (default: the task's answer cue; 'A' for the organism)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory for info_gain.json and info_gain.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, require_at_least
    from probes.commands.task_args import no_task_message, organism_default

    if args.task is None and not args.model.startswith("organism:"):
        raise CommandLineError(no_task_message("--model", args.model))
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    return _run_task(args, out_dir, organism_default(args))


def _run_task(args: argparse.Namespace, out_dir, default: bool = False) -> int:
    """Info gain on ``--task``: the model's own responses, the task's steps, cue and gold answers.

    ``default``: the organism's own problems (``--split``, the first ``--n``, generated in
    batches of 256 rows as they always were); the reference is the trace's own answer when it is
    a shortest path, else the gold path, each ending with ``E``.
    """
    import dataclasses

    from interp.models import load_model
    from probes.commands.task_args import needs_model, resolve
    from probes.info_gain import InfoGainConfig, info_gain
    from probes.task_metrics import info_gain_inputs, respond, text_model

    task = None
    if not needs_model(args.task):
        task = resolve(args.task, None, args.task_split, args.n, args.seed, first=default)
        marker = task.answer_cue if args.answer_marker is None else args.answer_marker
        config = InfoGainConfig(answer_marker=marker, separator=task.joiner, batch_size=args.batch_size)
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    scorer = (
        model
        if args.scorer == args.model
        else load_model(args.scorer, device=args.device, dtype=args.model_dtype)
    )
    if task is None:
        task = resolve(args.task, model, args.task_split, args.n, args.seed)
        marker = task.answer_cue if args.answer_marker is None else args.answer_marker
        config = InfoGainConfig(answer_marker=marker, separator=task.joiner, batch_size=args.batch_size)
    responses = respond(
        model, task, args.max_new_tokens, temperature=args.temperature, seed=args.seed,
        batch_size=256 if default else args.batch_size,
    ).first()
    questions, traces, answers, kept = info_gain_inputs(
        model, task, responses, reference="own" if default else "gold"
    )
    if not traces:
        raise ValueError(
            f"none of the {len(task)} responses of {args.model} to task {task.name!r} has a step to score "
            "(by the task's step splitter)"
        )
    result = info_gain(text_model(scorer, task), questions, traces, answers, config, progress=not args.quiet)
    meta = {
        **result.meta,
        "model": model.spec,
        "task": task.describe(),
        **({"split": args.split} if default else {}),
        "n_problems": len(task),
        "skipped_without_steps": len(task) - len(kept),
        "temperature": args.temperature,
        "seed": args.seed,
    }
    result = dataclasses.replace(result, meta=meta)
    json_path = result.save(out_dir / "info_gain.json")
    png_path = result.plot(out_dir / "info_gain.png")
    print(result)
    print(f"{len(kept)} of {len(task)} responses had steps ({task.name})")
    print(f"wrote {json_path}\nwrote {png_path}")
    return 0
