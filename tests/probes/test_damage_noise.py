"""The random-change controls both test beds share (probes.damage.noise): sizes against a
hand-computed norm, seeding, base untouched, refusals."""

import math

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp.errors import DamageError
from interp.models import Model
from probes.damage.noise import matched_noise, noisy_copy


def _tiny(n_layers: int = 2, seed: int = 0) -> Model:
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=8, n_ctx=6, d_head=4, d_vocab=7, act_fn="relu", seed=seed
    )
    return Model(HookedTransformer(cfg), None, f"tiny{n_layers}-{seed}")


def _tuned(base: Model) -> Model:
    """base with two tensors changed by hand (one a lot, one a little) and the rest untouched."""
    tuned = _tiny()
    tuned.module.load_state_dict(base.module.state_dict())
    with torch.no_grad():
        tuned.module.blocks[0].mlp.W_in.add_(0.5)
        tuned.module.blocks[1].attn.W_Q.mul_(1.01)
    tuned.refresh_fingerprint()
    return tuned


def _params(m: Model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.module.named_parameters()}


def test_matched_noise_moves_each_tensor_as_far_as_the_tune_and_no_further():
    base = _tiny()
    tuned = _tuned(base)
    before = _params(base)
    noisy = matched_noise(base, tuned, seed=1)
    b, t, n = before, _params(tuned), _params(noisy)
    for name in b:
        want = float((t[name].double() - b[name].double()).norm())
        got = float((n[name].double() - b[name].double()).norm())
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), name
        if want > 0:
            assert not torch.allclose(n[name], t[name]), f"{name}: the noise copied the tune's change"
    assert all(torch.equal(p, before[k]) for k, p in _params(base).items()), "base was changed"
    assert noisy.fingerprint not in (base.fingerprint, tuned.fingerprint)


def test_matched_noise_of_an_identical_model_is_the_model():
    base = _tiny()
    same = _tuned(base)
    same.module.load_state_dict(base.module.state_dict())
    assert matched_noise(base, same).fingerprint == base.fingerprint


def test_noise_is_seeded():
    base = _tiny()
    tuned = _tuned(base)
    a, b, c = (matched_noise(base, tuned, seed=s) for s in (0, 0, 1))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_noisy_copy_moves_every_tensor_by_the_relative_size():
    base = _tiny()
    noisy = noisy_copy(base, 0.03, seed=2)
    b, n = _params(base), _params(noisy)
    for name in b:
        norm = float(b[name].double().norm())
        got = float((n[name].double() - b[name].double()).norm())
        assert got == pytest.approx(0.03 * norm, rel=1e-5, abs=1e-7), name


def test_matched_noise_refuses_another_architecture():
    with pytest.raises(DamageError, match="differ in architecture: n_layers 2 vs 3"):
        matched_noise(_tiny(2), _tiny(3))


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_noisy_copy_refuses_a_bad_size(bad):
    with pytest.raises(DamageError, match=r"relative_change=.*expected a finite number >= 0"):
        noisy_copy(_tiny(), bad)
