"""``interp decode cot``: CoT-decoding (Wang & Zhou 2024), top-k first tokens ranked by answer confidence.

On organism models (the default task) it reports the answer accuracy and solve rate of the
greedy branch, of the most confident branch (CoT-decoding's answer), and of the best of all k
branches (an upper bound). With ``--task`` (any model) the problems are the task's prompts
rendered through the model's chat template, each branch stops at the end of the assistant's
turn, the answer is what follows the task's cue, and branches are scored by the task. Otherwise
it decodes the lines of ``--prompts FILE``, with the answer between ``--answer-after`` and
``--stop``.
"""

import argparse

from steering.commands.decode_proxy import add_problem_options, add_run_options


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``cot`` to the ``interp decode`` subcommands."""
    p = subparsers.add_parser(
        "cot",
        help="CoT-decoding: branch over the top-k first tokens, rank by answer confidence",
        description=(
            "Branch over the top-k first tokens, continue each branch greedily with a key-value cache, "
            "rank branches by the mean p(top1) - p(top2) over the answer tokens. Writes cot.json and "
            "cot.png to --out."
        ),
    )
    p.add_argument("--model", required=True, help="model spec, e.g. organism:base or hf:PATH")
    p.add_argument("--k", type=int, default=10, help="first tokens to branch over")
    add_problem_options(p, "cot", "Q s g T or Q s g A")
    p.add_argument("--answer-after", default=None, help="word that opens the answer (text prompts)")
    p.add_argument(
        "--stop", default=None, help="word that closes the answer and ends a branch (text prompts)"
    )
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: 120 cot, 16 answer, 32 text")
    p.add_argument("--batch-size", type=int, default=16, help="problems per batch (times k branches)")
    add_run_options(p, "cot.json and cot.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import output_dir, read_lines, require_at_least
    from steering.commands.decode_proxy import default_max_new_tokens

    if args.task is not None:
        if args.prompts is not None:
            raise ValueError("--task and --prompts both given; expected one source of problems")
        return _run_task(args)
    if args.prompts is None:
        from steering.commands.decode_proxy import organism_default

        organism_default(args, "--model", args.model)
        return _run_task(args, first=True)
    if args.stop is None:
        raise ValueError("--stop WORD is needed with --prompts: it closes the answer")
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    lines = read_lines(args.prompts, "--prompts")[: args.n]
    max_new = args.max_new_tokens or default_max_new_tokens(False, args.format)

    from interp.models import load_model
    from interp.results import format_table, save_json
    from steering.commands.decode_proxy import text_task
    from steering.commands.tokens import single_token
    from steering.decoding import CotConfig, cot_decode, marker_answer_span

    CotConfig(k=args.k, max_new_tokens=max_new, batch_size=args.batch_size)  # bad values: fail first
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    task = text_task(model, lines, args.stop)
    after = args.answer_after
    opener = None if after is None else single_token(model, after, "--answer-after")
    span = marker_answer_span(opener, task["stop_id"])
    cfg = CotConfig(
        k=args.k,
        max_new_tokens=max_new,
        stop_id=task["stop_id"],
        pad_id=task["pad_id"],
        batch_size=args.batch_size,
    )
    res = cot_decode(model, task["ids"], span, cfg, progress=not args.quiet)
    report: dict = {"model": res.spec, "k": args.k, "share_best_is_greedy": res.share_best_is_greedy}
    report.update(prompts=task["texts"], best_texts=[model.decode(b) for b in res.best])
    rows = [[p[:40], model.decode(b)[:60]] for p, b in zip(task["texts"][:10], res.best, strict=False)]
    table = format_table(["prompt", "most confident branch"], rows)
    report["branches"] = res.to_dict()
    json_path = save_json(report, out_dir / "cot.json")
    png_path = res.plot(out_dir / "cot.png")
    print(table)
    print(res)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0


def task_of(args: argparse.Namespace, model, first: bool = False):
    """``--task`` restricted to ``--task-split`` and ``--n`` examples drawn by ``--seed``
    (``first``: the first ``--n``, in order).

    ``None`` when ``model`` is ``None`` and the spec is a ``module:function``, which may take the
    model: it is built once the model has loaded.
    """
    from interp.tasks import resolve_task

    spec = args.task
    if model is None and ":" in spec and not spec.startswith("organism:") and not spec.endswith(".jsonl"):
        return None
    task = resolve_task(spec, model=model)
    if args.task_split is not None:
        task = task.split(args.task_split)
    if args.n is None:
        return task
    if first:
        return task.with_examples(task.examples[: args.n], first=args.n)
    return task.subset(args.n, args.seed)


def _run_task(args: argparse.Namespace, first: bool = False) -> int:
    """CoT-decoding of ``--task``'s prompts, scored by the task."""
    from interp.commands import output_dir, require_at_least
    from interp.models import load_model
    from interp.results import format_table, save_json
    from interp.tasks.render import stop_token_id
    from steering.decoding import CotConfig, cot_decode
    from steering.task_metrics import answer_text, cue_answer_span, scores, task_prompts

    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    max_new = args.max_new_tokens or 128
    CotConfig(k=args.k, max_new_tokens=max_new, batch_size=args.batch_size)  # bad values: fail first

    task = task_of(args, None, first)  # a bad task fails before the model loads
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    if task is None:
        task = task_of(args, model)
    stop = stop_token_id(model, task.stop)
    cfg = CotConfig(k=args.k, max_new_tokens=max_new, stop_id=stop, pad_id=model.pad_token_id,
                    batch_size=args.batch_size)
    res = cot_decode(model, task_prompts(model, task), cue_answer_span(model, task.answer_cue, stop), cfg,
                     progress=not args.quiet)
    greedy = scores(task, [answer_text(model, task, b, stop) for b in res.greedy])
    best = scores(task, [answer_text(model, task, b, stop) for b in res.best])
    branch_ok = [
        [task.correct(ex, answer_text(model, task, b, stop)) for b in bs]
        for ex, bs in zip(task.examples, res.branches, strict=True)
    ]
    n = len(task)
    acc = {
        "greedy": sum(greedy) / n,
        "cot-decoding": sum(best) / n,
        f"any of {args.k}": sum(map(any, branch_ok)) / n,
    }
    report: dict = {
        "model": res.spec,
        "k": args.k,
        "task": task.describe(),
        "share_best_is_greedy": res.share_best_is_greedy,
        "accuracy": acc,
        "accuracy_by_confidence_rank": [sum(ok[j] for ok in branch_ok) / n for j in range(args.k)],
        "best_texts": [answer_text(model, task, b, stop) for b in res.best],
        "branches": res.to_dict(),
    }
    json_path = save_json(report, out_dir / "cot.json")
    png_path = res.plot(out_dir / "cot.png")
    print(format_table(["decoding", "accuracy"], [[k, v] for k, v in acc.items()]))
    print(res)
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
