"""SAE training throughput: from this toolkit's disk cache vs sae-lens's runner recomputing activations.

Both sides train the same sae-lens TopK SAE (same d_sae, k, batch size, learning rate, number of
tokens) with sae-lens's ``SAETrainer``; they differ only in where the activations come from:

- ``interp cache -> train_sae``: ``steering.sae.train_sae`` reading shuffled batches from a cache
  built once beforehand by ``interp.cache.build_cache`` (the build is timed separately and
  reported, since it is paid once and reused by every SAE trained on that hook);
- ``sae-lens runner``: ``LanguageModelSAETrainingRunner(cfg, override_model=model,
  override_dataset=Dataset({"input_ids": rows}))``, which runs the model forward to fill its
  activation buffer as it trains (``stop_at_layer`` = the hook's block + 1).

The model is organism-shaped: a random ``HookedTransformer`` with 3 layers, d_model 128, 4 heads,
d_mlp 512, vocabulary 64, rows of 48 tokens. The printed ratio is tokens/s of training from the
cache over tokens/s of the runner (target >= 3x), plus the same with the cache build included,
and the data path alone (drawing the same number of batches without training) on both sides.
The SAE steps are identical on both sides, so their share of the runner's time caps the
training ratio (Amdahl): the data path can be arbitrarily faster, the steps cannot.

Usage::

    .venv/bin/python benchmarks/sae_training.py                 # 131,072 tokens
    .venv/bin/python benchmarks/sae_training.py --tokens 32768  # smoke run
"""

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=131_072, help="training tokens (both sides)")
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-vocab", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=48)
    p.add_argument("--hook", default="blocks.1.hook_resid_post")
    p.add_argument("--expansion", type=int, default=4, help="d_sae = expansion * d_model")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=1024, help="SAE batch, in tokens")
    p.add_argument("--model-batch", type=int, default=32, help="rows per forward pass (both sides)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--json", default=".bench/sae_training.json")
    return p.parse_args()


def make_model(args):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=args.n_heads,
        d_head=args.d_model // args.n_heads,
        d_mlp=4 * args.d_model,
        d_vocab=args.d_vocab,
        n_ctx=args.seq_len,
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
        device="cpu",
    )
    return HookedTransformer(cfg).eval()


def run_ours(args, model, rows, workdir: Path) -> dict:
    from interp.cache import CacheConfig, build_cache
    from interp.models import as_model
    from steering.sae import SAETrainConfig, _training_batches, train_sae

    cfg = CacheConfig(hooks=(args.hook,), batch_size=args.model_batch, shard_tokens=max(args.tokens // 8, 1))
    start = time.perf_counter()
    cache = build_cache(as_model(model, spec="bench"), rows, workdir / "cache", cfg, progress=False)
    build_s = time.perf_counter() - start
    config = SAETrainConfig(
        architecture="topk",
        d_sae=args.expansion * args.d_model,
        k=args.k,
        lr=3e-4,
        training_tokens=args.tokens,
        batch_size=args.batch_size,
        seed=0,
    )
    start = time.perf_counter()
    result = train_sae(cache, args.hook, config, progress=False)
    train_s = time.perf_counter() - start
    # The data path alone: the same shuffled batches train_sae draws, without training.
    batches = _training_batches(cache, args.hook, args.batch_size, seed=0)
    start = time.perf_counter()
    for _ in range(args.tokens // args.batch_size):
        next(batches)
    data_s = time.perf_counter() - start
    return {
        "build_s": build_s,
        "train_s": train_s,
        "data_s": data_s,
        "n_tokens": result.n_tokens,
        "final_mse": result.losses[-1]["mse_loss"],
    }


def buffer_rows(args) -> int:
    """sae-lens's mixing buffer holds ``n_batches_in_buffer * context_size`` activations: two batches."""
    return -(-2 * args.batch_size // args.seq_len)


def run_sae_lens(args, model, rows, workdir: Path) -> dict:
    from datasets import Dataset
    from sae_lens import (
        LanguageModelSAERunnerConfig,
        LanguageModelSAETrainingRunner,
        LoggingConfig,
        TopKTrainingSAEConfig,
    )

    cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=args.d_model, d_sae=args.expansion * args.d_model, k=args.k),
        model_name="bench",
        hook_name=args.hook,
        dataset_path="bench",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=args.seq_len,
        prepend_bos=False,
        training_tokens=args.tokens,
        train_batch_size_tokens=args.batch_size,
        store_batch_size_prompts=args.model_batch,
        n_batches_in_buffer=buffer_rows(args),
        lr=3e-4,
        device="cpu",
        dtype="float32",
        seed=0,
        logger=LoggingConfig(log_to_wandb=False),
        checkpoint_path=None,
        output_path=None,
        n_checkpoints=0,
        verbose=False,
    )
    dataset = Dataset.from_dict({"input_ids": rows})
    start = time.perf_counter()
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=dataset)
    runner.run()
    train_s = time.perf_counter() - start
    # The data path alone: a fresh runner's activation store, drawn from without training.
    runner = LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=dataset)
    start = time.perf_counter()
    for _ in range(args.tokens // args.batch_size):
        next(runner.activations_store)
    data_s = time.perf_counter() - start
    return {"train_s": train_s, "data_s": data_s, "n_tokens": args.tokens}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # sae-lens's fit() bar would flood the table
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import datasets  # noqa: F401  (imports are not what is being timed)
    import sae_lens  # noqa: F401

    model = make_model(args)
    # The runner's buffer reads ahead of what it trains on: give it rows to spare.
    n_rows = -(-args.tokens // args.seq_len) + buffer_rows(args) + 2 * args.model_batch
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, args.d_vocab, (n_rows, args.seq_len), generator=g).tolist()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_ours(args, model, rows, Path(tmp))
        theirs = run_sae_lens(args, model, rows, Path(tmp))
    ours_tps = ours["n_tokens"] / ours["train_s"]
    with_build = ours["n_tokens"] / (ours["train_s"] + ours["build_s"])
    theirs_tps = theirs["n_tokens"] / theirs["train_s"]
    print(
        f"model: {args.layers} layers, d_model {args.d_model}, vocab {args.d_vocab}, rows of {args.seq_len}; "
        f"SAE topk d_sae {args.expansion * args.d_model}, k {args.k}, batch {args.batch_size}; "
        f"{torch.get_num_threads()} threads; load average at start {load:.2f}"
    )
    print(f"{'method':<34} {'tokens':>8} {'seconds':>8} {'tokens/s':>10}")
    print(
        f"{'interp cache build (once)':<34} {len(rows) * args.seq_len:>8} {ours['build_s']:>8.2f} "
        f"{len(rows) * args.seq_len / ours['build_s']:>10,.0f}"
    )
    print(
        f"{'interp cache -> train_sae':<34} {ours['n_tokens']:>8} {ours['train_s']:>8.2f} {ours_tps:>10,.0f}"
    )
    print(
        f"{'sae-lens runner (recomputes)':<34} {theirs['n_tokens']:>8} {theirs['train_s']:>8.2f} "
        f"{theirs_tps:>10,.0f}"
    )
    data_n = args.tokens // args.batch_size * args.batch_size
    print(
        f"{'data only: interp cache batches':<34} {data_n:>8} {ours['data_s']:>8.2f} "
        f"{data_n / ours['data_s']:>10,.0f}"
    )
    print(
        f"{'data only: sae-lens activation store':<34} {data_n:>8} {theirs['data_s']:>8.2f} "
        f"{data_n / theirs['data_s']:>10,.0f}"
    )
    print(f"ratio train-from-cache / sae-lens runner: {ours_tps / theirs_tps:.2f}x (target >= 3)")
    print(f"ratio data only (cache / recompute):      {theirs['data_s'] / ours['data_s']:.2f}x")
    share = min(1.0, (ours["train_s"] - ours["data_s"]) / theirs["train_s"])
    print(f"SAE steps' share of the runner's time:    {share:.0%} (caps the ratio at {1 / share:.1f}x)")
    print(f"ratio incl. the one-off cache build:      {with_build / theirs_tps:.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "args": vars(args),
                "load_average": load,
                "ours": ours,
                "sae_lens": theirs,
                "ratio": ours_tps / theirs_tps,
                "ratio_with_build": with_build / theirs_tps,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
