"""Helpers shared by the benchmark scripts (each runs as ``python benchmarks/NAME.py``, so this
folder is on ``sys.path``): interleaved timing, and a random model with random token rows."""

import argparse
import json
import time
from pathlib import Path


def interleaved(fns: dict, repeats: int) -> dict:
    """Warm each up, then time them in turns (A, B, A, B, ...), best of ``repeats``, so that load
    changes hit every contender alike; wall and CPU seconds, and each one's last output."""
    outs = {name: fn() for name, fn in fns.items()}
    best = {name: [float("inf"), float("inf")] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            outs[name] = fn()
            best[name][0] = min(best[name][0], time.perf_counter() - w)
            best[name][1] = min(best[name][1], time.process_time() - c)
    return {name: {"wall": best[name][0], "cpu": best[name][1], "tokens": outs[name]} for name in fns}


def make_setup(args: argparse.Namespace, root: Path) -> None:
    """Random model weights and random token rows, both as safetensors, plus their config."""
    import torch
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = dict(
        n_layers=args.layers, d_model=args.d_model, n_heads=args.n_heads,
        d_head=args.d_model // args.n_heads, d_mlp=4 * args.d_model, n_ctx=args.seq_len,
        d_vocab=args.d_vocab, act_fn="gelu", seed=0,
    )
    model = HookedTransformer(HookedTransformerConfig(**cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, root / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, args.d_vocab, (args.rows, args.seq_len), generator=gen)
    save_file({"tokens": tokens}, root / "tokens.safetensors")
    (root / "model_config.json").write_text(json.dumps(cfg))
