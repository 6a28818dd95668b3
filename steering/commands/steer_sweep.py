"""``interp steer sweep``: dose-response of a saved steering vector over scales."""

import argparse

from interp.commands import add_model_options, comma_separated

_floats = comma_separated(float, "scales", "0,2,4")
_layers = comma_separated(int, "layers", "1,2")
_words = comma_separated(str, "words", "WAIT,;")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "sweep",
        help="measure behaviour and costs of a steering vector across scales",
        description="The task's accuracy and self-check phrases per greedy response at each scale "
        "(targets) and the KL to the unsteered model on the task's gold solutions (cost); organism "
        "models default to --task organism:solve on its test split. --neutral adds the KL on "
        "neutral text (and alone, without --task, on other models).",
    )
    p.add_argument("--model", required=True, help="hf:PATH, tl:NAME or organism:NAME")
    p.add_argument("--vector", required=True, help="a directory written by `interp steer vector`")
    p.add_argument("--scales", type=_floats, default=(0.0, 1.0, 2.0, 4.0, 8.0), help="e.g. 0,2,4,8")
    p.add_argument(
        "--positions",
        choices=["all", "last"],
        default="all",
        help="all: every position; last: the last prompt token and each generated token",
    )
    p.add_argument(
        "--after-tokens",
        type=_words,
        default=None,
        help="steer only the --within positions after any of these words (each one token as it stands "
        "inside text: ' the' with its leading space for byte-level BPE tokenizers), e.g. ';,.'",
    )
    p.add_argument("--within", type=int, default=1, help="with --after-tokens: how many positions after")
    p.add_argument(
        "--at-tokens",
        type=_words,
        default=None,
        help="steer only at these words (one token each, as --after-tokens)",
    )
    p.add_argument(
        "--gate-threshold",
        type=float,
        default=None,
        help="conditional steering: only where the model's own activation at the vector's earliest hook, "
        "projected on the vector's unit direction, exceeds this (steered share reported)",
    )
    p.add_argument(
        "--layers", type=_layers, default=None, help="restrict the vector to these layers, e.g. 1,2"
    )
    p.add_argument(
        "--task",
        default=None,
        help="facts, arithmetic, a .jsonl task file, module:function or organism:fact_recall|solve",
    )
    p.add_argument("--task-split", default=None, help="one split of the task (e.g. test)")
    p.add_argument("--seed", type=int, default=0, help="draws --max-problems examples of a task")
    p.add_argument("--batch-size", type=int, default=32, help="rows per generation batch (--task)")
    p.add_argument("--neutral", default=None, help="neutral text for the KL cost, one line each")
    p.add_argument("--max-problems", type=int, default=64, help="most examples of the task, drawn by --seed")
    p.add_argument("--max-new-tokens", type=int, default=120)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory for sweep.json and sweep.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, read_lines, require_at_least
    from interp.models import load_model
    from steering.sweep import SweepConfig, check_layers, dose_response, kl_cost
    from steering.vectors import SteeringVector

    out = output_dir(args.out)  # checked before anything loads; written only at the end
    require_at_least("--max-problems", args.max_problems)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    require_at_least("--batch-size", args.batch_size)
    if args.model.startswith("organism:") and args.task is None:  # the organism's own task
        args.task, args.task_split = "organism:solve", args.task_split or "test"
    if not args.neutral and args.task is None:
        raise CommandLineError(
            f"--model {args.model!r} is not an organism: give --task SPEC (accuracy, self-checks and KL) "
            "or --neutral FILE for the KL cost"
        )
    task = None
    if args.task is not None and not _needs_model(args.task):
        task = _task(args, None)  # a bad task fails before the model loads
    _check_where(args)
    vec = SteeringVector.load(args.vector)
    layers = args.layers or None
    recorded = ((vec.meta.get("model") or {}).get("architecture") or {}).get("n_layers")
    check_layers(layers, vec, recorded if isinstance(recorded, int) else None)  # before any model loads
    neutral = read_lines(args.neutral, "--neutral", "one neutral text a line") if args.neutral else []
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    vec.check_model(model)
    check_layers(layers, vec, model.n_layers)
    positions, gate = _where(args, model, vec, layers)
    config = SweepConfig(args.scales, positions, layers, gate)
    costs = []
    targets = []
    if args.task is not None:
        from steering.task_metrics import task_metrics

        task = task if task is not None else _task(args, model)
        targets, costs = task_metrics(model, task, args.max_new_tokens, args.batch_size)
    if args.neutral:
        costs.append(kl_cost(model, [model.encode(line.strip()) for line in neutral], name="kl_neutral"))
    result = dose_response(model, vec, targets, costs, config, progress=not args.quiet)
    if task is not None:
        result = type(result)(**{**result.__dict__, "meta": {**result.meta, "task": task.describe()}})
    json_path = result.save(out / "sweep.json")
    png = result.plot(out / "sweep.png")
    print(result)
    print(f"wrote {json_path}, {png}")
    return 0


def _needs_model(spec: str) -> bool:
    return ":" in spec and not spec.startswith("organism:") and not spec.endswith(".jsonl")


def _task(args: argparse.Namespace, model):
    from interp.tasks import resolve_task

    task = resolve_task(args.task, model=model)
    if args.task_split is not None:
        task = task.split(args.task_split)
    return task.subset(args.max_problems, args.seed)


def _check_where(args: argparse.Namespace) -> None:
    """The position flags, checked before anything loads: one way of choosing positions."""
    from interp.commands import CommandLineError, require_at_least

    chosen = [
        flag
        for flag, value in (
            ("--positions last", args.positions == "last"),
            ("--after-tokens", args.after_tokens),
            ("--at-tokens", args.at_tokens),
            ("--gate-threshold", args.gate_threshold is not None),
        )
        if value
    ]
    if len(chosen) > 1:
        raise CommandLineError(f"{' and '.join(chosen)} both choose where to steer; give one of them")
    require_at_least("--within", args.within)


def _where(args: argparse.Namespace, model, vec, layers):
    """``(positions, gate)`` for :class:`steering.sweep.SweepConfig` from the position flags."""
    import torch

    from interp.selectors import AfterTokens, AtTokens
    from steering.commands.tokens import single_token
    from steering.conditional import LinearGate

    if args.after_tokens:
        ids = [single_token(model, w, "--after-tokens") for w in args.after_tokens]
        return AfterTokens(ids, within=args.within), None
    if args.at_tokens:
        return AtTokens([single_token(model, w, "--at-tokens") for w in args.at_tokens]), None
    if args.gate_threshold is not None:
        chosen = vec.select(layers)
        hook = min(
            chosen, key=lambda name: (int(name.split(".")[1]) if name.startswith("blocks.") else -1, name)
        )
        direction = chosen[hook]
        unit = direction.float() / direction.float().norm().clamp_min(torch.finfo(torch.float32).tiny)
        return None, LinearGate(hook, unit, threshold=args.gate_threshold)
    return (None if args.positions == "all" else -1), None
