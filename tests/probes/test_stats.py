"""Intervals against references: scipy's percentile bootstrap and a hand-computed Wilson interval."""

import numpy as np
import pytest

from probes.stats import bootstrap, bootstrap_diff, bootstrap_paired_diff, wilson


def test_bootstrap_matches_scipys_percentile_interval():
    from scipy.stats import bootstrap as scipy_bootstrap

    x = np.random.default_rng(1).normal(0.3, 1.0, 200)
    ours = bootstrap(x, resamples=4000, seed=0)
    ref = scipy_bootstrap((x,), np.mean, n_resamples=4000, method="percentile", random_state=0)
    assert ours.estimate == pytest.approx(x.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert ours.excludes(0.0) and not ours.excludes(0.3)


def test_paired_difference_sees_what_unpaired_cannot():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 5, 50)  # large between-example spread, small consistent effect
    tuned = base - 0.5 + rng.normal(0, 0.1, 50)
    paired = bootstrap_paired_diff(base, tuned)
    unpaired = bootstrap_diff(base, tuned)
    assert paired.estimate == pytest.approx(0.5, abs=0.05)
    assert paired.excludes(0.0)
    assert not unpaired.excludes(0.0)  # the same data, wrongly unpaired, gives no verdict


def test_noise_alone_gets_no_verdict():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 40), rng.normal(0, 1, 40)
    assert not bootstrap_diff(a, b).excludes(0.0)


def test_wilson_against_the_hand_computed_formula():
    n, k, z = 10, 8, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    iv = wilson(k, n)
    assert (iv.low, iv.high) == pytest.approx((centre - half, centre + half))
    assert wilson(0, 5).low == 0.0 and wilson(5, 5).high == 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bootstrap([]), "non-empty"),
        (lambda: bootstrap([1.0, float("nan")]), "non-finite"),
        (lambda: bootstrap([1.0], level=1.5), "level"),
        (lambda: bootstrap([1.0], resamples=10), "resamples"),
        (lambda: bootstrap_paired_diff([1.0, 2.0], [1.0]), "paired samples differ"),
        (lambda: wilson(3, 2), "successes <= n"),
    ],
)
def test_bad_input_names_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wilson_bounds_are_exactly_zero_and_one_at_the_extremes():
    """0 of n must not look above zero (rounding left ~1e-17 as the low bound, and an interval
    that 'excluded' zero), nor n of n below one."""
    for n in (6, 300):
        none, every = wilson(0, n), wilson(n, n)
        assert none.low == 0.0 and not none.excludes(0.0)
        assert every.high == 1.0 and not every.excludes(1.0)
