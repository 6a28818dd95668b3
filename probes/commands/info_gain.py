"""``interp probe info-gain``: information gain of a model's own traces under a fixed scorer.

On organism models the default task is the organism's path-finding; with ``--task`` any model's
responses to the task (through its chat template) are split by the task's step splitter and the
gold answer is scored after the task's answer cue.
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
    p.add_argument("--split", default="test_id", choices=["train", "test_id", "test_ood"])
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
    from probes.commands.task_args import no_task_message

    if args.task is None and not args.model.startswith("organism:"):
        raise CommandLineError(no_task_message("--model", args.model))
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    if args.task is not None:
        return _run_task(args, out_dir)

    import dataclasses

    import torch

    from interp.models import load_model
    from interp.organism.store import load_world
    from interp.organism.traces import cot_prompt
    from probes.info_gain import InfoGainConfig, info_gain, organism_reference, split_organism_trace
    from probes.passk import generate_continuations

    world, _ = load_world()
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    scorer = (
        model
        if args.scorer == args.model
        else load_model(args.scorer, device=args.device, dtype=args.model_dtype)
    )
    problems = world.split(args.split)[: args.n]
    prompts = [cot_prompt(s, g) for s, g in problems]
    gen = torch.Generator().manual_seed(args.seed)
    outs = generate_continuations(
        model,
        [model.encode(p) for p in prompts],
        args.max_new_tokens,
        args.temperature,
        stop_id=model.encode_plain("E")[-1],
        generator=gen,
    )
    questions, traces, answers, skipped = [], [], [], 0
    for (s, g), prompt, out in zip(problems, prompts, outs, strict=True):
        words = model.decode(out).split()
        steps, _ = split_organism_trace(words)
        if not steps:
            skipped += 1
            continue
        questions.append(prompt)
        traces.append(steps)
        answers.append(organism_reference(world, s, g, words))
    if not traces:
        raise ValueError(f"none of the {len(problems)} responses of {args.model} has a step to score")
    marker = "A" if args.answer_marker is None else args.answer_marker
    config = InfoGainConfig(answer_marker=marker, batch_size=args.batch_size)
    result = info_gain(scorer, questions, traces, answers, config, progress=not args.quiet)
    meta = {
        **result.meta,
        "model": model.spec,
        "split": args.split,
        "n_problems": len(problems),
        "skipped_without_steps": skipped,
        "temperature": args.temperature,
        "seed": args.seed,
    }
    result = dataclasses.replace(result, meta=meta)
    json_path = result.save(out_dir / "info_gain.json")
    png_path = result.plot(out_dir / "info_gain.png")
    print(result)
    print(f"wrote {json_path}\nwrote {png_path}")
    return 0


def _run_task(args: argparse.Namespace, out_dir) -> int:
    """Info gain on ``--task``: the model's own responses, the task's steps, cue and gold answers."""
    import dataclasses

    from interp.models import load_model
    from probes.commands.task_args import needs_model, resolve
    from probes.info_gain import InfoGainConfig, info_gain
    from probes.task_metrics import info_gain_inputs, respond, text_model

    task = None
    if not needs_model(args.task):
        task = resolve(args.task, None, args.task_split, args.n, args.seed)
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
        batch_size=args.batch_size,
    ).first()
    questions, traces, answers, kept = info_gain_inputs(model, task, responses)
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
