"""``interp diff lens``: the activation-difference lens on a paired cache of unrelated text.

The mean of ``tuned - base`` activations at one hook over the first ``--positions`` tokens of each
row (Activation Difference Lens, arXiv 2510.13900), read through the base model's final norm and
unembedding: which tokens a narrow fine-tune pushes towards even on text that has nothing to do
with it. Writes ``lens.json`` (means, per-position top tokens) and, with ``--vector``, the
difference as a steering vector for the base model.
"""

import argparse

from interp.commands import add_model_options
from steering.commands.diff_crosscoder import add_pair_options


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "lens",
        help="mean tuned-minus-base activation on the first tokens, read through the logit lens",
        description="Per-position mean of tuned - base activations over the first tokens of every row "
        "of a paired cache, read through the base model's final norm and unembedding (top tokens per "
        "position); optionally saved as a steering vector.",
    )
    add_pair_options(p)
    p.add_argument("--positions", type=int, default=5, help="leading positions of each row (default 5)")
    p.add_argument("--k", type=int, default=10, help="top tokens per position")
    p.add_argument(
        "--model", default=None, help="the base model to read with (default: the one the base cache names)"
    )
    p.add_argument("--vector", action="store_true", help="also save the difference as a steering vector")
    p.add_argument("--out", required=True, help="directory for lens.json (and vector/)")
    p.add_argument("--device", default="cpu")
    add_model_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.cache.paired import open_paired_cache
    from interp.commands import output_dir, require_at_least
    from interp.results import format_table, save_json
    from steering.diff_lens import activation_difference, logit_lens, model_readout, steer_by_difference

    require_at_least("--positions", args.positions)
    require_at_least("--k", args.k)
    pair = open_paired_cache(args.pair)
    base, tuned = args.labels if args.labels else list(pair.labels)[:2]
    diff = activation_difference(pair, hook=args.hook, n_positions=args.positions, base=base, tuned=tuned)
    model = pair[base].load_model(args.model, device=args.device, dtype=args.model_dtype)
    W_U, norm = model_readout(model)
    reading = logit_lens(diff.mean, W_U, norm, k=args.k, decode=model.decode)
    out = output_dir(args.out)
    save_json({"difference": diff.to_dict(), "lens": reading.to_dict()}, out / "lens.json")
    rows = [[pos, " | ".join(repr(t) for t in toks[:5])] for pos, toks in enumerate(reading.tokens)]
    print(format_table(["position", f"top tokens pushed up ({tuned} - {base})"], rows))
    if args.vector:
        steer_by_difference(diff).save(out / "vector")
        print(f"wrote {out / 'vector'}")
    print(f"wrote {out / 'lens.json'}")
    return 0
