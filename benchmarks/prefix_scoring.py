"""Batched prefix scoring (probes.scoring) vs one forward pass per prefix, on the same inputs.

    .venv/bin/python benchmarks/prefix_scoring.py [--traces 64 --batch-size 32 --repeats 3 --threads 1]

Inputs: organism chain-of-thought traces (planted checks and mistakes, as the base model is
trained on) for ``--traces`` problems of a 24-node world; every prefix ``q + s_1..s_i + " A"``
(i = 0..n) of every trace, each followed by its reference answer, i.e. exactly the pairs
information gain scores. Model: the quick-profile shape, a random-init ``HookedTransformer``
(3 layers, d_model 128, 4 heads, d_mlp 512, n_ctx 128; ``--layers``, ``--d-model`` change it).
The loop runs ``model(tokens)`` on one unpadded sequence at a time and takes the answer's NLL
from its log-softmax; the batched paths are
``score_continuations(model, prefixes, answers, batch_size)`` (every pair right-padded, one forward
pass per batch), and ``score_shared_prefixes`` (what ``probes.info_gain`` uses on a
HookedTransformer: each trace runs once, followed by one marker-and-answer copy per step whose
positions and attention are set by hooks). Prints the times (best of ``--repeats``, wall and CPU),
the largest NLL difference from the loop, and the ratios (target >= 5).
"""

import argparse
import time

import numpy as np
import torch


def inputs(n_traces: int, seed: int = 0) -> tuple[list, list, list, object]:
    from interp.organism.tokenizer import WordTokenizer, organism_vocab
    from interp.organism.traces import answer_words, cot_prompt, sample_path, trace_steps
    from interp.organism.world import WorldConfig, make_world
    from probes.info_gain import split_organism_trace

    world = make_world(WorldConfig(n_nodes=24, out_degree=2, max_id_dist=4, max_ood_dist=6))
    tok = WordTokenizer(organism_vocab(world.n_nodes))
    rng = np.random.default_rng(seed)
    pairs = world.split("train")
    prefixes, answers, shared = [], [], []
    for _ in range(n_traces):
        s, g = pairs[int(rng.integers(len(pairs)))]
        path = sample_path(world, s, g, rng)
        words, _ = trace_steps(world, path, rng, check_rate=0.4, mistake_rate=0.3)
        steps, _ = split_organism_trace(words)
        ctx = cot_prompt(s, g)
        ans = tok.encode(" ".join(answer_words(path)))
        cuts = []
        for i in range(len(steps) + 1):
            if i:
                ctx += " " + steps[i - 1]
            prefixes.append(tok.encode(ctx + " A"))
            answers.append(ans)
            cuts.append(len(prefixes[-1]) - 1)
        shared.append((tok.encode(ctx), cuts, [tok.token_id("A"), *ans], len(ans)))
    return prefixes, answers, shared, tok


def loop(model, prefixes, answers) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for p, a in zip(prefixes, answers, strict=True):
            logp = torch.log_softmax(model(torch.tensor([p + a]))[0].float(), -1)
            idx = torch.arange(len(p) - 1, len(p) + len(a) - 1)
            out.append(-logp[idx, torch.tensor(a)].double().sum())
    return torch.stack(out)


def best(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time (this process, all threads) of ``repeats`` runs."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp.models import Model
    from probes.scoring import score_continuations, score_shared_prefixes

    prefixes, answers, shared, tok = inputs(args.traces)
    cfg = HookedTransformerConfig(
        n_layers=args.layers,
        d_model=args.d_model,
        n_heads=4,
        d_head=args.d_model // 4,
        d_mlp=4 * args.d_model,
        n_ctx=128,
        d_vocab=len(tok),
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
        device="cpu",
    )
    module = HookedTransformer(cfg).eval()
    model = Model(module, tok, "bench")
    lengths = [len(p) + len(a) for p, a in zip(prefixes, answers, strict=True)]
    print(
        f"{args.traces} traces -> {len(prefixes)} (prefix, answer) pairs, "
        f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f}); "
        f"torch threads {torch.get_num_threads()}, best of {args.repeats}"
    )
    score_continuations(model, prefixes[:8], answers[:8])  # warm-up
    loop(module, prefixes[:8], answers[:8])
    t_loop, c_loop, ref = best(lambda: loop(module, prefixes, answers), args.repeats)
    t_batch, c_batch, s = best(
        lambda: score_continuations(model, prefixes, answers, batch_size=args.batch_size), args.repeats
    )
    ctxs, cuts, tails, n_sc = zip(*shared, strict=True)
    t_shared, c_shared, sh = best(
        lambda: score_shared_prefixes(model, ctxs, cuts, tails, n_sc, batch_size=args.batch_size),
        args.repeats,
    )
    n = len(prefixes)
    print(f"{'method':<34}{'wall s':>8}{'pairs/s':>9}{'CPU s':>8}{'max |dNLL|':>12}")
    rows = [
        ("loop, one pair per forward", t_loop, c_loop, 0.0),
        (f"batched pairs (batch {args.batch_size})", t_batch, c_batch, float((s.nll - ref).abs().max())),
        (f"shared prefixes (batch {args.batch_size})", t_shared, c_shared, float((sh.nll - ref).abs().max())),
    ]
    for label, t, c, d in rows:
        print(f"{label:<34}{t:>8.3f}{n / t:>9.0f}{c:>8.3f}{d:>12.2e}")
    ok = all(d < 1e-3 for *_, d in rows)
    print(f"results {'agree' if ok else 'DISAGREE'} with the loop (tolerance 1e-3 nats)")
    for label, t, c, _ in rows[1:]:
        for what, ratio in (("wall clock", t_loop / t), ("CPU time", c_loop / c)):
            miss = "" if ratio >= 5 else "  MISSED"
            print(f"{label.split(' (')[0]}/loop by {what} = {ratio:.2f}x (target >= 5){miss}")


if __name__ == "__main__":
    main()
