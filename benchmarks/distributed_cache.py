"""Cache builds split over gloo ranks against the single-process build, on the same inputs.

One random ``HookedTransformer`` and one set of random token rows are saved as safetensors;
then each method runs as fresh processes that load those same files and time
``interp.cache.build_cache`` (the same ``CacheConfig``) into an empty directory:

    single      one process, no process group, ``--threads`` torch threads
    single-wide one process with ``--threads`` x the most ranks (the same cores as the ranks)
    ranks=N     ``torchrun --standalone --nproc_per_node N``, ``--threads`` each; each rank
                joins a gloo group, waits at a barrier, builds, waits at a barrier: the time
                is rank 0's between the two barriers, so it includes the slowest rank

Each timed build is preceded by a warm-up forward pass over one batch. The script prints
tokens/s, the ratio of each method to ``single``, and whether every method's cache has the
single-process cache ID, and writes everything as JSON.

Usage:
    .venv/bin/python benchmarks/distributed_cache.py [--tokens N] [--ranks 1,2] [--quick]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import make_setup

HOOK = "blocks.*.hook_resid_post"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--d-vocab", type=int, default=5000)
    p.add_argument("--tokens", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-tokens", type=int, default=None, help="default: tokens / 16")
    p.add_argument("--ranks", default="1,2", help="comma-separated numbers of ranks")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--quick", action="store_true", help="8,192 tokens")
    p.add_argument("--json", default=".bench/distributed_cache.json")
    p.add_argument("--workdir", default=None, help="keep model, tokens and caches here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.tokens = 8192
    args.rows = args.tokens // args.seq_len
    args.shard_tokens = args.shard_tokens or max(args.tokens // 16, args.seq_len)
    args.rank_counts = [int(n) for n in args.ranks.split(",")]
    if args.rows < 1 or any(n < 1 for n in args.rank_counts):
        p.error(f"--tokens {args.tokens} must hold one row of --seq-len, --ranks {args.ranks} be >= 1")
    return args


def child_main(args: argparse.Namespace) -> None:
    """One process of one method: load, warm up, build between two barriers, report (rank 0)."""
    import torch
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.cache import CacheConfig, build_cache
    from interp.models import as_model

    torch.set_num_threads(args.threads)
    root = Path(args.root)
    distributed = args.child.startswith("ranks")
    if distributed:  # also with one rank, so its row measures the ranks' code path
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    model = HookedTransformer(HookedTransformerConfig(**json.loads((root / "model_config.json").read_text())))
    model.load_state_dict(load_file(root / "model.safetensors"))
    model = as_model(model.eval(), spec="bench")
    tokens = load_file(root / "tokens.safetensors")["tokens"]
    config = CacheConfig(hooks=HOOK, batch_size=args.batch_size, shard_tokens=args.shard_tokens)
    with torch.inference_mode():
        model.module(tokens[: args.batch_size])
    out = root / f"cache-{args.child}"
    if distributed:
        torch.distributed.barrier()
    t0, c0 = time.perf_counter(), time.process_time()
    cache = build_cache(model, tokens, out, config, progress=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if distributed:
        torch.distributed.barrier()
        seconds = time.perf_counter() - t0
        torch.distributed.destroy_process_group()
    if rank == 0:
        result = {"seconds": seconds, "cpu_s_rank0": cpu, "id": cache.id, "tokens": int(tokens.numel())}
        (root / f"result-{args.child}.json").write_text(json.dumps(result))


def run_method(args: argparse.Namespace, method: str, root: Path, ranks: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    script = [str(Path(__file__).resolve()), "--child", method, "--root", str(root),
              "--threads", str(threads), "--batch-size", str(args.batch_size),
              "--shard-tokens", str(args.shard_tokens)]
    if method.startswith("ranks"):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(ranks), *script]
    else:
        cmd = [sys.executable, *script]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{method} failed:\n{done.stderr[-3000:]}")
    result = json.loads((root / f"result-{method}.json").read_text())
    shutil.rmtree(root / f"cache-{method}", ignore_errors=True)
    return {**result, "ranks": ranks, "threads_each": threads, "process_s": time.perf_counter() - t0,
            "tokens_per_s": result["tokens"] / result["seconds"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="dist-cache-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        make_setup(args, workdir)
        widest = max(args.rank_counts)
        plan = [("single", 1, args.threads)]
        if widest > 1:
            plan.append(("single-wide", 1, args.threads * widest))
        plan += [(f"ranks{n}", n, args.threads) for n in args.rank_counts]
        results = {name: run_method(args, name, workdir, n, t) for name, n, t in plan}
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    base = results["single"]
    lines = [f"{'method':<14} {'ranks':>5} {'threads':>7} {'seconds':>8} {'tokens/s':>9} "
             f"{'x single':>8}  same ID"]
    for name, r in results.items():
        r["ratio_to_single"] = r["tokens_per_s"] / base["tokens_per_s"]
        r["same_id"] = r["id"] == base["id"]
        lines.append(f"{name:<14} {r['ranks']:>5} {r['threads_each']:>7} {r['seconds']:>8.3f} "
                     f"{r['tokens_per_s']:>9,.0f} {r['ratio_to_single']:>8.2f}  {r['same_id']}")
    load = os.getloadavg()[0]
    lines.append(f"tokens {args.tokens}, shard_tokens {args.shard_tokens}, load average {load:.1f}, "
                 f"{os.cpu_count()} CPUs")
    print("\n".join(lines))  # noqa: T201 (a benchmark's report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "child"},
                               "results": results, "load_average": load}, indent=2) + "\n")
    if not all(r["same_id"] for r in results.values()):
        raise SystemExit("a method's cache ID differs from the single-process build's")


if __name__ == "__main__":
    main()
