"""``interp probe entropy``: token entropy and forking tokens of a model's own responses.

The responses are the model's answers to ``--task``'s prompts (through its chat template, to the
end of the turn); on organism models the default task is ``organism:solve`` on ``--split``.
"""

import argparse

from interp.commands import add_model_options
from probes.commands.task_args import add_task_options


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "entropy",
        help="token entropy, forking tokens, and the shift from a base model (PAPERS.md §7)",
        description="Sample responses of --model to organism problems, measure the entropy at every "
        "response token and where the forking (top-entropy) tokens fall; with --base, also how far "
        "--model's distributions moved from --base's, against --base's entropy.",
    )
    p.add_argument("--model", required=True, help="the model whose sampled responses are measured")
    add_task_options(p, "the prompts")
    p.add_argument("--base", default=None, help="a base model to measure the distribution shift from")
    p.add_argument(
        "--split", default="test_id", choices=["train", "test_id", "test_ood"],
        help="organism problems without --task (the first --n of them)",
    )
    p.add_argument("--n", type=int, default=None, help="most problems (default: the whole split)")
    p.add_argument("--samples", type=int, default=1, help="responses per problem")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling and entropy temperature")
    p.add_argument("--top-fraction", type=float, default=0.2, help="share of tokens called forking")
    p.add_argument("--measure", default="kl", choices=["kl", "js"])
    p.add_argument("--max-new-tokens", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory for entropy.json/png (and shift.json/png)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, require_at_least
    from probes.commands.task_args import no_task_message, organism_default

    if args.task is None and not args.model.startswith("organism:"):
        raise CommandLineError(no_task_message("--model", args.model))
    require_at_least("--n", args.n)
    require_at_least("--samples", args.samples)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    return _run_task(args, out_dir, organism_default(args))


def _models(args: argparse.Namespace):
    """``--model`` and ``--base`` (or ``None``), refused when their tokenizers differ."""
    from interp.commands import CommandLineError
    from interp.models import load_model

    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    base = load_model(args.base, device=args.device, dtype=args.model_dtype) if args.base else None
    if base is not None and (base.d_vocab, base.tokenizer_hash()) != (model.d_vocab, model.tokenizer_hash()):
        raise CommandLineError(
            f"--base {args.base!r} (d_vocab {base.d_vocab}) has another tokenizer than --model "
            f"{args.model!r} (d_vocab {model.d_vocab}); expected two models of one tokenizer"
        )
    return model, base


def _run_task(args: argparse.Namespace, out_dir, default: bool = False) -> int:
    """Entropy of ``--model``'s sampled responses to ``--task`` (and the shift from ``--base``).

    ``default``: the organism's own problems (``--split``, the first ``--n``), generated in
    batches of 256 rows as they always were, so samples are drawn as before.
    """
    from probes.commands.task_args import needs_model, resolve
    from probes.entropy import EntropyConfig, distribution_shift, entropy_profile
    from probes.task_metrics import respond, text_token_type

    organism = args.task.startswith("organism:")
    config = EntropyConfig(
        top_fraction=args.top_fraction, temperature=args.temperature, batch_size=args.batch_size,
        step_separator=";" if organism else None,
    )
    task = None
    if not needs_model(args.task):
        task = resolve(args.task, None, args.task_split, args.n, args.seed, first=default)
    model, base = _models(args)
    if task is None:
        task = resolve(args.task, model, args.task_split, args.n, args.seed)
    out = respond(
        model, task, args.max_new_tokens, samples=args.samples, temperature=args.temperature,
        seed=args.seed, batch_size=256 if default else args.batch_size,
    )
    pairs = [(list(p), list(o)) for p, outs in zip(out.prompts, out.ids, strict=True) for o in outs if o]
    if not pairs:
        raise ValueError(f"{args.model} generated no response tokens for task {task.name!r}")
    prompts, outs = [p for p, _ in pairs], [o for _, o in pairs]
    token_type = None if organism else text_token_type
    kw = {} if token_type is None else {"token_type": token_type}
    result = entropy_profile(model, prompts, outs, config, progress=not args.quiet, **kw)
    result = type(result)(**{**result.__dict__, "meta": {**result.meta, "task": task.describe()}})
    shift = None
    if base is not None:  # measured before anything is written, so a failure leaves nothing
        shift = distribution_shift(base, model, prompts, outs, args.measure, config, progress=not args.quiet)
    paths = [result.save(out_dir / "entropy.json"), result.plot(out_dir / "entropy.png")]
    print(result)
    if shift is not None:
        paths += [shift.save(out_dir / "shift.json"), shift.plot(out_dir / "shift.png")]
        print(shift)
    print("\n".join(f"wrote {p}" for p in paths))
    return 0
