"""``interp sae train``: train an SAE through sae-lens on a cached hook and report its quality."""

import argparse

from interp.commands import add_model_options, comma_separated

# Kept here (not imported from steering.sae_training) so `interp --help` imports no torch.
NORMALIZATIONS = ("none", "expected_average_only_in", "layer_norm", "constant_norm_rescale")


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "train",
        help="train an SAE (sae-lens) on a cache's activations at one hook",
        description="Train a TopK or standard (ReLU + L1) SAE with sae-lens on activations read "
        "from a disk cache, save it in sae-lens's format in --out, and report explained "
        "variance, MSE, L0, dead features and the CE increase when spliced into the model. "
        "Attention sinks (position 0 of every row and any BOS token) are left out of training "
        "and of every reported number unless --include-bos is given.",
    )
    p.add_argument("--cache", required=True, help="cache directory")
    p.add_argument("--hook", required=True, help="hook name held by the cache")
    p.add_argument("--out", required=True, help="directory for the SAE, train.json and train.png")
    p.add_argument("--arch", choices=["topk", "standard"], default="topk")
    p.add_argument("--d-sae", type=int, default=None, help="features (default: expansion x d_in)")
    p.add_argument("--expansion", type=int, default=4, help="expansion factor when --d-sae is not given")
    p.add_argument("--k", type=int, default=32, help="active features per token (topk)")
    p.add_argument("--l1", type=float, default=1.0, help="L1 coefficient (standard)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--tokens",
        "--steps-tokens",
        dest="tokens",
        type=int,
        default=200_000,
        help="training tokens (activations)",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (overrides --tokens)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--include-bos",
        action="store_true",
        help="train and evaluate on every position, attention sinks included (position 0 and BOS "
        "tokens are left out by default: their norm dwarfs the rest in real models)",
    )
    p.add_argument(
        "--exclude-positions",
        type=comma_separated(int, "positions", "0 or 0,1"),
        default=None,
        metavar="P,...",
        help="positions within each row to leave out (default 0; none with --include-bos)",
    )
    p.add_argument(
        "--normalize",
        choices=list(NORMALIZATIONS),
        default="none",
        help="input normalisation as in sae-lens: expected_average_only_in scales so that "
        "E||x|| = sqrt(d_in) (folded into the saved weights); layer_norm and "
        "constant_norm_rescale normalise each input when encoding",
    )
    p.add_argument("--device", default="cpu")
    add_model_options(p)
    p.add_argument(
        "--model",
        default=None,
        help="model spec for the CE check (default: the spec the cache was built from)",
    )
    p.add_argument("--no-ce", action="store_true", help="skip the CE check (no model needed)")
    p.add_argument("--eval-tokens", type=int, default=8192)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interp.architecture import architecture_of, architecture_of_cache
    from interp.cache import open_cache
    from interp.commands import CommandLineError, output_dir, require_at_least
    from steering.sae import SAETrainConfig, evaluate_sae, save_sae, train_sae
    from steering.sae_io import ARCHITECTURE_KEY

    out = output_dir(args.out)  # checked before anything loads; written only at the end
    require_at_least("--eval-tokens", args.eval_tokens)
    require_at_least("--steps", args.steps)
    tokens = args.steps * args.batch_size if args.steps is not None else args.tokens
    excluded = args.exclude_positions
    if excluded is None:
        excluded = () if args.include_bos else (0,)
    if any(p < 0 for p in excluded):
        raise CommandLineError(
            f"--exclude-positions {','.join(map(str, excluded))}: expected positions >= 0 within a row"
        )
    config = SAETrainConfig(
        architecture=args.arch,
        d_sae=args.d_sae,
        expansion_factor=args.expansion,
        k=args.k,
        l1_coefficient=args.l1,
        lr=args.lr,
        training_tokens=tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        exclude_positions=tuple(excluded),
        exclude_bos=not args.include_bos,
        normalize_activations=args.normalize,
    )
    cache = open_cache(args.cache)
    cache[args.hook]  # an unknown hook fails before any model loads or training starts
    # The model is used only once its weights hash to the cache's fingerprint (the manifest's
    # locator, which says where to look, is not part of the cache ID).
    model = None if args.no_ce else cache.load_model(args.model, device=args.device, dtype=args.model_dtype)
    result = train_sae(cache, args.hook, config, device=args.device, progress=not args.quiet)
    result.sae.cfg.metadata[ARCHITECTURE_KEY] = (
        architecture_of(model) if model is not None else architecture_of_cache(cache)
    )
    result = result.with_evaluation(
        evaluate_sae(result.sae, cache, args.hook, model=model, n_tokens=args.eval_tokens)
    )
    save_sae(result.sae, out)
    json_path = result.save(out / "train.json")
    png_path = result.plot(out / "train.png")
    print(result)
    print(f"SAE -> {out} (cfg.json, sae_weights.safetensors)")
    print(f"wrote {json_path}")
    print(f"wrote {png_path}")
    return 0
