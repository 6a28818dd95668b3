"""Planted shared and model-specific directions: the oracle the crosscoder tests share
(tests/steering/test_crosscoder.py, tests/experiments/test_model_diff.py)."""

import torch

from steering.crosscoder import CrosscoderConfig


def planted(n=4096, d_model=16, n_shared=4, n_base=3, n_tuned=3, p=0.15, seed=0, noise=0.01):
    """Two "models" built from one sparse code over orthonormal directions.

    Shared directions appear in both with the same coefficient; base-only ones only in base,
    tuned-only ones only in tuned.
    """
    g = torch.Generator().manual_seed(seed)
    n_dirs = n_shared + n_base + n_tuned
    dirs = torch.linalg.qr(torch.randn(d_model, d_model, generator=g))[0].T[:n_dirs]
    on = torch.rand(n, n_dirs, generator=g) < p
    code = on * (0.5 + torch.rand(n, n_dirs, generator=g))
    sh, bo, to = slice(0, n_shared), slice(n_shared, n_shared + n_base), slice(n_shared + n_base, n_dirs)
    base = code[:, sh] @ dirs[sh] + code[:, bo] @ dirs[bo] + noise * torch.randn(n, d_model, generator=g)
    tuned = code[:, sh] @ dirs[sh] + code[:, to] @ dirs[to] + noise * torch.randn(n, d_model, generator=g)
    kinds = ["shared"] * n_shared + ["base-only"] * n_base + ["tuned-only"] * n_tuned
    return {"base": base, "tuned": tuned}, dirs, kinds


PLANTED_CONFIG = CrosscoderConfig(n_latents=32, k=2, steps=1000, batch_size=256, lr=1e-2, dead_steps=50)
