"""Proxy-tuned generation (three models a step, one key-value cache each) vs the base model's own.

    .venv/bin/python benchmarks/proxy_tuning.py [--prompts 64 --new-tokens 64 --repeats 3 --threads 1]

Models: ``base``, ``small-tuned`` (expert) and ``small-base`` (anti-expert) from the zoo at
``$INTERP_ZOO`` when it has them, else random quick-profile shapes (base: 3 layers, d_model 128;
small: 2 layers, d_model 64; d_vocab 52, n_ctx 128). Prompts: the zoo's chain-of-thought test
prompts (or random 4-token prompts), cycled to ``--prompts``. No stop token, so both decode
exactly ``--new-tokens`` tokens per prompt and do the same number of steps. Prints the best of
``--repeats`` timings of each (the three run in rotation), the ratio proxy / base (target
<= 3.5), and, as a check on the generalised generator, the organism's own ``HookedTransformer``
generator on the same prompts.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch


def quick_models():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    def make(layers: int, d: int, seed: int):
        cfg = HookedTransformerConfig(
            n_layers=layers,
            d_model=d,
            d_head=d // 4,
            n_heads=4,
            d_mlp=4 * d,
            n_ctx=128,
            d_vocab=52,
            act_fn="gelu",
            normalization_type="LN",
            seed=seed,
            device="cpu",
        )
        return HookedTransformer(cfg).eval()

    return make(3, 128, 0), make(2, 64, 1), make(2, 64, 2), None


def zoo_models():
    from interp.organism import available_organisms, load_organism, organism_prompts

    zoo = os.environ.get("INTERP_ZOO")
    if not zoo or not {"base", "small-base", "small-tuned"} <= set(available_organisms(zoo)):
        return None
    (base, tok), (expert, _), (anti, _) = (
        load_organism(n, zoo) for n in ("base", "small-tuned", "small-base")
    )
    prompts = [tok.encode(p) for p in organism_prompts("test_id", zoo)]
    return base, expert, anti, prompts


def best_of(repeats: int, fns: dict) -> dict[str, tuple[float, object]]:
    """Best time and last output of each function, run in rotation so drift hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    outs: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {k: (min(times[k]), outs[k]) for k in fns}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=".bench/proxy_tuning.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from interp.generation import generate
    from interp.organism.generate import generate as organism_generate
    from steering.decoding import ProxyConfig, proxy_tune

    loaded = zoo_models()
    source = "zoo" if loaded else "random quick shapes"
    base, expert, anti, prompts = loaded or quick_models()
    if prompts is None:
        g = torch.Generator().manual_seed(0)
        prompts = torch.randint(0, 52, (args.prompts, 4), generator=g).tolist()
    prompts = [prompts[i % len(prompts)] for i in range(args.prompts)]
    n = args.new_tokens
    cfg = ProxyConfig(alpha=1.0, max_new_tokens=n, batch_size=args.prompts)

    generate(base, prompts[:2], 2)  # warm-up
    proxy_tune(base, expert, anti, prompts[:2], ProxyConfig(max_new_tokens=2))
    timed = best_of(
        args.repeats,
        {
            "base": lambda: generate(base, prompts, n, batch_size=args.prompts),
            "proxy": lambda: proxy_tune(base, expert, anti, prompts, cfg),
            "organism": lambda: organism_generate(base, prompts, n, batch_size=args.prompts),
        },
    )
    (t_base, out_base), (t_proxy, res), (t_org, out_org) = timed["base"], timed["proxy"], timed["organism"]
    same = proxy_tune(base, expert, expert, prompts, ProxyConfig(max_new_tokens=n, batch_size=args.prompts))
    tokens = sum(len(o) for o in out_base)
    result = {
        "models": source,
        "prompts": args.prompts,
        "new_tokens": n,
        "threads": args.threads,
        "seconds_base": t_base,
        "seconds_proxy": t_proxy,
        "seconds_organism_generate": t_org,
        "tokens_per_s_base": tokens / t_base,
        "tokens_per_s_proxy": tokens / t_proxy,
        "ratio_proxy_over_base": t_proxy / t_base,
        "ratio_generation_over_organism": t_base / t_org,
        "same_tokens_as_organism_generate": out_base == out_org,
        "proxy_with_expert_as_antiexpert_equals_base": same.tokens == out_base,
        "offset_changed_share": res.changed_share,
    }
    print(f"models: {source}; {args.prompts} prompts x {n} new tokens, {args.threads} thread(s)")
    print(f"base generate (interp.generation)     {t_base:8.3f} s  {tokens / t_base:9.0f} tok/s")
    print(f"proxy-tuned (3 models, 3 KV caches)   {t_proxy:8.3f} s  {tokens / t_proxy:9.0f} tok/s")
    print(f"organism generate (same base)         {t_org:8.3f} s")
    print(f"ratio proxy / base: {t_proxy / t_base:.2f}x (target <= 3.5x)")
    ratio = t_base / t_org
    print(f"ratio interp.generation / organism generate: {ratio:.2f}x; same tokens: {out_base == out_org}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
