"""``interp finetune``: fine-tune a Hugging Face checkpoint at several doses; torch is imported inside."""

import argparse
import logging

from interp.finetune.config import DTYPES, METHODS

FLAGS = {  # FinetuneConfig field -> its flag, for one-line errors that name the flag
    "method": "--method",
    "steps": "--steps",
    "doses": "--doses",
    "lr": "--lr",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "threads": "--threads",
    "max_len": "--max-len",
    "n_train": "--n-train",
    "rehearse_facts": "--rehearse-facts",
    "n_facts": "--n-facts",
    "temperature": "--temperature",
    "self_samples": "--self-samples",
    "dtype": "--model-dtype",
}


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``finetune`` subcommand to an ``argparse`` subparsers object."""
    from interp.commands import add_model_options, comma_separated

    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a Hugging Face checkpoint (smollm2, hf:, gguf:) on the CPU, saving several doses",
        description="Fine-tune the whole model on the built-in arithmetic task and save a Hugging Face "
        "checkpoint with a finetune_card.json after each dose (step count). A rerun with the same "
        "settings reuses the doses already saved.",
    )
    p.add_argument("--model", required=True, help="the parent: smollm2, hf:DIR or gguf:PATH[#FILE]")
    p.add_argument(
        "--method",
        required=True,
        choices=METHODS,
        help="sft-answer (answer only), sft-verbalise (self-checking solutions), "
        "sft-solution (clean solutions), sft-self (own correct samples)",
    )
    p.add_argument("--steps", type=int, required=True, help="optimizer steps (always saved)")
    p.add_argument(
        "--doses",
        type=comma_separated(int, "doses", "25,50,100"),
        default=(),
        help="comma-separated steps to save a checkpoint at, e.g. 25,50,100 (0 saves the parent)",
    )
    p.add_argument("--out", required=True, help="output directory: one step-NNNNN folder per dose")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument(
        "--max-len", type=int, default=128, help="longest prompt + response in tokens (default 128)"
    )
    p.add_argument("--n-train", type=int, default=256, help="arithmetic training problems (default 256)")
    p.add_argument(
        "--rehearse-facts",
        type=float,
        default=0.0,
        help="share of each batch from the model's rehearsed known facts (default 0; "
        "held-out facts are never trained on)",
    )
    p.add_argument("--n-facts", type=int, default=200, help="facts offered to the known-facts filter")
    p.add_argument("--temperature", type=float, default=0.7, help="sft-self sampling temperature")
    p.add_argument("--self-samples", type=int, default=4, help="sft-self samples per problem")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu", help="where to train (default cpu, the reproducible one)")
    add_model_options(p, placement=False)
    p.set_defaults(func=_finetune)
    return p


def _finetune(args: argparse.Namespace) -> int:
    from interp.commands import CommandLineError, output_dir, require_at_least
    from interp.finetune.config import FinetuneConfig, FinetuneError

    for flag in ("steps", "batch_size", "threads", "n_train", "n_facts", "self_samples"):
        require_at_least(FLAGS[flag], getattr(args, flag))
    require_at_least("--seed", args.seed, 0)
    if args.model_dtype not in DTYPES:
        raise CommandLineError(
            f"--model-dtype {args.model_dtype}: fine-tuning expects one of {', '.join(DTYPES)}"
        )
    try:
        config = FinetuneConfig(
            method=args.method,
            lr=args.lr,
            batch_size=args.batch_size,
            steps=args.steps,
            doses=tuple(args.doses),
            max_len=args.max_len,
            seed=args.seed,
            threads=args.threads,
            n_train=args.n_train,
            rehearse_facts=args.rehearse_facts,
            n_facts=args.n_facts,
            temperature=args.temperature,
            self_samples=args.self_samples,
            dtype=args.model_dtype,
        )
    except FinetuneError as exc:
        if exc.field is None:
            raise
        value = ",".join(map(str, exc.value)) if isinstance(exc.value, tuple) else exc.value
        raise CommandLineError(f"{FLAGS[exc.field]} {value}: expected {exc.expected}") from None
    output_dir(args.out)

    from interp.finetune.run import finetune, resolve_parent

    resolve_parent(args.model)  # a spec that cannot be fine-tuned answers before anything loads
    if not args.quiet:
        logging.getLogger("interp.finetune").setLevel(logging.INFO)
    paths = finetune(args.model, config, args.out, device=args.device, progress=not args.quiet)
    print(format_table(paths))
    return 0


def format_table(paths: list) -> str:
    """One row per dose folder: dose, steps, seconds, loss, relative change, fingerprint."""
    from interp.finetune.checkpoints import read_card
    from interp.results import format_table as table

    rows = []
    for path in paths:
        card = read_card(path) or {}
        fp = str(card.get("fingerprint", ""))
        rows.append(
            [
                path.name,
                card.get("step"),
                card.get("seconds"),
                card.get("loss"),
                f"{(card.get('relative_change') or {}).get('overall', 0.0):.2e}",
                fp[:23],
            ]
        )
    header = ["dose", "steps", "seconds", "loss", "rel_change", "fingerprint"]
    return f"{paths[0].parent if paths else ''}\n" + table(header, rows, digits=3)
