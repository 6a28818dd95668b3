"""All-layer batched probe fitting vs a per-layer scikit-learn LogisticRegression loop.

scikit-learn is a peer, not a dependency: on first use it is installed into ``.bench/peers``
(``pip install --target``), outside the project's environment.

    .venv/bin/python benchmarks/probe_fit.py [--layers 8 --n 4000 --d 256 --classes 2]

Same standardised features, same split, same objective (L2, C=1); prints times, held-out
accuracies per layer and the ratio.
"""

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

PEERS = Path(__file__).resolve().parent.parent / ".bench" / "peers"


def sklearn():
    # appended, not prepended: the project's own numpy must win over anything in PEERS
    sys.path.append(str(PEERS))
    try:
        import sklearn.linear_model  # noqa: F401
    except ImportError:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(PEERS),
             "scikit-learn", "scipy", "joblib", "threadpoolctl"],
            check=True,
        )
        importlib.invalidate_caches()
        import sklearn.linear_model  # noqa: F401
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression


def data(layers: int, n: int, d: int, classes: int, seed: int = 0):
    """Activations with a class signal whose strength grows with depth, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    means = torch.randn(classes, d, generator=g)
    x = torch.randn(layers, n, d, generator=g)
    for layer in range(layers):
        x[layer] += (0.05 + 0.1 * layer) * means[y]
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--json", default=".bench/probe_fit.json")
    args = ap.parse_args()
    from probes.linear import ProbeConfig, fit_probes

    x, y = data(args.layers, args.n, args.d, args.classes)
    cfg = ProbeConfig(control=False, max_iter=200)
    fit_probes(x[:1, :200], y[:200], config=cfg)  # warm-up
    t = time.perf_counter()
    ours = fit_probes(x, y, config=cfg)
    t_ours = time.perf_counter() - t

    # Imported only now: scikit-learn's OpenMP/BLAS runtime loaded beside torch's slowed torch
    # down 30x in one run here, which would flatter the peer.
    LogisticRegression = sklearn()
    # the same split and standardisation as fit_probes
    n_test = int(round(args.n * cfg.test_fraction))
    perm = torch.randperm(args.n, generator=torch.Generator().manual_seed(cfg.seed))
    test, train = perm[:n_test], perm[n_test:]
    t = time.perf_counter()
    theirs = []
    for layer in range(args.layers):
        xl = x[layer]
        mean, std = xl[train].mean(0), xl[train].std(0).clamp_min(1e-6)
        xs = ((xl - mean) / std).numpy()
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(xs[train], y[train].numpy())
        theirs.append(float((clf.predict(xs[test]) == y[test].numpy()).mean()))
    t_sk = time.perf_counter() - t

    gap = max(abs(a - b) for a, b in zip(ours.test_accuracy, theirs, strict=True))
    print(f"{args.layers} layers, n={args.n}, d={args.d}, {args.classes} classes, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'layer':>5} {'interp':>8} {'sklearn':>8}")
    for layer, (a, b) in enumerate(zip(ours.test_accuracy, theirs, strict=True)):
        print(f"{layer:>5} {a:>8.3f} {b:>8.3f}")
    print(f"batched all-layer fit: {t_ours:.2f} s; sklearn loop: {t_sk:.2f} s")
    print(f"sklearn/batched = {t_sk / t_ours:.2f} (target >= 5)")
    print(f"max held-out accuracy gap = {100 * gap:.2f} points (target <= 1)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({
        "args": vars(args), "seconds_batched": t_ours, "seconds_sklearn": t_sk,
        "ratio": t_sk / t_ours, "acc_batched": list(ours.test_accuracy), "acc_sklearn": theirs,
        "max_gap_points": 100 * gap,
    }, indent=2))


if __name__ == "__main__":
    main()
