"""Exact bootstrap distributions, for expected values computed without wildmerge's code.

A percentile bootstrap CI from B resamples estimates two quantiles of the *exact* bootstrap
distribution (every resample of the data, each with its probability). For small data sets
that distribution is computed here by plain enumeration / convolution, so a test can check a
table's CI against it without calling the function under test or knowing its random stream:
the Monte Carlo percentile lies between the exact quantiles at ``alpha -/+ slack``
(:func:`quantile_band`), ``slack`` a few binomial standard errors of the empirical CDF.

Distributions are ``dict[value, probability]`` (values rounded to 9 decimals).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

Dist = dict[float, float]


def _key(x: float) -> float:
    return round(float(x), 9)


def point(x: float) -> Dist:
    return {_key(x): 1.0}


def uniform(values: Iterable[float]) -> Dist:
    """One draw from ``values`` (with repeats), each value equally likely."""
    values = list(values)
    out: Dist = defaultdict(float)
    for v in values:
        out[_key(v)] += 1.0 / len(values)
    return dict(out)


def combine(a: Mapping[float, float], b: Mapping[float, float], op=lambda x, y: x + y) -> Dist:
    """Distribution of ``op(X, Y)`` for independent X ~ a, Y ~ b."""
    out: Dist = defaultdict(float)
    for x, p in a.items():
        for y, q in b.items():
            out[_key(op(x, y))] += p * q
    return dict(out)


def scale(a: Mapping[float, float], c: float) -> Dist:
    out: Dist = defaultdict(float)
    for x, p in a.items():
        out[_key(c * x)] += p
    return dict(out)


def mixture(parts: Iterable[tuple[float, Mapping[float, float]]]) -> Dist:
    """``sum_i w_i * dist_i`` (the weights sum to 1)."""
    out: Dist = defaultdict(float)
    for w, d in parts:
        for x, p in d.items():
            out[_key(x)] += w * p
    return dict(out)


def resample_mean(values: Iterable[float]) -> Dist:
    """The bootstrap distribution of the mean: k draws with replacement from the k ``values``."""
    values = list(values)
    k = len(values)
    one = uniform(values)
    total = point(0.0)
    for _ in range(k):
        total = combine(total, one)
    return scale(total, 1.0 / k)


def binomial(n: int, p: float) -> Dist:
    """Binomial(n, p) counts."""
    return {float(j): math.comb(n, j) * p**j * (1.0 - p) ** (n - j) for j in range(n + 1)}


def quantile(dist: Mapping[float, float], q: float) -> float:
    """The smallest x with P(X <= x) >= q (q clipped to [0, 1])."""
    q = min(max(q, 0.0), 1.0)
    acc = 0.0
    xs = sorted(dist)
    for x in xs:
        acc += dist[x]
        if acc >= q - 1e-12:
            return x
    return xs[-1]


def slack(n_boot: int, alpha: float, sigmas: float = 5.0) -> float:
    """``sigmas`` standard errors of the empirical CDF at ``alpha`` with ``n_boot`` resamples."""
    return sigmas * math.sqrt(alpha * (1 - alpha) / n_boot) + 1.0 / n_boot


def quantile_band(dist: Mapping[float, float], level: float, n_boot: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the percentile CI's ends from ``n_boot`` resamples must lie: ((lo_min, lo_max), (hi_min, hi_max))."""
    alpha = (1.0 - level) / 2.0
    s = slack(n_boot, alpha)
    lo = (quantile(dist, alpha - s), quantile(dist, alpha + s))
    hi = (quantile(dist, 1 - alpha - s), quantile(dist, 1 - alpha + s))
    return lo, hi


def assert_ci_in_band(lo: float, hi: float, dist: Mapping[float, float], level: float, n_boot: int) -> None:
    (lo_min, lo_max), (hi_min, hi_max) = quantile_band(dist, level, n_boot)
    assert lo_min - 1e-9 <= lo <= lo_max + 1e-9, f"CI low end {lo} outside the exact quantiles [{lo_min}, {lo_max}]"
    assert hi_min - 1e-9 <= hi <= hi_max + 1e-9, f"CI high end {hi} outside the exact quantiles [{hi_min}, {hi_max}]"
