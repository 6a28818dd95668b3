"""probes.cka: linear CKA against its closed-form properties and a hand-computed value."""

import math

import pytest
import torch

from probes.cka import CKAStats, linear_cka, paired_cka


def _x(n=60, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(d, seed=1):
    q, _ = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q


def test_cka_of_x_with_itself_is_one():
    assert float(linear_cka(_x(), _x())) == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_example():
    # Xc = [-1, 0, 1]; Yc^T Xc = [0, 1]; ||Xc^T Xc|| = 2; ||Yc^T Yc|| = sqrt(10) / 3
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert float(linear_cka(x, y)) == pytest.approx(3 / (2 * math.sqrt(10)), abs=1e-12)
    assert float(linear_cka(y, x)) == pytest.approx(3 / (2 * math.sqrt(10)), abs=1e-12)


def test_invariant_to_orthogonal_transforms_isotropic_scaling_and_shifts():
    x, y = _x(seed=0), _x(d=4, seed=2) + 0.5 * _x(seed=0)[:, :4]
    ref = float(linear_cka(x, y))
    assert 0.05 < ref < 0.95
    moved = float(linear_cka(7.5 * x @ _orthogonal(6) + 3.0, 0.2 * y @ _orthogonal(4, seed=3) - 1.0))
    assert moved == pytest.approx(ref, abs=1e-10)


def test_not_invariant_to_anisotropic_scaling():
    x = _x()
    scaled = x * torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64)
    assert float(linear_cka(x, scaled)) < 0.9


def test_unrelated_representations_score_low():
    assert float(linear_cka(_x(n=2000, seed=0), _x(n=2000, seed=9))) < 0.05


def test_batched_over_layers_and_streamed_in_batches_agree():
    x = torch.stack([_x(seed=s) for s in range(3)])
    y = torch.stack([_x(seed=s + 10) + _x(seed=s) for s in range(3)])
    per_layer = torch.stack([linear_cka(x[i], y[i]) for i in range(3)])
    torch.testing.assert_close(linear_cka(x, y), per_layer)
    stats = CKAStats()
    for i in range(0, 60, 17):
        stats.update(x[:, i : i + 17].float(), y[:, i : i + 17].float())
    torch.testing.assert_close(stats.value(), per_layer, atol=1e-6, rtol=0)


def test_constant_side_gives_nan_and_bad_shapes_raise():
    assert math.isnan(float(linear_cka(torch.ones(10, 3), _x(n=10))))
    # under the test-time shape checker the mismatch is a TypeCheckError (a TypeError) first
    with pytest.raises((ValueError, TypeError)):
        linear_cka(_x(n=10), _x(n=11))
    with pytest.raises(ValueError, match="at least 2 rows"):
        linear_cka(_x(n=1), _x(n=1))
    stats = CKAStats()
    stats.update(_x(n=5), _x(n=5))
    with pytest.raises(ValueError, match="does not match"):
        stats.update(_x(n=5, d=3), _x(n=5))


def test_paired_cache_cka_equals_in_memory_cka(gpt2, gpt2_other, prompts, tmp_path):
    from interp.cache import CacheConfig, build_paired_cache

    hooks = ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post")
    config = CacheConfig(hooks=hooks, shard_tokens=40, batch_size=8)
    paired = build_paired_cache(
        {"base": gpt2, "tuned": gpt2_other}, prompts[:12], tmp_path, config, progress=False
    )
    streamed = paired_cka(paired, hooks, batch_size=16)
    for h in hooks:
        whole = linear_cka(paired["base"][h].to_tensor(), paired["tuned"][h].to_tensor())
        assert streamed[h] == pytest.approx(float(whole), abs=1e-6)
    assert paired_cka(paired, hooks[:1], labels=("base", "base"))[hooks[0]] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="labels"):
        paired_cka(paired, hooks, labels=("base", "nope"))
