"""``interp decode proxy``: proxy-tuning, base + alpha * (expert - antiexpert), against the base alone.

With ``--task`` (any model) it decodes the task's prompts, rendered through the base model's chat
template, with the proxy and with the base (and the expert, and ``--tuned`` if given); each
continuation stops at the end of the assistant's turn (or the task's stop) and is scored by the
task, with the share of the gap to the directly tuned model that the proxy closes (Liu et al.
2024). On organism models the default task is ``organism:answer`` (``--format answer``) or
``organism:solve`` (``--format cot``) on the first ``--n`` problems of ``--split``. Otherwise it
continues the lines of ``--prompts FILE``.
"""

import argparse

from interp.commands import add_model_options

FORMATS = ("answer", "cot")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``proxy`` to the ``interp decode`` subcommands."""
    p = subparsers.add_parser(
        "proxy",
        help="proxy-tuning: decode with base + alpha * (expert - antiexpert)",
        description=(
            "Decode with logits base + alpha * (expert - antiexpert), three models with one key-value "
            "cache each, in lockstep; log per token whether the offset changed the base model's choice. "
            "Writes proxy.json and proxy.png to --out."
        ),
    )
    p.add_argument("--base", required=True, help="the model to steer, e.g. organism:base")
    p.add_argument("--expert", required=True, help="the small tuned model, e.g. organism:small-tuned")
    p.add_argument("--antiexpert", required=True, help="the small untuned model, e.g. organism:small-base")
    p.add_argument("--tuned", default=None, help="the directly tuned model, for the share of the gap closed")
    add_shared_options(p)
    p.set_defaults(func=run)


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """The options ``proxy`` shares with ``amplify``: alpha, problems, decoding, output."""
    p.add_argument("--alpha", type=float, default=1.0, help="offset weight (negative undoes a fine-tune)")
    add_problem_options(p, "answer", "Q s g A or Q s g T")
    p.add_argument("--stop", default=None, help="word that ends a continuation (default organism: E)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: 16 answer, 120 cot, 32 text")
    p.add_argument("--batch-size", type=int, default=64)
    add_run_options(p, "proxy.json and proxy.png")


def add_problem_options(p: argparse.ArgumentParser, default_format: str, format_help: str) -> None:
    """Where the problems come from, shared by the ``interp decode`` commands: organism split and
    format, ``--task`` (with its split and seed), or ``--prompts FILE``; ``--n`` caps them."""
    p.add_argument("--split", default="test_id", help="organism problems: test_id, test_ood or train")
    p.add_argument(
        "--format", default=default_format, choices=FORMATS, help=f"organism prompts: {format_help}"
    )
    p.add_argument("--n", type=int, default=None, help="most problems (or prompts)")
    p.add_argument(
        "--task", default=None,
        help="facts, arithmetic, a .jsonl task file, module:function or organism:fact_recall|solve",
    )
    p.add_argument("--task-split", default=None, help="one split of the task (e.g. test)")
    p.add_argument("--seed", type=int, default=0, help="draws --n examples of a task")
    p.add_argument(
        "--prompts", default=None, help="text file, one prompt a line (models other than organism)"
    )


def add_run_options(p: argparse.ArgumentParser, writes: str) -> None:
    """``--out`` (the folder for ``writes``), ``--device``, the model options and ``--quiet``."""
    p.add_argument("--out", required=True, help=f"directory for {writes}")
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def text_task(model, lines: list[str], stop: str | None) -> dict:
    """Prompt lines (from :func:`interp.commands.read_lines`) encoded by ``model``; ``stop``: one token."""
    from steering.commands.tokens import single_token

    lines = [s.strip() for s in lines]
    stop_id = None if stop is None else single_token(model, stop, "--stop")
    return {
        "texts": lines,
        "ids": [model.encode(t) for t in lines],
        "stop_id": stop_id,
        "pad_id": model.pad_token_id,
    }


# the organism's world splits (``--split``), by the names of its tasks' splits
ORGANISM_SPLITS = {"train": "train", "test_id": "test", "test_ood": "ood"}


def organism_default(args: argparse.Namespace, flag: str, spec: str) -> None:
    """Without ``--task`` or ``--prompts``: the organism's own problems as a task like any other,
    ``organism:answer`` (``--format answer``) or ``organism:solve`` on ``--split``.

    Raises:
        CommandLineError: ``spec`` is not an organism model, or an unknown ``--split``.
    """
    from interp.commands import CommandLineError, require_at_least

    if not spec.startswith("organism:"):
        raise CommandLineError(
            f"{flag} {spec!r} is not an organism model: pass --task SPEC or --prompts FILE"
        )
    if args.split not in ORGANISM_SPLITS:
        raise CommandLineError(
            f"--split: unknown split {args.split!r}; expected one of {list(ORGANISM_SPLITS)}"
        )
    require_at_least("--max-new-tokens", args.max_new_tokens)  # before a 0 is taken for "not given"
    args.task = "organism:answer" if args.format == "answer" else "organism:solve"
    args.task_split = ORGANISM_SPLITS[args.split]
    args.max_new_tokens = args.max_new_tokens or default_max_new_tokens(True, args.format)


def default_max_new_tokens(organism: bool, fmt: str) -> int:
    """The generation budget when ``--max-new-tokens`` is not given: 32 text, 16 answer, 120 cot."""
    return 32 if not organism else 16 if fmt == "answer" else 120


def run(args: argparse.Namespace) -> int:
    from interp.commands import output_dir, read_lines, require_at_least

    if args.task is not None:
        if args.prompts is not None:
            raise ValueError("--task and --prompts both given; expected one source of problems")
        return _run_task(args)
    if args.prompts is None:
        organism_default(args, "--base", args.base)
        return _run_task(args, first=True)
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    lines = read_lines(args.prompts, "--prompts")[: args.n]
    max_new = args.max_new_tokens or default_max_new_tokens(False, args.format)

    from interp.generation import generate
    from interp.results import format_table, save_json
    from steering.decoding import ProxyConfig, proxy_tune

    ProxyConfig(
        alpha=args.alpha, max_new_tokens=max_new, batch_size=args.batch_size
    )  # bad values: fail first
    models = load_models(args)
    base, expert, anti = (models.get(f) for f in ("--base", "--expert", "--antiexpert"))
    task = text_task(base, lines, args.stop)
    cfg = ProxyConfig(
        alpha=args.alpha,
        max_new_tokens=max_new,
        stop_id=task["stop_id"],
        pad_id=task["pad_id"],
        batch_size=args.batch_size,
    )
    res = proxy_tune(base, expert, anti, task["ids"], cfg, progress=not args.quiet)
    base_out = generate(
        base, task["ids"], max_new, stop_id=cfg.stop_id, pad_id=cfg.pad_id, batch_size=args.batch_size
    )
    texts = [base.decode(t) for t in res.tokens]
    report: dict = {"alpha": args.alpha, "models": res.models, "changed_share": res.changed_share}
    report.update(prompts=task["texts"], proxy_texts=texts, base_texts=[base.decode(t) for t in base_out])
    rows = [[p[:40], t[:60]] for p, t in zip(task["texts"][:10], texts, strict=False)]
    table = format_table(["prompt", "proxy continuation"], rows)
    report["tokens"] = res.to_dict()
    json_path = save_json(report, out_dir / "proxy.json")
    png_path = res.plot(out_dir / "proxy.png")
    print(table)
    print(res)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0


def load_models(args: argparse.Namespace) -> dict:
    """``--base``, ``--expert``, ``--antiexpert`` (and ``--tuned``), refused unless one vocabulary."""
    from interp.models import load_model
    from steering.proxy_tuning import check_same_vocab

    flags = {
        "--base": args.base, "--expert": args.expert, "--antiexpert": args.antiexpert, "--tuned": args.tuned
    }
    loaded: dict[str, object] = {}  # a spec in two roles loads once (and decodes once per step)
    models = {}
    for flag, spec in flags.items():
        if spec is not None:
            if spec not in loaded:
                loaded[spec] = load_model(spec, device=args.device, dtype=args.model_dtype)
            models[flag] = loaded[spec]
    check_same_vocab(models)  # before decoding
    return models


def _run_task(args: argparse.Namespace, first: bool = False) -> int:
    """Proxy-tuning on ``--task``'s prompts, each decoding scored by the task (``first``: the
    first ``--n`` examples in order, as the organism's ``--split`` problems always were)."""
    from interp.commands import output_dir, require_at_least
    from interp.generation import generate
    from interp.results import format_table, save_json
    from interp.tasks.render import stop_token_id
    from steering.commands.decode_cot import task_of
    from steering.decoding import ProxyConfig, proxy_tune
    from steering.task_metrics import answer_text, scores, task_prompts

    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    max_new = args.max_new_tokens or 128
    # bad values fail before anything loads
    ProxyConfig(alpha=args.alpha, max_new_tokens=max_new, batch_size=args.batch_size)
    task = task_of(args, None, first)  # a bad task fails before the models load
    models = load_models(args)
    base = models["--base"]
    if task is None:
        task = task_of(args, base)
    stop = stop_token_id(base, task.stop)
    cfg = ProxyConfig(alpha=args.alpha, max_new_tokens=max_new, stop_id=stop, pad_id=base.pad_token_id,
                      batch_size=args.batch_size)
    prompts = task_prompts(base, task)
    res = proxy_tune(base, models["--expert"], models["--antiexpert"], prompts, cfg, progress=not args.quiet)
    outputs = {"proxy": res.tokens}
    for name, flag in (("base", "--base"), ("expert", "--expert"), ("tuned", "--tuned")):
        if flag in models:
            outputs[name] = generate(models[flag], prompts, max_new, stop_id=stop, pad_id=cfg.pad_id,
                                     batch_size=args.batch_size)
    texts = {name: [answer_text(base, task, o, stop) for o in outs] for name, outs in outputs.items()}
    accuracy = {name: sum(scores(task, t)) / len(task) for name, t in texts.items()}
    report: dict = {
        "alpha": args.alpha,
        "models": res.models,
        "task": task.describe(),
        "changed_share": res.changed_share,
        "accuracy": accuracy,
        "proxy_texts": texts["proxy"],
        "base_texts": texts["base"],
    }
    if "tuned" in accuracy:
        b, t = accuracy["base"], accuracy["tuned"]
        report["gap_closed"] = (accuracy["proxy"] - b) / (t - b) if t != b else None
    report["tokens"] = res.to_dict()
    json_path = save_json(report, out_dir / "proxy.json")
    png_path = res.plot(out_dir / "proxy.png")
    print(format_table(["decoding", "accuracy"], [[k, v] for k, v in accuracy.items()]))
    if "gap_closed" in report:
        print(f"gap closed (accuracy): {report['gap_closed']}")
    print(res)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
