"""probes.linear: batched probes against per-layer fits and optimality, planted directions, lens."""

import json

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from probes.linear import ProbeConfig, _fit, diff_of_means, fit_probes, logit_lens


def planted(n=600, d=16, layers=4, at=2, strength=2.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(layers, n, d, generator=g)
    direction = torch.randn(d, generator=g)
    x[at] += strength * torch.outer(y.float() * 2 - 1, direction / direction.norm())
    return x, y


def test_probe_finds_the_planted_layer_and_control_is_near_chance():
    x, y = planted()
    r = fit_probes(x, y, [f"blocks.{i}.hook_resid_post" for i in range(4)])
    assert r.test_accuracy[2] > 0.95
    assert max(r.test_accuracy[i] for i in (0, 1, 3)) < 0.65
    assert all(abs(c - 0.5) < 0.15 for c in r.control_accuracy)
    assert max(range(4), key=lambda i: r.selectivity[i]) == 2
    assert r.selectivity[2] > 0.3
    assert "blocks.2.hook_resid_post" in str(r)


def test_batched_fit_equals_one_fit_per_layer():
    x, y = planted(n=300, d=8, layers=3)
    xs = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    W, b = _fit(xs, y, 2, C=1.0, max_iter=50)
    for layer in range(3):
        W1, b1 = _fit(xs[layer : layer + 1], y, 2, C=1.0, max_iter=50)
        logits_batched = xs[layer] @ W[layer] + b[layer]
        logits_alone = xs[layer] @ W1[0] + b1[0]
        # the softmax is invariant to a constant shift per row; compare log-probabilities
        assert torch.allclose(logits_batched.softmax(-1), logits_alone.softmax(-1), atol=1e-4)


def test_solution_is_a_stationary_point_of_the_regularised_objective():
    x, y = planted(n=200, d=6, layers=2, at=1)
    C = 0.5
    W, b = _fit(x, y, 2, C=C, max_iter=50)
    W, b = W.clone().requires_grad_(), b.clone().requires_grad_()
    n = len(y)
    loss = sum(
        torch.nn.functional.cross_entropy(x[i] @ W[i] + b[i], y) + (W[i] ** 2).sum() / (2 * C * n)
        for i in range(2)
    )
    loss.backward()
    # class 0's logit is pinned at zero; every free parameter is at a stationary point
    assert W.grad[..., 1:].abs().max() < 1e-5 and b.grad[..., 1:].abs().max() < 1e-5


def test_multiclass_and_save(tmp_path):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (450,), generator=g)
    x = torch.randn(1, 450, 5, generator=g)
    x[0, :, :3] += 3 * torch.nn.functional.one_hot(y, 3).float()
    r = fit_probes(x, y, config=ProbeConfig(control=False))
    assert r.test_accuracy[0] > 0.9 and r.control_accuracy is None and r.selectivity is None
    assert (r.predict(x)[0] == y).float().mean() > 0.9
    r.save(tmp_path / "probe")
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved["test_accuracy"] == list(r.test_accuracy) and saved["meta"]["n_class"] == 3
    from safetensors.torch import load_file

    assert torch.equal(load_file(tmp_path / "probe.safetensors")["W"], r.W)


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.randn(2, 10, 3), torch.zeros(9, dtype=torch.long)), "same n"),
        ((torch.randn(2, 10, 3), torch.zeros(10, dtype=torch.long)), "two classes"),
        ((torch.randn(2, 2, 3), torch.tensor([0, 1])), "too few"),
    ],
)
def test_bad_input_is_a_clear_error(args, match):
    with pytest.raises(ValueError, match=match):
        fit_probes(*args)


def test_config_rejects_bad_values():
    bad = [({"C": 0.0}, "C"), ({"test_fraction": 1.0}, "test_fraction"), ({"max_iter": 0}, "max_iter")]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            ProbeConfig(**kwargs)


def test_diff_of_means_by_hand():
    pos = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    neg = torch.tensor([[0.0, 0.0]])
    assert torch.equal(diff_of_means(pos, neg), torch.tensor([2.0, 3.0]))
    with pytest.raises(ValueError, match="non-empty"):
        diff_of_means(pos, torch.zeros(0, 2))


def test_logit_lens_last_layer_equals_the_model_logits():
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_ctx=8, d_head=4, d_vocab=11, act_fn="gelu", seed=0
    )
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    lens = logit_lens(model, tokens)
    assert lens.shape == (2, 2, 5, 11)
    with torch.inference_mode():
        assert torch.allclose(lens[-1], model(tokens), atol=1e-5)
    assert not torch.allclose(lens[0], lens[-1])
