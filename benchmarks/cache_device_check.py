"""Checks that need a GPU: cache build on CUDA, cross-device verification, GPU throughput.

Run on a machine with CUDA:  python benchmarks/cache_device_check.py --out DIR
Prints a table and writes DIR/cache_device_check.json. Not part of the test suite (CI has no GPU).
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_hf_gpt2(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>"] + [f"w{i}" for i in range(62)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=64, n_positions=64, n_embd=64, n_layer=3, n_head=4)
    ).save_pretrained(path)
    fast.save_pretrained(path)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".bench")
    ap.add_argument("--tokens", type=int, default=1 << 19)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = args.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.cache import CacheConfig, build_cache, verify_cache
    from interp.models import as_model, load_model

    results: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    work = Path(tempfile.mkdtemp())
    try:
        # 1. hf: model on CUDA, cache built there, verified there and on the CPU.
        tiny_hf_gpt2(work / "gpt2")
        gpu = load_model(f"hf:{work / 'gpt2'}", device=dev)
        prompts = [" ".join(f"w{(i * 7 + j) % 60}" for j in range(5 + i % 40)) for i in range(400)]
        cfg = CacheConfig(hooks=("blocks.*.hook_resid_post",), shard_tokens=2048, batch_size=32)
        cache = build_cache(gpu, prompts, work / "c_gpu", cfg, progress=False)
        same_gpu = verify_cache(work / "c_gpu", model=gpu, recompute=64, progress=False)
        cpu = load_model(f"hf:{work / 'gpt2'}", device="cpu")
        cross = verify_cache(work / "c_gpu", model=cpu, recompute=64, progress=False)
        cache_cpu = build_cache(cpu, prompts, work / "c_cpu", cfg, progress=False)
        results["hf_cuda"] = {
            "fingerprint_same_cpu_gpu": gpu.fingerprint == cpu.fingerprint,
            "id_gpu": cache.id,
            "id_cpu": cache_cpu.id,
            "verify_on_gpu_ok": same_gpu.ok,
            "verify_on_gpu_max_rel_error": same_gpu.max_rel_error,
            "verify_on_cpu_ok": cross.ok,
            "verify_on_cpu_max_rel_error": cross.max_rel_error,
            "problems": list(same_gpu.problems + cross.problems),
        }
        print(json.dumps(results["hf_cuda"], indent=1))

        # 2. Throughput on the GPU: bare forward vs cache build, same model and tokens.
        hcfg = HookedTransformerConfig(
            n_layers=args.layers, d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_ctx=args.seq_len,
            d_vocab=8192, act_fn="gelu", seed=0, device=dev,
        )
        model = as_model(HookedTransformer(hcfg), spec="bench-gpt2-small-shape")
        n_rows = args.tokens // args.seq_len
        toks = torch.randint(0, 8192, (n_rows, args.seq_len), generator=torch.Generator().manual_seed(0))
        bs = 32

        def bare() -> float:
            sync()
            t = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, n_rows, bs):
                    model.module(toks[i : i + bs].to(dev))
            sync()
            return time.perf_counter() - t

        bare()  # warm-up
        t_bare = min(bare(), bare())
        rows = {}
        for hook, dtype in [
            (f"blocks.{args.layers // 2}.hook_resid_post", "float32"),
            (f"blocks.{args.layers // 2}.hook_resid_post", "bfloat16"),
            (f"blocks.{args.layers - 1}.hook_resid_post", "float32"),
        ]:
            d = work / f"thr_{hook}_{dtype}"
            c = CacheConfig(hooks=(hook,), dtype=dtype, batch_size=bs, shard_tokens=1 << 17)
            sync()
            t = time.perf_counter()
            build_cache(model, toks, d, c, progress=False)
            sync()
            dt = time.perf_counter() - t
            t2 = time.perf_counter()
            opened = build_cache(model, toks, d, c, progress=False)  # complete: just opens
            acts = opened[hook].to_tensor()
            t_read = time.perf_counter() - t2
            rows[f"{hook}:{dtype}"] = {
                "seconds": dt, "tokens_per_s": args.tokens / dt, "ratio_to_bare": t_bare / dt,
                "read_seconds": t_read, "read_over_recompute": t_bare / t_read, "n": len(acts),
            }
            shutil.rmtree(d)
        results["throughput"] = {"bare_seconds": t_bare, "bare_tokens_per_s": args.tokens / t_bare,
                                 "tokens": args.tokens, "builds": rows}
        print(f"bare forward: {args.tokens / t_bare:,.0f} tok/s")
        for k, v in rows.items():
            print(f"{k:<36} {v['tokens_per_s']:>12,.0f} tok/s  interp/bare = {v['ratio_to_bare']:.2f}  "
                  f"read/recompute = {v['read_over_recompute']:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        (out / "cache_device_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
