"""``interp sae features``: rank an SAE's features on a cache and diff their firing across models."""

import argparse
import logging

from interp.commands import add_model_options

REASON_WORDS = ["WAIT", "CHECK", "OK", "BAD", "BACK"]  # the organism's epistemic markers
log = logging.getLogger(__name__)


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser(
        "features",
        help="rank SAE features by AUROC for positions before a marker; top contexts; firing-rate diff",
        description="Rank every feature of an SAE by AUROC and mean-activation difference for the "
        "cached positions whose next token is a marker (and by ReasonScore over several markers), "
        "show the top features' top-activating contexts, and, given a paired cache, which "
        "features fire less in the second model.",
    )
    p.add_argument("--sae", required=True, help="SAE directory (sae-lens format)")
    p.add_argument("--cache", required=True, help="cache directory (of the SAE's model)")
    p.add_argument("--out", required=True, help="directory for features.json and PNGs")
    p.add_argument("--hook", default=None, help="hook (default: the one the SAE was trained on)")
    p.add_argument("--paired", default=None, help="paired cache directory to compare firing rates")
    p.add_argument(
        "--labels",
        nargs=2,
        default=None,
        metavar=("REF", "OTHER"),
        help="the two models of the paired cache to compare (default: its first two)",
    )
    marker = p.add_mutually_exclusive_group()
    marker.add_argument(
        "--marker", default="WAIT",
        help="label positions whose next token is this text (one token as it stands inside a text: "
        "' wait' with its space for byte-level BPEs such as SmolLM2's)",
    )
    marker.add_argument("--marker-id", type=int, default=None, help="... or this token id (no tokenizer)")
    reason = p.add_mutually_exclusive_group()
    reason.add_argument(
        "--reason-words",
        nargs="*",
        default=REASON_WORDS,
        help="words for ReasonScore (those not one token are skipped; none: no score)",
    )
    reason.add_argument("--reason-ids", nargs="*", type=int, default=None, help="... or these token ids")
    p.add_argument(
        "--model",
        default=None,
        help="model spec for its tokenizer (default: the spec the cache was built from)",
    )
    p.add_argument("--top", type=int, default=10, help="features to show")
    p.add_argument("--contexts", type=int, default=5, help="contexts per shown feature")
    p.add_argument(
        "--token-ids",
        action="store_true",
        help="show contexts as token ids (default: decoded text, with the model's tokenizer); "
        "with --marker-id, no model is loaded at all",
    )
    p.add_argument("--max-positions", type=int, default=50_000)
    add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _single_ids(tokenizer, words) -> list[int]:
    """Ids of the words that are one token each (the others are skipped)."""
    from interp.errors import CommandLineError
    from steering.commands.tokens import single_token

    ids = []
    for w in words:
        try:
            ids.append(single_token(tokenizer, w, "--reason-words"))
        except (CommandLineError, ValueError):  # several tokens, or a word the vocabulary lacks
            continue
    return ids


def _model(args, cache):
    """The model whose tokenizer reads the cache, and whether it is the cache's own (verified) model.

    ``--model`` is used for its tokenizer only, so its tokenizer must hash as the cache's did;
    without it, the cache's model is loaded (not needed when only token ids are used: with
    ``--marker-id`` and ``--token-ids``) and used only if its weights hash to the cache's
    fingerprint.
    """
    from interp.errors import ModelMismatchError, SpecError
    from interp.models import load_model

    if args.model is not None:
        model = load_model(args.model, device=args.device or "cpu", dtype=args.model_dtype)
        recorded, here = cache.manifest["tokenizer"]["hash"], model.tokenizer_hash()
        if here != recorded:
            raise ModelMismatchError(
                f"the tokenizer of --model {args.model!r} ({here}) is not the one cache "
                f"{str(cache.root)!r} was built with ({recorded}); give the cache's own model"
            )
        return model, False
    if args.marker_id is not None and args.token_ids:
        return None, False
    try:
        return cache.load_model(device=args.device or "cpu", dtype=args.model_dtype), True
    except SpecError as exc:
        ids_instead = "--token-ids" if args.marker_id is not None else "--marker-id and --token-ids"
        raise SpecError(
            f"cannot load the model of cache {str(cache.root)!r} for its tokenizer ({exc}); "
            f"pass --model SPEC, or {ids_instead} to work with token ids"
        ) from None


def run(args: argparse.Namespace) -> int:
    from interp.cache import open_cache
    from interp.commands import CommandLineError, output_dir, require_at_least
    from interp.results import save_json
    from steering.commands.tokens import single_token
    from steering.features import (
        firing_rates,
        rank_features,
        token_labels,
        token_word_ids,
        top_contexts,
    )
    from steering.sae import SAEError, check_sae_fits, load_sae

    out = output_dir(args.out)  # checked before anything loads; written only at the end
    require_at_least("--top", args.top)
    require_at_least("--contexts", args.contexts)
    require_at_least("--max-positions", args.max_positions)
    sae = load_sae(args.sae)
    hook = args.hook or sae.cfg.metadata.get("hook_name")
    if hook is None:
        raise SAEError(f"the SAE in {args.sae!r} records no hook_name; pass --hook")
    cache = open_cache(args.cache)
    d_vocab = cache.manifest["model"]["d_vocab"]
    given = [("--marker-id", args.marker_id)] + [("--reason-ids", i) for i in args.reason_ids or []]
    for flag, token in given:
        if token is not None and not 0 <= token < d_vocab:
            raise CommandLineError(f"{flag} {token}: expected a token id from 0 to {d_vocab - 1}")
    model, own = _model(args, cache)
    check_sae_fits(sae, cache, hook, model=model if own else None)  # before any feature is ranked
    tokenizer = model.tokenizer if model is not None else None
    if tokenizer is None and args.marker_id is None:
        raise SAEError(
            f"model {(args.model or cache.model_locator)!r} has no tokenizer to find {args.marker!r} with; "
            "use --marker-id"
        )
    if args.marker_id is not None:
        marker, labels = args.marker_id, token_labels(cache, [args.marker_id], offset=1)
    else:
        marker = args.marker
        labels = token_labels(cache, [single_token(tokenizer, args.marker, "--marker")], offset=1)
    if args.reason_ids is not None:
        reason_ids = list(args.reason_ids)
    else:
        reason_ids = _single_ids(tokenizer, args.reason_words) if tokenizer is not None else []
    word_ids = token_word_ids(cache, reason_ids, offsets=(1,)) if reason_ids else None
    if word_ids is not None and not ((word_ids >= 0).any() and (word_ids < 0).any()):
        word_ids = None  # ReasonScore needs positions on both sides
    ranking = rank_features(sae, cache, hook, labels, word_ids=word_ids, max_positions=args.max_positions)
    if tokenizer is None and not args.token_ids:
        log.warning("model %r has no tokenizer: contexts are shown as token ids", cache.model_locator)
    shown = None if args.token_ids else tokenizer
    contexts = top_contexts(sae, cache, hook, ranking.top(args.top), k=args.contexts, tokenizer=shown)
    result = {
        "sae": str(args.sae),
        "cache_id": cache.id,
        "marker": marker,
        "ranking": ranking.to_dict(),
        "contexts": contexts.to_dict(),
    }
    written = [ranking.plot(out / "features.png")]
    print(
        f"features picking out positions before {marker!r} "
        f"({ranking.n_positive} of {ranking.n_positive + ranking.n_negative} positions):"
    )
    print(ranking.table(args.top))
    print(contexts)
    if args.paired:
        rates = firing_rates(sae, args.paired, hook, labels=args.labels, max_positions=args.max_positions)
        result["firing_rates"] = rates.to_dict()
        written.append(rates.plot(out / "firing_rates.png"))
        print(f"firing rates, {rates.labels[0]} -> {rates.labels[1]} (largest drops):")
        print(rates.table(args.top))
    written.insert(0, save_json(result, out / "features.json"))
    for path in written:
        print(f"wrote {path}")
    return 0
