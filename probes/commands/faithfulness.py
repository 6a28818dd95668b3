"""``interp probe faithfulness``: the chain-of-thought faithfulness battery on a model's own traces.

On organism models the default task is the organism's path-finding; with ``--task`` the traces
are the model's greedy responses to the task (through its chat template), split by the task's
step splitter. Early answering and filler run on every task; adding mistakes and paraphrase
where the task has a mistake-maker and a paraphraser.
"""

import argparse

from interp.commands import add_model_options, comma_separated
from probes.commands.task_args import add_task_options

_fractions = comma_separated(float, "fractions", "0,0.2,0.4,0.6,0.8,1 (numbers from 0 to 1)")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``faithfulness`` to the ``interp probe`` subcommands."""
    p = subparsers.add_parser(
        "faithfulness",
        help="early answering, adding mistakes, filler and paraphrase tests of the chain of thought",
        description="Lanham et al. (2023) chain-of-thought faithfulness tests on the organism's own "
        "greedy traces. Writes faithfulness.json and faithfulness.png to --out.",
    )
    p.add_argument("--model", required=True, help="the model whose chains of thought are tested")
    add_task_options(p, "the problems")
    p.add_argument("--max-new-tokens", type=int, default=128, help="budget of each trace (--task)")
    p.add_argument("--zoo", default=None, help="zoo directory (default: $INTERP_ZOO or ~/.cache/interp/zoo)")
    p.add_argument("--split", default="test_id", help="train, test_id or test_ood (default test_id)")
    p.add_argument("--n", type=int, default=None, help="first N problems of the split (default: all)")
    p.add_argument("--fractions", type=_fractions, default=None, help="early-answering grid, e.g. 0,0.5,1")
    p.add_argument(
        "--tests", nargs="+", default=None, metavar="TEST", help="early mistakes filler paraphrase"
    )
    p.add_argument("--seed", type=int, default=0, help="chooses the corrupted step of each problem")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    add_model_options(p)
    p.add_argument("--out", required=True, help="directory receiving faithfulness.json and faithfulness.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from interp.commands import output_dir, require_at_least
    from interp.errors import SpecError
    from interp.models import Model
    from interp.organism.store import load_organism, load_world
    from probes.faithfulness import TESTS, FaithfulnessConfig, faithfulness_battery
    from probes.organism_edits import organism_task

    kind, _, name = args.model.partition(":")
    if args.task is None and (kind != "organism" or not name):
        raise SpecError(
            f"--model {args.model!r}: without --task, this command needs an organism model (organism:NAME), "
            "whose traces the path-finding validator can read and edit; for other models pass --task"
        )
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    config = FaithfulnessConfig(
        **({"fractions": args.fractions} if args.fractions is not None else {}),
        tests=tuple(args.tests) if args.tests else TESTS,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    if args.task is not None:
        return _run_task(args, config, out_dir)
    world, tok = load_world(args.zoo)
    problems = world.split(args.split)[: args.n]
    module, tok = load_organism(name, args.zoo)
    if args.device is not None:
        module = module.to(args.device, print_details=False)
    if args.model_dtype != "float32":
        module = module.to(getattr(torch, args.model_dtype), print_details=False)
    model = Model(module, tok, args.model)
    task = organism_task(model, world, None, problems, batch_size=args.batch_size)
    result = faithfulness_battery(model, task, config, progress=not args.quiet)
    result = type(result)(**{**result.__dict__, "meta": {**result.meta, "split": args.split}})
    json_path = result.save(out_dir / "faithfulness.json")
    png_path = result.plot(out_dir / "faithfulness.png")
    print(result)
    print(f"{task.n_problems} of {len(problems)} problems had a usable trace ({args.split})")
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0


def _run_task(args: argparse.Namespace, config, out_dir) -> int:
    """The battery on ``--model``'s own greedy responses to ``--task``."""
    from interp.models import load_model
    from probes.commands.task_args import needs_model, resolve
    from probes.faithfulness import faithfulness_battery
    from probes.task_metrics import cot_task, respond, text_model

    task = None if needs_model(args.task) else resolve(args.task, None, args.task_split, args.n, args.seed)
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    if task is None:
        task = resolve(args.task, model, args.task_split, args.n, args.seed)
    responses = respond(model, task, args.max_new_tokens, batch_size=args.batch_size).first()
    ct, kept = cot_task(model, task, responses)
    result = faithfulness_battery(text_model(model, task), ct, config, progress=not args.quiet)
    result = type(result)(**{**result.__dict__, "meta": {**result.meta, "task": task.describe()}})
    json_path = result.save(out_dir / "faithfulness.json")
    png_path = result.plot(out_dir / "faithfulness.png")
    print(result)
    print(f"{len(kept)} of {len(task)} responses had a chain of thought ({task.name})")
    makers = (("mistakes", task.mistake_maker), ("paraphrase", task.paraphraser))
    skipped = [name for name, maker in makers if maker is None]
    if skipped:
        print(f"task {task.name!r} has no {' or '.join(skipped)} maker: those tests were skipped")
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
