"""``interp decode amplify``: model-diff amplification, tuned + alpha * (tuned - base).

What a fine-tune changed, exaggerated at decoding time: proxy-tuning with the tuned model as both
base and expert and its parent as antiexpert (:func:`steering.proxy_tuning.amplify_difference`;
the tuned model is loaded and decoded once). Every option of ``interp decode proxy`` applies; the
outputs (``proxy.json``, ``proxy.png``) name the tuned model ``base`` and ``expert`` and its
parent ``antiexpert``, and the per-token log says where the amplified choice differs from the
tuned model's own.
"""

import argparse

from steering.commands import decode_proxy


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Add ``amplify`` to the ``interp decode`` subcommands."""
    p = subparsers.add_parser(
        "amplify",
        help="model-diff amplification: decode with tuned + alpha * (tuned - base)",
        description=(
            "Decode with logits tuned + alpha * (tuned - base): alpha 0 is the tuned model, -1 its "
            "parent, > 0 exaggerates what the fine-tune changed. Writes proxy.json and proxy.png to "
            "--out (the tuned model appears as base and expert, its parent as antiexpert)."
        ),
    )
    p.add_argument("--tuned", required=True, help="the fine-tuned model, e.g. organism:sft-answer")
    p.add_argument("--parent", required=True, help="the model it was tuned from, e.g. organism:base")
    decode_proxy.add_shared_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.base, args.expert, args.antiexpert = args.tuned, args.tuned, args.parent
    args.tuned = None  # no separate directly tuned model: the tuned model is the one decoded
    return decode_proxy.run(args)
