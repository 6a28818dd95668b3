"""``interp diff crosscoder``: which latents a fine-tune switched on or off, by a BatchTopK crosscoder.

Trains a crosscoder (:mod:`steering.crosscoder`) on a paired cache at one hook, classifies each
latent by its decoder-norm ratio (base-only, shared, tuned-only, other, dead) and checks the
model-specific ones with latent scaling (a "tuned-only" latent whose direction the base model
still carries is flagged, as shrinkage rather than a real difference). Writes the crosscoder
(``crosscoder/``: ``model.safetensors`` + ``cfg.json``), ``diff.json`` and ``ratios.png`` to ``--out``.
"""

import argparse


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "crosscoder",
        help="train a BatchTopK crosscoder on a paired cache; latents by decoder-norm ratio",
        description="Train a crosscoder over two models' activations at one hook of a paired cache "
        "(interp cache pair), classify its latents base-only / shared / tuned-only by decoder-norm "
        "ratio, and flag model-specific latents that latent scaling explains as shrinkage.",
    )
    add_pair_options(p)
    p.add_argument("--n-latents", type=int, default=None, help="dictionary size (default 1024)")
    p.add_argument("--k", type=int, default=None, help="active latents per position (default 32)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 2000)")
    p.add_argument("--batch-size", type=int, default=None, help="positions per step (default 1024)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for crosscoder/, diff.json and ratios.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def add_pair_options(p: argparse.ArgumentParser) -> None:
    """The paired cache, its hook and which two of its models: shared by ``diff crosscoder`` and ``lens``."""
    p.add_argument("pair", help="paired cache directory (interp cache pair)")
    p.add_argument("--hook", required=True, help="the hook to read, e.g. blocks.1.hook_resid_post")
    p.add_argument(
        "--labels",
        nargs=2,
        default=None,
        metavar=("BASE", "TUNED"),
        help="the two models of the pair (default: its first two)",
    )


def run(args: argparse.Namespace) -> int:
    from interp.cache.paired import open_paired_cache
    from interp.commands import output_dir
    from interp.results import save_figure, save_json
    from steering.crosscoder import CrosscoderConfig, classify_latents, latent_scaling, train_crosscoder

    pair = open_paired_cache(args.pair)
    labels = list(args.labels) if args.labels else list(pair.labels)[:2]
    given = {
        "n_latents": args.n_latents,
        "k": args.k,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
    }
    settings = {key: value for key, value in given.items() if value is not None}
    config = CrosscoderConfig(seed=args.seed, **settings)
    out = output_dir(args.out)
    cc = train_crosscoder(pair, config, hook=args.hook, labels=labels, progress=not args.quiet)
    cc.save(out / "crosscoder")
    kinds = classify_latents(cc, *labels)
    scaling = latent_scaling(cc, pair, base=labels[0], tuned=labels[1])
    save_json(
        {
            "hook": args.hook,
            "labels": labels,
            "kinds": kinds.to_dict(),
            "latent_scaling": scaling.to_dict(),
            "training": cc.training_stats,
            "models": cc.models,
        },
        out / "diff.json",
    )
    save_figure(_ratio_histogram(kinds), out / "ratios.png")
    print(kinds)
    print(scaling)
    print(f"wrote {out / 'crosscoder'}, {out / 'diff.json'}, {out / 'ratios.png'}")
    return 0


def _ratio_histogram(kinds):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    alive = [r for r, k in zip(kinds.ratio.tolist(), kinds.kinds, strict=True) if k != "dead"]
    ax.hist(alive, bins=40, range=(0, 1))
    base, tuned = kinds.labels
    ax.set_xlabel(f"||d_{tuned}|| / (||d_{base}|| + ||d_{tuned}||)")
    ax.set_ylabel("latents")
    ax.set_title("crosscoder decoder-norm ratios (left: base-only, right: tuned-only)")
    return fig
