"""Bootstrap CIs of the vs-reference tables, the paired method comparison and its tests."""

import math

import numpy as np
import pandas as pd
import pytest

from wildmerge.aggregate.rendering import format_ci_cell, paired_to_markdown, to_markdown
from wildmerge.aggregate.statistics import (
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    WILCOXON_EXACT_MAX,
    bootstrap_indices,
    percentile_ci,
    sign_test_p,
    wilcoxon_signed_rank_p,
)
from wildmerge.aggregate.tables import PAIRED_COLUMNS, TABLE_COLUMNS, table_paired, table_vs_base, table_vs_best_expert, write_tables

from exact_bootstrap import assert_ci_in_band, binomial, combine, quantile, resample_mean, scale

CI_COLUMNS = ["pct_better_lo", "pct_better_hi", "mean_gain_lo", "mean_gain_hi"]


def _model(base, model_id, role, method, n, subset_id, avg):
    """Two benchmarks that both score exactly ``avg`` points (no float noise in the average)."""
    return [
        {"base": base, "model_id": model_id, "role": role, "method": method, "n": n, "subset_id": subset_id,
         "members": "", "benchmark": b, "metric": "acc", "value": avg / 100, "stderr": 0.01}
        for b in ["bx", "by"]
    ]


def frame(base_acc, experts, merged, base="b1"):
    """Scores of one base: ``experts`` = list of averages; ``merged`` = {(method, n): {subset_id: avg}}."""
    rows = _model(base, "base", "base", "", 0, "", base_acc)
    for i, avg in enumerate(experts):
        rows += _model(base, f"expert-e{i}", "expert", "", 1, "", avg)
    for (method, n), subsets in merged.items():
        for sid, avg in subsets.items():
            rows += _model(base, f"m-{method}-{sid}", "merged", method, n, sid, avg)
    return pd.DataFrame(rows)


def _row(table, base, method, n):
    sel = table[(table.base == base) & (table.method == method) & (table.n == n)]
    assert len(sel) == 1, (base, method, n)
    return sel.iloc[0]


def _pair(table, base, n, a, b):
    sel = table[(table.base == base) & (table.n == n) & (table.method_a == a) & (table.method_b == b)]
    assert len(sel) == 1, (base, n, a, b)
    return sel.iloc[0]


# --------------------------------------------------------------------------- test statistics


def test_sign_test_hand_values():
    assert DEFAULT_N_BOOT == 2000 and DEFAULT_SEED == 0
    assert sign_test_p(8, 0) == pytest.approx(2 / 256)
    assert sign_test_p(0, 8) == pytest.approx(2 / 256)
    assert sign_test_p(7, 1) == pytest.approx(2 * (1 + 8) / 256)
    assert sign_test_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert sign_test_p(3, 3) == 1.0  # capped at 1
    assert sign_test_p(1, 0) == 1.0
    assert sign_test_p(0, 0) == 1.0  # nothing but ties: no evidence
    with pytest.raises(ValueError, match="counts must be >= 0"):
        sign_test_p(-1, 2)


def test_wilcoxon_hand_values():
    # all 8 positive with distinct magnitudes: W+ = 36 is the maximum, P = 1/256 per side
    assert wilcoxon_signed_rank_p([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == pytest.approx(2 / 256)
    # ranks 1..4, W+ = 2+3+4 = 9; sums >= 9 over the 16 sign patterns: {2,3,4}, {1,2,3,4}
    assert wilcoxon_signed_rank_p([-1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 * 2 / 16)
    assert wilcoxon_signed_rank_p([0.0, -1.0, 2.0, 3.0, 4.0]) == pytest.approx(2 * 2 / 16)  # zero dropped
    # five tied magnitudes (average rank 3 each), 4 positive: W+ = 12 = 3 * Binomial(5, 1/2)
    assert wilcoxon_signed_rank_p([1.0, 1.0, 1.0, 1.0, -1.0]) == pytest.approx(2 * 6 / 32)
    assert wilcoxon_signed_rank_p([1.0, 2.0, -3.0]) == 1.0
    assert wilcoxon_signed_rank_p([0.0, 0.0]) == 1.0
    assert math.isnan(wilcoxon_signed_rank_p([]))


# p-values of the hand-written tests these replaced (exact DP over doubled ranks, exact
# binomial tail; wildmerge/aggregate.py at d63cfbe), on data with ties and zeros
HAND_WRITTEN_WILCOXON = [
    ([0.0, 1.5, -1.5, 1.5, 2.0, 0.0, -0.5, 3.0, 1.5, -2.0], 0.375),
    ([1.0, 1.0, 1.0, 1.0, -1.0], 0.375),
    ([0.0, 0.0, 0.25, 0.25, -0.25, 0.75, 1e-12], 0.5),
    ([0.1 + 0.2, 0.3, -0.3, 0.30000000001, 0.6, -0.6, 0.9, 1.2, 0.0, -1e-10], 0.2109375),
    ([0.5, -0.25, 0.5, 1.0, 0.75, -0.5, 0.5, 0.25, 0.0, 1.25, -0.25, 0.5, 1.0, 0.75, 0.5], 0.00634765625),
]
HAND_WRITTEN_SIGN = [
    ((8, 0), 0.0078125), ((7, 1), 0.0703125), ((10, 2), 0.03857421875), ((3, 3), 1.0), ((1, 0), 1.0),
    ((0, 0), 1.0), ((9, 4), 0.266845703125), ((0, 15), 6.103515625e-05), ((12, 3), 0.03515625),
]


@pytest.mark.parametrize("diffs, p", HAND_WRITTEN_WILCOXON)
def test_wilcoxon_matches_hand_written_with_ties_and_zeros(diffs, p):
    assert wilcoxon_signed_rank_p(diffs) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("counts, p", HAND_WRITTEN_SIGN)
def test_sign_test_matches_hand_written(counts, p):
    assert sign_test_p(*counts) == pytest.approx(p, rel=1e-12)


def test_wilcoxon_many_ties_beyond_exact_limit_is_seeded_and_close():
    # 21 non-zero differences with ties: 100,000 seeded random sign patterns (the exact
    # permutation p of the hand-written test was 0.0011043548583984375)
    d = [0.5, -0.25, 0.5, 1.0, 0.75, -0.5, 0.5, 0.25, 0.0, 1.25, -0.25, 0.5, 1.0, 0.75, 0.5, 0.3, -0.3, 0.6,
         0.9, -0.1, 0.2, 0.4]
    assert len(d) - 1 > WILCOXON_EXACT_MAX
    p = wilcoxon_signed_rank_p(d)
    assert p == wilcoxon_signed_rank_p(d)
    assert p == pytest.approx(0.0011043548583984375, abs=5e-4)


def test_wilcoxon_matches_scipy_exact_without_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for m in [3, 6, 10, 15]:
        d = rng.normal(size=m)
        assert wilcoxon_signed_rank_p(d) == pytest.approx(stats.wilcoxon(d, method="exact").pvalue, rel=1e-9)


def test_bootstrap_indices_deterministic_and_keyed():
    a = bootstrap_indices(5, 100, 0, "b1", 2)
    assert a.shape == (100, 5) and a.min() >= 0 and a.max() <= 4
    assert np.array_equal(a, bootstrap_indices(5, 100, 0, "b1", 2))
    assert not np.array_equal(a, bootstrap_indices(5, 100, 1, "b1", 2))
    assert not np.array_equal(a, bootstrap_indices(5, 100, 0, "b2", 2))
    assert percentile_ci(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))


# --------------------------------------------------------------------------- CIs in the tables


def _varied():
    """Base 50; ta n=2 over 12 subsets with gains -1.5 .. +4 (mixed signs)."""
    gains = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    merged = {("ta", 2): {f"s{j:02d}": 50 + g for j, g in enumerate(gains)}}
    return frame(50.0, [49.0, 51.0, 52.0], merged), gains


def test_ci_brackets_the_point_estimate():
    scores, gains = _varied()
    t = table_vs_base(scores, ["ta"])
    assert list(t.columns) == TABLE_COLUMNS and set(CI_COLUMNS) <= set(t.columns)
    for n in [1, 2]:
        for base in ["b1", "Average"]:
            r = _row(t, base, "ta", n)
            assert r.pct_better_lo <= r.pct_better <= r.pct_better_hi
            assert r.mean_gain_lo < r.mean_gain < r.mean_gain_hi
            assert 0 <= r.pct_better_lo and r.pct_better_hi <= 100
    r = _row(t, "b1", "ta", 2)
    assert r.mean_gain == pytest.approx(np.mean(gains))
    assert r.pct_better_lo < r.pct_better < r.pct_better_hi  # 8 of 12 above: not degenerate
    # one base: the Average row is that base's row, CIs included
    a = _row(t, "Average", "ta", 2)
    assert [a[c] for c in CI_COLUMNS] == pytest.approx([r[c] for c in CI_COLUMNS])


def test_ci_is_the_percentile_bootstrap_over_subsets():
    """The CIs against the exact bootstrap distribution over the 12 subsets (enumerated in the
    test, exact_bootstrap): the mean of 12 gains drawn with replacement, and 100 x the share of
    positive ones (8 of 12 are above the base: Binomial(12, 8/12))."""
    scores, gains = _varied()
    t = table_vs_base(scores, ["ta"], seed=7, level=0.9)
    r = _row(t, "b1", "ta", 2)
    assert_ci_in_band(r.mean_gain_lo, r.mean_gain_hi, resample_mean(gains), 0.9, DEFAULT_N_BOOT)
    pct = scale(binomial(12, 8 / 12), 100 / 12)
    assert_ci_in_band(r.pct_better_lo, r.pct_better_hi, pct, 0.9, DEFAULT_N_BOOT)
    # by hand: the mean gain is 1.25; its exact 5% / 95% bootstrap quantiles are 5/12 and 25/12
    assert quantile(resample_mean(gains), 0.05) == pytest.approx(5 / 12) and r.mean_gain == pytest.approx(1.25)


def test_ci_width_matches_the_normal_approximation_for_many_subsets():
    rng = np.random.default_rng(11)
    gains = rng.normal(0.5, 1.0, size=300)
    scores = frame(50.0, [50.0, 51.0], {("ta", 2): {f"s{j:03d}": 50 + g for j, g in enumerate(gains)}})
    r = _row(table_vs_base(scores, ["ta"]), "b1", "ta", 2)
    half = 1.96 * gains.std(ddof=1) / math.sqrt(len(gains))
    assert (r.mean_gain_hi - r.mean_gain_lo) / 2 == pytest.approx(half, rel=0.15)
    assert r.mean_gain_lo < 0.5 < r.mean_gain_hi


def test_ci_collapses_when_all_subsets_gain_the_same():
    merged = {("ta", 2): {f"s{j}": 51.0 for j in range(6)}, ("ties", 2): {f"s{j}": 49.5 for j in range(6)}}
    t = table_vs_base(frame(50.0, [50.0, 52.0], merged), ["ta", "ties"])
    r = _row(t, "b1", "ta", 2)
    assert (r.pct_better_lo, r.pct_better_hi) == (100.0, 100.0)
    assert (r.mean_gain_lo, r.mean_gain_hi) == pytest.approx((1.0, 1.0))
    r = _row(t, "b1", "ties", 2)
    assert (r.pct_better_lo, r.pct_better_hi) == (0.0, 0.0)
    assert (r.mean_gain_lo, r.mean_gain_hi) == pytest.approx((-0.5, -0.5))


def test_bootstrap_is_deterministic_and_seeded():
    scores, _ = _varied()
    t1, t2 = table_vs_base(scores, ["ta"]), table_vs_base(scores, ["ta"])
    pd.testing.assert_frame_equal(t1, t2)
    other = table_vs_base(scores, ["ta"], seed=1)
    assert not np.allclose(t1["mean_gain_lo"], other["mean_gain_lo"])
    pd.testing.assert_frame_equal(t1.drop(columns=CI_COLUMNS), other.drop(columns=CI_COLUMNS))
    # the same rows whatever else is in the table; n=1 (the experts) identical for every method
    scores2 = pd.concat([scores, frame(50.0, [], {("ties", 2): {"s00": 55.0, "s01": 45.0}}).query("role == 'merged'")])
    both = table_vs_base(scores2, ["ties", "ta"])
    assert [_row(both, "b1", "ta", 2)[c] for c in CI_COLUMNS] == [_row(t1, "b1", "ta", 2)[c] for c in CI_COLUMNS]
    assert [_row(both, "b1", "ta", 1)[c] for c in CI_COLUMNS] == [_row(both, "b1", "ties", 1)[c] for c in CI_COLUMNS]


def test_ci_nan_for_single_subset_and_without_bootstrap():
    merged = {("ta", 2): {"s0": 51.0, "s1": 52.0}, ("ta", 3): {"s9": 53.0}}
    scores = pd.concat([frame(50.0, [49.0, 51.0], merged), frame(40.0, [41.0], merged, base="b2")])
    t = table_vs_base(scores, ["ta"])
    assert all(math.isnan(_row(t, "b1", "ta", 3)[c]) for c in CI_COLUMNS)  # k = 1
    assert all(math.isnan(_row(t, "b2", "ta", 1)[c]) for c in CI_COLUMNS)  # one expert
    assert all(math.isnan(_row(t, "Average", "ta", 1)[c]) for c in CI_COLUMNS)  # a base with k = 1
    assert all(not math.isnan(_row(t, "Average", "ta", 2)[c]) for c in CI_COLUMNS)
    t0 = table_vs_base(scores, ["ta"], n_boot=0)
    assert t0[CI_COLUMNS].isna().all().all()
    with pytest.raises(ValueError, match="n_boot"):
        table_vs_base(scores, ["ta"], n_boot=-1)
    with pytest.raises(ValueError, match="level"):
        table_vs_base(scores, ["ta"], level=95)


def test_average_ci_averages_per_base_replicates():
    """Average row: each base's subsets resampled on their own, the two means averaged replicate by
    replicate; its CI against that exact distribution (3^3 x 2^2 resamples, enumerated here)."""
    g1, g2 = [1.0, -1.0, 3.0], [0.0, 2.0]
    scores = pd.concat([
        frame(50.0, [50.0], {("ta", 2): {f"s{j}": 50 + g for j, g in enumerate(g1)}}),
        frame(40.0, [40.0], {("ta", 2): {f"s{j}": 40 + g for j, g in enumerate(g2)}}, base="b2"),
    ])
    t = table_vs_base(scores, ["ta"], seed=5)
    a = _row(t, "Average", "ta", 2)
    assert a.mean_gain == pytest.approx((1.0 + 1.0) / 2)
    average = scale(combine(resample_mean(g1), resample_mean(g2)), 0.5)
    assert_ci_in_band(a.mean_gain_lo, a.mean_gain_hi, average, 0.95, DEFAULT_N_BOOT)
    # by hand: the two lowest averages are (-1 + 0) / 2 (P = 1/27 * 1/4 = 0.9%) and (-1/3 + 0) / 2
    # (P = 3/27 * 1/4 = 2.8%), so the exact 2.5% quantile is -1/6
    assert quantile(average, 0.025) == pytest.approx(-1 / 6)


def test_best_expert_table_has_cis():
    scores, _ = _varied()
    t = table_vs_best_expert(scores, ["ta"])
    r = _row(t, "b1", "ta", 2)
    assert r.mean_gain == pytest.approx(np.mean(_varied()[1]) - 2.0)
    assert r.mean_gain_lo < r.mean_gain < r.mean_gain_hi


def test_ci_markdown():
    assert format_ci_cell(53.3, 100.0, -0.2, 0.904) == "[53, 100] / [-0.20, +0.90]"
    assert format_ci_cell(0.0, 12.5, -0.001, 0.0) == "[0, 13] / [+0.00, +0.00]"
    assert format_ci_cell(float("nan"), 1.0, 0.0, 1.0) == "–"
    merged = {("ta", 2): {f"s{j}": 51.0 for j in range(4)}, ("ta", 3): {"s9": 53.0}}
    t = table_vs_base(frame(50.0, [50.0, 52.0], merged), ["ta"])
    lines = to_markdown(t, ci=True).strip().splitlines()
    assert lines[0] == to_markdown(t).splitlines()[0]  # same layout
    assert lines[2] == "| b1 | TA | 50.0 | [0, 100] / [+0.00, +2.00] | [100, 100] / [+1.00, +1.00] | – |"
    with pytest.raises(ValueError, match="CI"):
        to_markdown(t.drop(columns=CI_COLUMNS), ci=True)


# --------------------------------------------------------------------------- paired comparison


def _paired_scores():
    """b1, n=2: 8 subsets. A = B + d (d = 0.1..0.8, all positive); C misses s6, s7 and
    ties B on s0, is below B on s1 and above on s2..s5. n=3: only A and B, identical.
    b2, n=2: A and B on disjoint subsets (no pairs)."""
    ids = [f"s{j}" for j in range(8)]
    b = {sid: 50.0 + j for j, sid in enumerate(ids)}
    a = {sid: b[sid] + 0.1 * (j + 1) for j, sid in enumerate(ids)}
    c = {sid: b[sid] + dc for sid, dc in zip(ids[:6], [0.0, -1.0, 0.5, 0.5, 1.0, 2.0])}
    three = {"t0": 60.0, "t1": 61.0, "t2": 62.0}
    merged = {("A", 2): a, ("B", 2): b, ("C", 2): c, ("A", 3): three, ("B", 3): three}
    s1 = frame(50.0, [50.0, 51.0], merged)
    s2 = frame(40.0, [41.0], {("A", 2): {"x0": 41.0, "x1": 42.0}, ("B", 2): {"y0": 40.0}}, base="b2")
    return pd.concat([s1, s2], ignore_index=True)


def test_paired_known_differences_and_tests():
    t = table_paired(_paired_scores(), ["A", "B", "C"])
    assert list(t.columns) == PAIRED_COLUMNS
    # order: bases, n, then the pairs in the given method order
    assert [tuple(x) for x in t[["base", "n", "method_a", "method_b"]].itertuples(index=False)] == [
        ("b1", 2, "A", "B"), ("b1", 2, "A", "C"), ("b1", 2, "B", "C"), ("b1", 3, "A", "B"), ("b2", 2, "A", "B"),
    ]
    ab = _pair(t, "b1", 2, "A", "B")
    assert (ab.k, ab.k_a, ab.k_b) == (8, 8, 8)
    assert ab.mean_diff == pytest.approx(0.45)
    assert ab.mean_a - ab.mean_b == pytest.approx(0.45)
    assert (ab.n_a_better, ab.n_b_better, ab.n_ties) == (8, 0, 0)
    assert ab.pct_a_better == 100.0
    assert ab.sign_p == pytest.approx(2 / 256)
    assert ab.wilcoxon_p == pytest.approx(2 / 256)
    assert ab.mean_diff_lo < ab.mean_diff < ab.mean_diff_hi
    assert 0.1 <= ab.mean_diff_lo and ab.mean_diff_hi <= 0.8


def test_paired_uses_the_intersection_of_subsets():
    t = table_paired(_paired_scores(), ["A", "B", "C"])
    bc = _pair(t, "b1", 2, "B", "C")  # C lacks s6, s7: 6 pairs, B - C = 0, +1, -.5, -.5, -1, -2
    assert (bc.k, bc.k_a, bc.k_b) == (6, 8, 6)
    assert bc.mean_diff == pytest.approx(-3.0 / 6)
    assert (bc.n_a_better, bc.n_b_better, bc.n_ties) == (1, 4, 1)
    assert bc.pct_a_better == pytest.approx(100 / 6)
    assert bc.sign_p == pytest.approx(2 * (1 + 5) / 32)  # ties dropped: 1 vs 4 of 5
    ac = _pair(t, "b1", 2, "A", "C")  # A - C on s0..s5 = 0.1, 1.2, -0.2, -0.1, -0.5, -1.4
    assert ac.k == 6 and ac.mean_diff == pytest.approx((0.1 + 1.2 - 0.2 - 0.1 - 0.5 - 1.4) / 6)
    assert (ac.n_a_better, ac.n_b_better) == (2, 4)
    # disjoint subsets: a row with k = 0 and no statistics
    none = _pair(t, "b2", 2, "A", "B")
    assert (none.k, none.k_a, none.k_b) == (0, 2, 1)
    assert all(math.isnan(none[c]) for c in ["mean_diff", "mean_diff_lo", "pct_a_better", "sign_p", "wilcoxon_p"])
    # a method without merges at (base, n) gives no row: C has no n=3
    assert t[(t.n == 3) & ((t.method_a == "C") | (t.method_b == "C"))].empty


def test_paired_identical_methods_and_constant_difference():
    t = table_paired(_paired_scores(), ["A", "B"])
    same = _pair(t, "b1", 3, "A", "B")
    assert (same.k, same.n_ties, same.mean_diff) == (3, 3, 0.0)
    assert (same.mean_diff_lo, same.mean_diff_hi) == (0.0, 0.0)
    assert same.sign_p == 1.0 and same.wilcoxon_p == 1.0 and same.pct_a_better == 0.0
    ids = [f"s{j}" for j in range(5)]
    scores = frame(50.0, [50.0], {("A", 2): {s: 52.5 + j for j, s in enumerate(ids)},
                                  ("B", 2): {s: 52.0 + j for j, s in enumerate(ids)}})
    r = _pair(table_paired(scores), "b1", 2, "A", "B")
    assert (r.mean_diff_lo, r.mean_diff, r.mean_diff_hi) == pytest.approx((0.5, 0.5, 0.5))
    assert r.sign_p == pytest.approx(2 / 32)


def test_paired_bootstrap_resamples_pairs_deterministically():
    scores = _paired_scores()
    t = table_paired(scores, ["A", "B", "C"], n_boot=400, seed=9)
    pd.testing.assert_frame_equal(t, table_paired(scores, ["A", "B", "C"], n_boot=400, seed=9))
    d = [0.0, 1.0, -0.5, -0.5, -1.0, -2.0]  # B - C: the 6 pairs resampled together
    bc = _pair(t, "b1", 2, "B", "C")
    assert_ci_in_band(bc.mean_diff_lo, bc.mean_diff_hi, resample_mean(d), 0.95, 400)
    # resampling B and C separately (unpaired) would give a far wider interval: B spans 50..55
    assert bc.mean_diff_hi - bc.mean_diff_lo < 2.5
    assert table_paired(scores, ["A", "B"], n_boot=0)["mean_diff_lo"].isna().all()


def test_paired_refuses_unpairable_models():
    s = _paired_scores()
    bad = s.copy()
    bad.loc[bad.model_id == "m-A-s0", "subset_id"] = ""
    with pytest.raises(ValueError, match="subset_id.*m-A-s0"):
        table_paired(bad)
    dup = s.copy()
    dup.loc[dup.model_id == "m-A-s1", "subset_id"] = "s0"
    with pytest.raises(ValueError, match="share"):
        table_paired(dup)
    with pytest.raises(ValueError, match=r"\['D'\]"):
        table_paired(s, ["A", "D"])


def test_paired_markdown():
    md = paired_to_markdown(table_paired(_paired_scores(), ["A", "B", "C"])).strip().splitlines()
    assert md[0] == "| Model | n | A | B | k | A − B | CI | A > B | sign p | Wilcoxon p |"
    assert md[2].startswith("| b1 | 2 | A | B | 8 | +0.45 | [")
    assert md[2].endswith(" | 8/8 (100%) | 0.0078 | 0.0078 |")
    assert md[4].startswith("|  |  | B | C | 6 (8/6) | -0.50 | [")
    assert md[5].startswith("|  | 3 | A | B | 3 | +0.00 | [+0.00, +0.00] | 0/3 (0%) | 1 | 1 |")
    assert md[6] == "| b2 | 2 | A | B | 0 (2/1) | – | – | – | – | – |"
    assert "no two merge methods" in paired_to_markdown(table_paired(_paired_scores(), ["A"]))


def test_write_tables_writes_paired_and_ci_columns(tmp_path):
    csv = tmp_path / "scores.csv"
    _paired_scores().to_csv(csv, index=False)
    out = tmp_path / "tables"
    written = write_tables(csv, out, {"table1": ["B", "A"], "table3": ["C"]})
    assert set(written) == {"table1", "table2", "table3", "paired"}
    assert written["paired"] == (out / "paired.csv", out / "paired.md")
    paired = pd.read_csv(out / "paired.csv")
    assert list(paired.columns) == PAIRED_COLUMNS
    # pairs in config order: the groups' methods (B, A, C)
    assert list(paired.loc[(paired.base == "b1") & (paired.n == 2), "method_a"] + "-"
                + paired.loc[(paired.base == "b1") & (paired.n == 2), "method_b"]) == ["B-A", "B-C", "A-C"]
    ba = _pair(paired, "b1", 2, "B", "A")
    assert ba.mean_diff == pytest.approx(-0.45) and ba.sign_p == pytest.approx(2 / 256)
    md = (out / "paired.md").read_text()
    assert md.startswith("**paired.** Paired comparison") and "B=2000" in md and "| B | A | 8 |" in md
    t1 = pd.read_csv(out / "table1.csv")
    assert list(t1.columns) == TABLE_COLUMNS and set(CI_COLUMNS) <= set(t1.columns)
    assert t1["mean_gain_lo"].notna().any()
    assert "**95% bootstrap CIs.**" in (out / "table1.md").read_text()

    write_tables(csv, tmp_path / "noboot", {"table1": ["A"]}, n_boot=0)
    assert "bootstrap CIs" not in (tmp_path / "noboot" / "table1.md").read_text()
    assert pd.read_csv(tmp_path / "noboot" / "table1.csv")[CI_COLUMNS].isna().all().all()
    with pytest.raises(ValueError, match="paired"):
        write_tables(csv, tmp_path / "bad", {"paired": ["A"]})
