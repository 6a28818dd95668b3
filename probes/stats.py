"""Intervals for every comparison: seeded percentile bootstrap, and Wilson intervals for proportions.

A verdict needs its interval to exclude zero (:meth:`Interval.excludes`); a comparison of two
models on the same examples is paired (:func:`bootstrap_paired_diff`), on different examples
unpaired (:func:`bootstrap_diff`). Everything is seeded, so a report's intervals reproduce.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 2000
Z95 = 1.959963984540054
Values = Sequence[float] | Sequence[int] | np.ndarray  # one number per observation


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval.

    Attributes:
        estimate: the statistic on the data as observed.
        low, high: the interval's ends.
        level: its confidence level (0.95).
        n: the number of observations (pairs, for a paired difference).
        method: ``percentile-bootstrap`` or ``wilson``.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    method: str

    def excludes(self, value: float = 0.0) -> bool:
        """True when ``value`` lies outside the interval (a verdict may then be given)."""
        return not (self.low <= value <= self.high)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def _array(values: Values, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence of numbers; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} holds {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


def _check(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level {level} must lie strictly between 0 and 1")
    if resamples < 100:
        raise ValueError(f"resamples {resamples} is too few for an interval; use at least 100")


def _percentile(stats: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(
    values: Values,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over one sample.

    Args:
        values: the observations (e.g. one score per example).
        statistic: applied to each resample along its last axis (default: the mean).
        level: the confidence level.
        resamples: how many bootstrap resamples.
        seed: seeds the resampling.

    Raises:
        ValueError: an empty sample, non-finite values, a level outside (0, 1), too few resamples.

    Example:
        >>> iv = bootstrap([1.0, 1.0, 1.0, 1.0])
        >>> (iv.estimate, iv.low, iv.high)
        (1.0, 1.0, 1.0)
    """
    _check(level, resamples)
    arr = _array(values, "values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(resamples, arr.size))
    stats = np.apply_along_axis(statistic, 1, arr[idx]) if statistic is not np.mean else arr[idx].mean(1)
    low, high = _percentile(stats, level)
    return Interval(float(statistic(arr)), low, high, level, int(arr.size), "percentile-bootstrap")


def bootstrap_paired_diff(
    a: Values, b: Values, level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> Interval:
    """Interval of ``mean(a - b)`` over paired observations (two models on the same examples).

    Raises:
        ValueError: ``a`` and ``b`` of different lengths (they must be paired), or as in
            :func:`bootstrap`.

    Example:
        >>> bootstrap_paired_diff([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]).estimate
        2.0
    """
    xa, xb = _array(a, "a"), _array(b, "b")
    if xa.size != xb.size:
        raise ValueError(f"paired samples differ in length ({xa.size} vs {xb.size}); pair them by example")
    return bootstrap(xa - xb, level=level, resamples=resamples, seed=seed)


def bootstrap_diff(
    a: Values, b: Values, level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> Interval:
    """Interval of ``mean(a) - mean(b)`` for two independent samples (each resampled on its own).

    Example:
        >>> iv = bootstrap_diff([1.0] * 20, [0.0] * 30)
        >>> iv.estimate, iv.excludes(0.0)
        (1.0, True)
    """
    _check(level, resamples)
    xa, xb = _array(a, "a"), _array(b, "b")
    rng = np.random.default_rng(seed)
    ma = xa[rng.integers(0, xa.size, size=(resamples, xa.size))].mean(1)
    mb = xb[rng.integers(0, xb.size, size=(resamples, xb.size))].mean(1)
    low, high = _percentile(ma - mb, level)
    return Interval(float(xa.mean() - xb.mean()), low, high, level, int(xa.size + xb.size),
                    "percentile-bootstrap")


def wilson(successes: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion.

    Example:
        >>> iv = wilson(8, 10)
        >>> round(iv.low, 4), round(iv.high, 4)
        (0.4902, 0.9433)
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson needs 0 <= successes <= n and n >= 1; got {successes} of {n}")
    if abs(level - 0.95) > 1e-12:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + level / 2)
    else:
        z = Z95
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 of n (n of n) the bound is exactly 0 (1); rounding would leave ~1e-17 and an
    # interval that seemed to exclude zero
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(p, low, high, level, n, "wilson")
