"""Unbiased pass@k against the closed form and brute-force enumeration of k-subsets."""

import itertools
import math

import pytest

from interp.models import as_model
from probes.passk import PassAtKResult, mean_pass_at_k, pass_at_k, sample_pass_at_k


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_equals_enumeration_and_closed_form(n):
    for c in range(n + 1):
        samples = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(samples, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            closed = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)


def test_large_n_is_stable():
    # C(1000, 500) overflows float; the product form does not
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert 0.99 < pass_at_k(1000, 10, 500) <= 1.0
    assert mean_pass_at_k([4, 4], [0, 4], 2) == 0.5


def test_errors():
    with pytest.raises(ValueError, match="k=5"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c=5"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="expected equal"):
        mean_pass_at_k([1], [1, 0], 1)


def test_sampling(hooked, tmp_path):
    model = as_model(hooked)
    # correct when the first sampled token is even: c varies per prompt, pass@k grows with k
    r = sample_pass_at_k(
        model,
        [[2, 3], [4, 5, 6]],
        lambda i, ids: ids[0] % 2 == 0,
        n=8,
        ks=[1, 2, 8],
        temperature=1.0,
        max_new_tokens=2,
        seed=0,
    )
    assert len(r.correct) == 2 and all(0 <= c <= 8 for c in r.correct)
    p = r.pass_at
    assert p[1] <= p[2] <= p[8]
    assert p[1] == pytest.approx(sum(r.correct) / 16)
    again = sample_pass_at_k(
        model,
        [[2, 3], [4, 5, 6]],
        lambda i, ids: ids[0] % 2 == 0,
        n=8,
        ks=[1],
        temperature=1.0,
        max_new_tokens=2,
        seed=0,
    )
    assert again.correct == r.correct  # seeded
    greedy = sample_pass_at_k(
        model, [[2, 3]], lambda i, ids: True, n=3, ks=[1], temperature=0.0, max_new_tokens=1
    )
    assert greedy.correct == (3,)
    assert r.save(tmp_path / "p.json").is_file() and r.plot(tmp_path / "p.png").stat().st_size > 0
    assert "pass@k" in str(PassAtKResult(2, (1,), (1, 2)))
    with pytest.raises(ValueError, match="ks="):
        sample_pass_at_k(model, [[2]], lambda i, ids: True, n=2, ks=[3])


def test_sampling_bridge_model(gpt2):
    """An hf: model through TransformerBridge samples too (via interp.generation)."""
    r = sample_pass_at_k(
        gpt2,
        ["w1 w2", "w3"],
        lambda i, ids: len(ids) == 3,
        n=3,
        ks=[1, 3],
        temperature=1.0,
        max_new_tokens=3,
        seed=1,
    )
    assert r.correct == (3, 3) and r.pass_at == {1: 1.0, 3: 1.0}
