"""``interp probe faithfulness``: the chain-of-thought faithfulness battery on a model's own traces.

On organism models the default task is the organism's path-finding; with ``--task`` the traces
are the model's greedy responses to the task (through its chat template), split by the task's
step splitter. Early answering and filler run on every task; adding mistakes and paraphrase
where the task has a mistake-maker and a paraphraser.
"""

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager

from interp.commands import add_model_options, comma_separated
from probes.commands.task_args import ORGANISM_SPLITS, add_task_options

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
    p.add_argument("--max-new-tokens", type=int, default=128, help="budget of each trace")
    p.add_argument("--zoo", default=None, help="zoo directory (default: $INTERP_ZOO or ~/.cache/interp/zoo)")
    p.add_argument(
        "--split", default="test_id",
        help="organism problems without --task: train, test_id or test_ood (default test_id)",
    )
    p.add_argument("--n", type=int, default=None, help="N problems drawn by --seed (default: all)")
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


ZOO_ENV = "INTERP_ZOO"  # where organism: specs are looked up (interp.organism.store)


def run(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, require_at_least
    from interp.errors import SpecError
    from probes.faithfulness import TESTS, FaithfulnessConfig

    kind, _, name = args.model.partition(":")
    if args.task is None and (kind != "organism" or not name):
        raise SpecError(
            f"--model {args.model!r}: without --task, this command needs an organism model (organism:NAME), "
            "whose traces the path-finding validator can read and edit; for other models pass --task"
        )
    if args.task is None and args.split not in ORGANISM_SPLITS:
        raise CommandLineError(f"--split {args.split!r}: expected one of {list(ORGANISM_SPLITS)}")
    require_at_least("--n", args.n)
    require_at_least("--max-new-tokens", args.max_new_tokens)
    out_dir = output_dir(args.out)
    config = FaithfulnessConfig(
        **({"fractions": args.fractions} if args.fractions is not None else {}),
        tests=tuple(args.tests) if args.tests else TESTS,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    meta = {}
    if args.task is None:  # the organism's own path-finding, as a task like any other
        args.task, args.task_split = "organism:solve", ORGANISM_SPLITS[args.split]
        meta["split"] = args.split
    with _zoo(args.zoo):
        return _run_task(args, config, out_dir, meta)


@contextmanager
def _zoo(path: str | None) -> Iterator[None]:
    """``--zoo`` for this command only: organism models and tasks are read from it."""
    old = os.environ.get(ZOO_ENV)
    if path is not None:
        os.environ[ZOO_ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ZOO_ENV, None)
        else:
            os.environ[ZOO_ENV] = old


def _run_task(args: argparse.Namespace, config, out_dir, meta: dict) -> int:
    """The battery on ``--model``'s own greedy responses to ``--task``."""
    from interp.models import load_model
    from probes.commands.task_args import needs_model, resolve
    from probes.faithfulness import faithfulness_battery
    from probes.task_metrics import model_cot_task, text_model

    task = None if needs_model(args.task) else resolve(args.task, None, args.task_split, args.n, args.seed)
    model = load_model(args.model, device=args.device, dtype=args.model_dtype)
    if task is None:
        task = resolve(args.task, model, args.task_split, args.n, args.seed)
    ct, kept = model_cot_task(model, task, args.max_new_tokens, batch_size=args.batch_size)
    result = faithfulness_battery(text_model(model, task), ct, config, progress=not args.quiet)
    result = type(result)(**{**result.__dict__, "meta": {**result.meta, "task": task.describe(), **meta}})
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
