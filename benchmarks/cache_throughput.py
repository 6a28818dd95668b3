"""Activation-cache throughput and memory, four ways, on one model and one token set.

Methods (each runs in a fresh subprocess, so peak RSS is per method):

    bare          forward pass over the tokens in batches, under ``torch.inference_mode``
    fwd_to_hook   the same, stopped after the hook's block (``stop_at_layer``): the least
                  work that recomputes the hook's activations
    rwc_save      TransformerLens ``run_with_cache(names_filter=hook)`` + ``torch.save`` per batch
    saelens       sae-lens ``CacheActivationsRunner`` on the same model and pre-tokenized rows
    interp        ``interp.cache.build_cache`` (checksums, fsync'd atomic writes, manifest)
    interp_small  the same build over a quarter of the tokens (memory scaling)
    saelens_all   sae-lens caching ``hook_resid_post`` of every layer: one runner per hook, as
                  its config takes one ``hook_name``
    interp_all    interp caching the same hooks in one build (``blocks.*.hook_resid_post``)
    read_cold     ``open_cache(dir)[hook].to_tensor()`` after evicting the shards from the
                  page cache (``posix_fadvise(DONTNEED)``)
    read_warm     the same with the shards in the page cache

Usage:
    .venv/bin/python benchmarks/cache_throughput.py [--tokens N] [--quick] [--json PATH]
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import make_setup

MODEL_METHODS = (
    "bare", "fwd_to_hook", "rwc_save", "saelens", "interp", "interp_small", "saelens_all", "interp_all"
)
READ_METHODS = ("read_cold", "read_warm")
LABELS = {
    "bare": "bare forward",
    "fwd_to_hook": "forward to hook",
    "rwc_save": "run_with_cache+save",
    "saelens": "sae-lens runner",
    "interp": "interp build",
    "interp_small": "interp build (1/4)",
    "saelens_all": "sae-lens, all layers",
    "interp_all": "interp, all layers",
    "read_cold": "interp read (cold)",
    "read_warm": "interp read (warm)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-heads", type=int, default=8)
    p.add_argument("--d-vocab", type=int, default=5000)
    p.add_argument("--tokens", type=int, default=65536, help="tokens in the main token set")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--hook", default="blocks.2.hook_resid_post")
    p.add_argument("--shard-tokens", type=int, default=None,
                   help="tokens per interp shard / sae-lens buffer (default: tokens/16)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per method; best is kept")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in every child (default: torch's own, one per core)")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    p.add_argument("--json", default=".bench/cache_throughput.json")
    p.add_argument("--workdir", default=None, help="keep model, tokens and outputs here")
    p.add_argument("--child", choices=MODEL_METHODS + READ_METHODS, help=argparse.SUPPRESS)
    p.add_argument("--setup", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.tokens = min(args.tokens, 8192)
        args.repeats = 1
    rows = args.tokens // args.seq_len
    if rows < 4 * args.batch_size:
        p.error(f"--tokens {args.tokens} gives {rows} rows; need at least 4 x --batch-size")
    args.rows = rows
    args.tokens = rows * args.seq_len
    if args.shard_tokens is None:
        # A multiple of one batch of rows, so interp shards and sae-lens buffers match and
        # the quarter-size build still spans several shards.
        batch_tokens = args.batch_size * args.seq_len
        args.shard_tokens = max(batch_tokens, args.tokens // 16 // batch_tokens * batch_tokens)
    return args


# ---------------------------------------------------------------- parent: set-up and report


def _busy_cpu_s() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_child(args: argparse.Namespace, method: str, root: Path) -> dict:
    result = root / f"result_{method}.json"
    cmd = [
        sys.executable, __file__, "--child", method, "--setup", str(root), "--result", str(result),
        "--tokens", str(args.tokens), "--seq-len", str(args.seq_len),
        "--batch-size", str(args.batch_size), "--hook", args.hook,
        "--shard-tokens", str(args.shard_tokens), "--repeats", str(args.repeats),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    load = os.getloadavg()[0]
    busy0, kids0 = _busy_cpu_s(), _children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    # CPU time that processes other than this child used while it ran, as a share of the
    # machine: the benchmark's numbers are only as good as this is small.
    others = (_busy_cpu_s() - busy0) - (_children_cpu_s() - kids0)
    others_share = max(0.0, others) / (wall * (os.cpu_count() or 1))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child {method!r} failed with exit code {proc.returncode}")
    out = json.loads(result.read_text())
    out["wall_s"] = round(wall, 1)
    out["loadavg_1m_before"] = round(load, 2)
    out["other_processes_cpu_share"] = round(others_share, 3)
    print(f"  {LABELS[method]:<22} {out['tokens_per_s']:>10,.0f} tok/s  "
          f"{out['peak_rss_mib']:>7.0f} MiB  ({out['wall_s']} s wall, "
          f"other processes {others_share:.0%} of the CPUs)", file=sys.stderr, flush=True)
    return out


def ratios(res: dict, key: str = "tokens_per_s") -> list[tuple[str, float, str, bool | None]]:
    """(name, value, target, met) for every target, then informative ratios (met is None).

    ``key`` is ``tokens_per_s`` (wall clock) or ``tokens_per_cpu_s`` (CPU time of the method's
    process, which other processes on a shared machine disturb far less; it leaves out time
    spent waiting on the disk).
    """
    tps = {m: r[key] for m, r in res.items()}
    small, big = res["interp_small"]["peak_rss_mib"], res["interp"]["peak_rss_mib"]
    targets = [
        ("interp/bare", tps["interp"] / tps["bare"], 0.90),
        ("interp/run_with_cache+save", tps["interp"] / tps["rwc_save"], 1.00),
        ("interp/sae-lens", tps["interp"] / tps["saelens"], 2.0),
        ("read/recompute", tps["read_cold"] / tps["fwd_to_hook"], 5.0),
        ("interp/sae-lens, all layers", tps["interp_all"] / tps["saelens_all"], 2.0),
    ]
    out: list[tuple[str, float, str, bool | None]] = [
        (n, v, f">= {t:.2f}", v >= t) for n, v, t in targets
    ]
    out.append(("RSS 4x tokens", big / small, "within 0.90-1.10", abs(big - small) / small < 0.10))
    out += [
        ("interp/forward to hook", tps["interp"] / tps["fwd_to_hook"], "", None),
        ("run_with_cache+save/bare", tps["rwc_save"] / tps["bare"], "", None),
        ("sae-lens/bare", tps["saelens"] / tps["bare"], "", None),
        ("read warm/recompute", tps["read_warm"] / tps["fwd_to_hook"], "", None),
    ]
    return out


def report(args: argparse.Namespace, res: dict) -> str:
    bare, bare_cpu = res["bare"]["tokens_per_s"], res["bare"]["tokens_per_cpu_s"]
    lines = [
        f"model: {args.layers} layers, d_model {args.d_model}, d_vocab {args.d_vocab}, "
        f"seq_len {args.seq_len}, batch {args.batch_size}; hook {args.hook}; "
        f"shard {args.shard_tokens} tokens; best of {args.repeats}; "
        f"torch threads {res['bare']['threads']}",
        "",
        f"{'method':<22} {'tokens':>8} {'seconds':>8} {'tokens/s':>10} {'peak RSS MiB':>13} "
        f"{'x bare':>7} {'CPU s':>8} {'tok/CPU-s':>10} {'x bare':>7}",
    ]
    for m in MODEL_METHODS + READ_METHODS:
        r = res[m]
        lines.append(
            f"{LABELS[m]:<22} {r['tokens']:>8} {r['seconds']:>8.3f} {r['tokens_per_s']:>10,.0f} "
            f"{r['peak_rss_mib']:>13.0f} {r['tokens_per_s'] / bare:>7.2f} "
            f"{r['cpu_seconds']:>8.3f} {r['tokens_per_cpu_s']:>10,.0f} "
            f"{r['tokens_per_cpu_s'] / bare_cpu:>7.2f}"
        )
    small, big = res["interp_small"], res["interp"]
    for title, key in (("wall clock", "tokens_per_s"), ("CPU time", "tokens_per_cpu_s")):
        lines += ["", f"ratios by {title}:"]
        for name, value, target, met in ratios(res, key):
            if name == "RSS 4x tokens":
                continue
            if met is None:
                lines.append(f"{name} = {value:.2f} (no target)")
            else:
                lines.append(f"{name} = {value:.2f} (target {target}){'' if met else '  MISSED'}")
    value = big["peak_rss_mib"] / small["peak_rss_mib"]
    lines += [
        "",
        f"RSS 4x tokens: {small['tokens']} -> {small['peak_rss_mib']:.0f} MiB, "
        f"{big['tokens']} -> {big['peak_rss_mib']:.0f} MiB, ratio {value:.3f} "
        f"(target: differ by < 10%){'' if abs(value - 1) < 0.10 else '  MISSED'}",
        f"  growth over the RSS before the timed builds: "
        f"+{small['peak_rss_mib'] - small['rss_before_mib']:.0f} MiB vs "
        f"+{big['peak_rss_mib'] - big['rss_before_mib']:.0f} MiB",
    ]
    busy = {LABELS[m]: r["other_processes_cpu_share"] for m, r in res.items()}
    busy = {k: v for k, v in busy.items() if v > 0.10}
    if busy:
        lines.append(
            "warning: other processes used the CPUs during "
            + ", ".join(f"{k} ({v:.0%})" for k, v in busy.items())
            + "; wall-clock timings are noisy, CPU-time ratios less so"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cache_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"set-up in {root}: {args.rows} rows x {args.seq_len} tokens", file=sys.stderr)
    t0 = time.perf_counter()
    make_setup(args, root)
    res = {m: run_child(args, m, root) for m in MODEL_METHODS + READ_METHODS}
    text = report(args, res)
    print(text)
    payload = {
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "setup", "result")},
        "results": res,
        "ratios": {n: {"value": v, "target": t, "met": met} for n, v, t, met in ratios(res)},
        "ratios_cpu_time": {
            n: {"value": v, "target": t, "met": met}
            for n, v, t, met in ratios(res, "tokens_per_cpu_s")
        },
        "cpu_count": os.cpu_count(),
        "git_head": _git_head(),
        "total_wall_s": round(time.perf_counter() - t0, 1),
        "table": text,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out} ({payload['total_wall_s']} s)", file=sys.stderr)
    if not args.workdir:
        shutil.rmtree(root)


def _git_head() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# ---------------------------------------------------------------- child: one method, timed


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _load_model(root: Path):
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(**json.loads((root / "model_config.json").read_text()))
    model = HookedTransformer(cfg)
    model.load_state_dict(load_file(root / "model.safetensors"))
    return model.eval()


def _stop_layer(hook: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", hook)
    return int(m.group(1)) + 1 if m else None


def _bare(model, tokens, out: Path, args) -> None:
    import torch

    with torch.inference_mode():
        for i in range(0, len(tokens), args.batch_size):
            model(tokens[i : i + args.batch_size])


def _fwd_to_hook(model, tokens, out: Path, args) -> None:
    import torch

    with torch.inference_mode():
        for i in range(0, len(tokens), args.batch_size):
            model(tokens[i : i + args.batch_size], stop_at_layer=_stop_layer(args.hook))


def _rwc_save(model, tokens, out: Path, args) -> None:
    import torch

    out.mkdir(parents=True)
    with torch.inference_mode():
        for b, i in enumerate(range(0, len(tokens), args.batch_size)):
            _, cache = model.run_with_cache(tokens[i : i + args.batch_size], names_filter=args.hook)
            torch.save(cache[args.hook], out / f"batch_{b:05d}.pt")


def _saelens(model, tokens, out: Path, args, hook: str | None = None) -> None:
    import sae_lens.cache_activations_runner as car
    from datasets import Dataset
    from sae_lens.config import CacheActivationsRunnerConfig

    n_tokens = tokens.numel()
    cfg = CacheActivationsRunnerConfig(
        dataset_path="benchmark-tokens",  # unused: the dataset is passed in below
        model_name="benchmark-model",  # unused: load_model is replaced below
        model_batch_size=args.batch_size,
        hook_name=hook or args.hook,
        d_in=model.cfg.d_model,
        training_tokens=n_tokens,
        context_size=tokens.shape[1],
        new_cached_activations_path=str(out),
        shuffle=False,
        dtype="float32",
        device="cpu",
        # one buffer (= one on-disk shard) holds as many tokens as one interp shard
        buffer_size_gb=args.shard_tokens * model.cfg.d_model * 4 / 1e9,
        prepend_bos=False,
    )
    # This sae-lens version has no override_model; its runner loads models by name only.
    car.load_model = lambda **kwargs: model
    runner = car.CacheActivationsRunner(cfg, override_dataset=args._dataset)
    runner.run()
    # The runner rounds up to whole buffers; count the tokens it actually ran.
    args._tokens_run = cfg.n_buffers * cfg.n_tokens_in_buffer
    args._dataset = Dataset.from_dict({"input_ids": args._rows})  # fresh one for the next run


def _saelens_all(model, tokens, out: Path, args) -> None:
    from datasets import Dataset

    tokens_run = 0
    for layer in range(model.cfg.n_layers):
        _saelens(model, tokens, out / f"layer{layer}", args, hook=f"blocks.{layer}.hook_resid_post")
        tokens_run = args._tokens_run
    args._tokens_run = tokens_run  # tokens per hook, as for interp_all
    args._dataset = Dataset.from_dict({"input_ids": args._rows})


def _interp_all(model, tokens, out: Path, args) -> None:
    _interp(model, tokens, out, args, hooks=("blocks.*.hook_resid_post",))


def _interp(model, tokens, out: Path, args, hooks: tuple[str, ...] | None = None) -> None:
    from interp.cache import CacheConfig, build_cache
    from interp.models import as_model

    config = CacheConfig(
        hooks=hooks or (args.hook,), positions="all", dtype="float32",
        batch_size=args.batch_size, shard_tokens=args.shard_tokens,
    )
    # A fresh wrapper each run, so the weight fingerprint is computed inside the timing.
    build_cache(as_model(model, spec="bench"), tokens, out, config, progress=False)


def _read(cache_dir: Path, hook: str, cold: bool) -> tuple[int, float]:
    from interp.cache import open_cache

    if cold:
        for shard in sorted((cache_dir / "shards").glob("*.safetensors")):
            fd = os.open(shard, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    t0 = time.perf_counter()
    acts = open_cache(cache_dir)[hook].to_tensor()
    elapsed = time.perf_counter() - t0
    return len(acts), elapsed


def child_main(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    root, method = Path(args.setup), args.child
    result = {"method": method, "threads": torch.get_num_threads()}
    times: list[float] = []
    cpu: list[float] = []  # CPU-seconds of this process (all its threads) per timed run
    if method in READ_METHODS:
        cache_dir = root / "interp_cache"
        _read(cache_dir, args.hook, cold=False)  # warm-up: imports, first open
        result["rss_before_mib"] = _rss_mib()
        for _ in range(args.repeats):
            c0 = time.process_time()
            n, elapsed = _read(cache_dir, args.hook, cold=method == "read_cold")
            times.append(elapsed)
            cpu.append(time.process_time() - c0)
    else:
        from safetensors.torch import load_file

        model = _load_model(root)
        tokens = load_file(root / "tokens.safetensors")["tokens"]
        if method == "interp_small":
            tokens = tokens[: len(tokens) // 4]
        n = tokens.numel()
        fn = {"bare": _bare, "fwd_to_hook": _fwd_to_hook, "rwc_save": _rwc_save,
              "saelens": _saelens, "interp": _interp, "interp_small": _interp,
              "saelens_all": _saelens_all, "interp_all": _interp_all}[method]
        warm = tokens[: 2 * args.batch_size]
        if method in ("saelens", "saelens_all"):
            from datasets import Dataset

            args._rows = warm.tolist()
            args._dataset = Dataset.from_dict({"input_ids": args._rows})
            fn(model, warm, root / "warmup", args)
            args._rows = tokens.tolist()
            args._dataset = Dataset.from_dict({"input_ids": args._rows})
        else:
            fn(model, warm, root / "warmup", args)
        shutil.rmtree(root / "warmup", ignore_errors=True)
        result["rss_before_mib"] = _rss_mib()
        for r in range(args.repeats):
            out = root / f"out_{method}_{r}"
            c0, t0 = time.process_time(), time.perf_counter()
            fn(model, tokens, out, args)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if method == "interp" and r == args.repeats - 1:
                shutil.rmtree(root / "interp_cache", ignore_errors=True)
                out.rename(root / "interp_cache")  # read back by the read_* children
            else:
                shutil.rmtree(out, ignore_errors=True)
    best = min(times)
    n = getattr(args, "_tokens_run", n)
    result.update(
        tokens=n, seconds=best, times=times, tokens_per_s=n / best,
        cpu_seconds=min(cpu), cpu_times=cpu, tokens_per_cpu_s=n / min(cpu),
        # ru_maxrss is in KiB on Linux
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    Path(args.result).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
