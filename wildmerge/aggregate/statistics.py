"""Statistics of the tables: the shared-resample bootstrap and the paired tests.

Bootstrap (:func:`bootstrap_indices`): the k subsets (experts at n=1) of a table row are
resampled with replacement ``n_boot`` times (default :data:`DEFAULT_N_BOOT` = 2000) and the
statistic recomputed on each resample; the CI is the (1-level)/2 and (1+level)/2 percentiles
of the replicates (:func:`percentile_ci`, default level 0.95). The random stream is derived
from (``seed``, base, n, k) (default seed :data:`DEFAULT_SEED` = 0), so tables are
reproducible, independent of which other methods or tables are computed, identical for the
n=1 rows of every method, and every method at one (base, n) is resampled on the same draws
of subsets (SciPy's ``bootstrap`` draws its own resamples per call, so it cannot share them).

Paired tests: :func:`sign_test_p` (``scipy.stats.binomtest``) and
:func:`wilcoxon_signed_rank_p` (``scipy.stats.wilcoxon``, exact permutation distribution
given tied ranks).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

#: Bootstrap resamples per table row, and the seed of the derived random streams.
DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95

#: A difference (or gain) counts as non-zero only if it is above float noise, in points.
EPS = 1e-9

#: Largest number of non-zero differences whose Wilcoxon null distribution with tied ranks
#: is enumerated exactly (2**k sign patterns, ~0.4 s at 15); larger ones use 100,000
#: seeded random sign patterns.
WILCOXON_EXACT_MAX = 16


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap settings: ``n_boot`` resamples (0: no CIs), ``seed``, CI ``level``."""

    n_boot: int = DEFAULT_N_BOOT
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL

    def __post_init__(self) -> None:
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, (int, np.integer)) or self.n_boot < 0:
            raise ValueError(f"n_boot must be an integer >= 0, got {self.n_boot!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not 0.0 < float(self.level) < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level!r}")


def bootstrap_indices(k: int, n_boot: int, seed: int, *key: object) -> np.ndarray:
    """``(n_boot, k)`` integer array: row b draws k of ``range(k)`` with replacement.

    The stream comes from ``numpy.random.default_rng`` seeded with ``seed`` and a hash of
    ``(k, *key)`` (e.g. base and n), so it is reproducible and does not depend on what
    else is resampled, or in which order.
    """
    digest = hashlib.sha256(json.dumps([int(k)] + [str(x) for x in key]).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    rng = np.random.default_rng([int(seed), *words])
    return rng.integers(0, k, size=(int(n_boot), int(k)))


def percentile_ci(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Percentile interval: the (1-level)/2 and (1+level)/2 quantiles of the replicates."""
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(np.asarray(replicates, dtype=float), [alpha, 1.0 - alpha])
    return float(lo), float(hi)



def sign_test_p(n_pos: int, n_neg: int) -> float:
    """Exact two-sided sign-test p-value for ``n_pos`` positive and ``n_neg`` negative pairs.

    Ties are expected to be dropped by the caller. ``scipy.stats.binomtest`` of ``n_pos``
    successes in ``n_pos + n_neg`` trials at 1/2 (for p = 1/2 its two-sided p is
    ``min(1, 2 P(X <= min(n_pos, n_neg)))``); 1.0 when there is no non-tied pair.
    """
    if n_pos < 0 or n_neg < 0:
        raise ValueError(f"counts must be >= 0, got {n_pos}, {n_neg}")
    m = int(n_pos) + int(n_neg)
    if m == 0:
        return 1.0
    return float(min(1.0, stats.binomtest(int(n_pos), m, 0.5, alternative="two-sided").pvalue))


def _positive_rank_sum(signed_ranks: np.ndarray, axis: int) -> np.ndarray:
    return np.where(signed_ranks > 0, signed_ranks, 0.0).sum(axis=axis)


def wilcoxon_signed_rank_p(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired differences (exact for k <= 16).

    Differences within :data:`EPS` of zero are dropped (Wilcoxon's zero handling); tied
    absolute differences (compared at 9 decimals) get their average rank. Without ties:
    ``scipy.stats.wilcoxon(method="exact")``. With ties, SciPy's exact distribution does
    not apply; the null distribution of the positive-rank sum W+ given the tied ranks is
    the permutation distribution (every sign equally likely), ``scipy.stats.permutation_test``
    over the signs: every one of the 2**k sign patterns for k <= :data:`WILCOXON_EXACT_MAX`,
    else 100,000 seeded random ones. ``p = min(1, 2 min(P(W+ <= w), P(W+ >= w)))``.
    1.0 when no difference is non-zero; NaN for an empty input.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan")
    d = np.round(d[np.abs(d) > EPS], 9)
    if d.size == 0:
        return 1.0
    if np.unique(np.abs(d)).size == d.size:
        return float(min(1.0, stats.wilcoxon(d, zero_method="wilcox", method="exact").pvalue))
    signed_ranks = np.sign(d) * stats.rankdata(np.abs(d))
    exact = d.size <= WILCOXON_EXACT_MAX
    res = stats.permutation_test(
        (signed_ranks,),
        _positive_rank_sum,
        permutation_type="samples",
        vectorized=True,
        n_resamples=np.inf if exact else 100_000,
        alternative="two-sided",
        rng=np.random.default_rng(0),
    )
    return float(min(1.0, res.pvalue))


def average_replicates(replicates: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, ...]:
    """The "Average" rows' bootstrap replicates: per statistic, the mean over bases of each base's
    replicates, replicate by replicate (each base's drawn independently)."""
    return tuple(np.mean([r[i] for r in replicates], axis=0) for i in range(len(replicates[0])))
