"""Paired per-item statistics (issue 13) on synthetic per-item files: point estimates equal
the score-file tables', paired intervals are narrower than unpaired ones, significance; and
per-item sets whose right answers are worked out by hand (a null merge, a known gain and loss)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wildmerge.aggregate.tables import table_vs_base
from wildmerge.evaluation.items import write_items
from wildmerge.aggregate.item_tables import paired_tables, write_paired_tables

from exact_bootstrap import assert_ci_in_band, binomial, combine, mixture, point, scale

BENCHES = {"b1": ["b1"], "grp": ["grp_x", "grp_y"]}  # a task, and a group of two tasks (unweighted)
N_ITEMS = 400


def _study(tmp_path):
    rng = np.random.default_rng(0)
    latent = {t: rng.random(N_ITEMS) for ts in BENCHES.values() for t in ts}  # item difficulty
    models = [("base", "base", "", 0, ""), ("expert-a", "expert", "", 1, ""), ("expert-b", "expert", "", 1, "")]
    models += [(f"m-{i:012x}", "merged", "ta", 2, f"s{i}") for i in range(3)]
    skill = {"base": 0.5, "expert-a": 0.52, "expert-b": 0.48, "m-000000000000": 0.62, "m-000000000001": 0.5,
             "m-000000000002": 0.51}
    rows, files = [], {}
    for mid, role, method, n, sub in models:
        for bench, tasks in BENCHES.items():
            frames = []
            for t in tasks:
                # shared difficulty + a little model-specific noise: outcomes correlate across models
                c = (latent[t] + 0.1 * rng.standard_normal(N_ITEMS) < skill[mid]).astype(float)
                frames.append(pd.DataFrame({"task": t, "doc_id": range(N_ITEMS), "item_id": [f"{t}/{i}" for i in range(N_ITEMS)],
                                            "correct": c, "logliks": [[-1.0, -2.0]] * N_ITEMS, "doc_hash": "h"}))
            df = pd.concat(frames, ignore_index=True)
            value = float(np.mean([f.correct.mean() for f in frames]))
            path = tmp_path / mid / f"{bench}.parquet"
            write_items(path, df, {"value": value})
            files[("tiny", mid, bench)] = path
            rows.append({"base": "tiny", "model_id": mid, "role": role, "method": method, "n": n, "subset_id": sub,
                         "members": "", "benchmark": bench, "metric": "acc", "value": value})
    return pd.DataFrame(rows), files


def test_paired_cells_match_tables_and_are_narrower(tmp_path):
    scores, files = _study(tmp_path)
    cells, merges = paired_tables(scores, files, ["ta"], "base", n_boot=400)
    main = table_vs_base(scores, ["ta"], n_boot=0)
    for n in (1, 2):
        got = cells[(cells.base == "tiny") & (cells.n == n)].iloc[0]
        want = main[(main.base == "tiny") & (main.n == n)].iloc[0]
        assert got.mean_gain == pytest.approx(want.mean_gain, abs=1e-9)
        assert got.pct_better == pytest.approx(want.pct_better)
        assert got.mean_gain_lo <= got.mean_gain <= got.mean_gain_hi
        assert got.width_ratio > 1.2  # correlated outcomes: pairing removes the shared item variance
    strong = merges[merges.model_id == "m-000000000000"].iloc[0]
    assert strong.significant and strong.gain_lo > 0
    assert cells[cells.n == 2].iloc[0].n_sig_better >= 1
    assert set(cells.base) == {"tiny", "Average"}


def test_budget_restriction_and_writer(tmp_path):
    scores, files = _study(tmp_path)
    keep = {"b1": [f"b1/{i}" for i in range(0, N_ITEMS, 4)], "grp": [f"grp_x/{i}" for i in range(0, N_ITEMS, 4)]
            + [f"grp_y/{i}" for i in range(0, N_ITEMS, 4)]}
    cells, _ = paired_tables(scores, files, ["ta"], "base", n_boot=200, item_ids=keep)
    assert set(cells.n_items) == {3 * N_ITEMS // 4}
    out = write_paired_tables(scores, files, ["ta"], ["ta"], tmp_path / "tables", n_boot=100)
    assert all(p.exists() for p in out)
    best = pd.read_csv(tmp_path / "tables" / "items_vs_best_expert.csv")
    assert set(best.reference_model.dropna()) == {"expert-a"}


# --------------------------------------------------------------------------- values by hand

N = 200  # items of the one-task benchmark below


def _outcome_study(tmp_path, outcomes: dict, tasks: dict[str, int] | None = None, base: str = "tiny"):
    """Per-item files and score rows of one base from ``outcomes[(model_id, role, method, n,
    subset_id)] = set of correct item indices`` over ``tasks`` (task -> items; one benchmark)."""
    tasks = tasks or {"b1": N}
    rows, files = [], {}
    for (mid, role, method, n, sub), correct in outcomes.items():
        frames, i0 = [], 0
        for t, size in tasks.items():
            c = [float(i0 + i in correct) for i in range(size)]
            frames.append(pd.DataFrame({"task": t, "doc_id": range(size), "item_id": [f"{t}/{i}" for i in range(size)],
                                        "correct": c, "logliks": [[-1.0, -2.0]] * size, "doc_hash": "h"}))
            i0 += size
        df = pd.concat(frames, ignore_index=True)
        value = float(np.mean([f.correct.mean() for f in frames]))
        path = tmp_path / base / mid / "b1.parquet"
        write_items(path, df, {"value": value})
        files[(base, mid, "b1")] = path
        rows.append({"base": base, "model_id": mid, "role": role, "method": method, "n": n, "subset_id": sub,
                     "members": "", "benchmark": "b1", "metric": "acc", "value": value})
    return pd.DataFrame(rows), files


BASE = set(range(100))  # the base gets items 0..99 right (50%)
EXPERT_A = BASE | set(range(100, 106))  # +6 items: 53%, the best expert
HAND = {
    ("base", "base", "", 0, ""): BASE,
    ("expert-a", "expert", "", 1, ""): EXPERT_A,
    ("expert-b", "expert", "", 1, ""): BASE - {0, 1},  # 49%
    ("m-ta-null", "merged", "ta", 2, "s0"): BASE,  # the null merge: the base's outcomes
    ("m-ta-gain", "merged", "ta", 2, "s1"): BASE | set(range(100, 112)),  # +12 items: +6 points
    ("m-ta-loss", "merged", "ta", 4, "s9"): BASE - set(range(14)),  # -14 items: -7 points
    ("m-ties-copy", "merged", "ties", 2, "s0"): EXPERT_A,  # the null merge against the best expert
    ("m-ties-gain", "merged", "ties", 2, "s1"): BASE | set(range(100, 112)),
}


def _gain_dist(n_changed: int, sign: float = 1.0):
    """Exact item-bootstrap distribution of a paired gain (points) when the merge differs from its
    reference on ``n_changed`` of the N items, all in one direction: Binomial(N, n_changed/N) draws."""
    return scale(binomial(N, n_changed / N), sign * 100.0 / N)


def test_paired_item_tables_by_hand(tmp_path):
    """items_vs_base / items_vs_best_expert cells and items_merges rows against numbers worked out
    by hand (HAND) and exact bootstrap distributions (binomial counts of the changed items):
    the null merge is not significant, the known gain and loss are; the paired CI of the gain
    excludes 0, its unpaired CI (the reference's items drawn independently) does not."""
    scores, files = _outcome_study(tmp_path, HAND)
    n_boot = 4000
    cells, merges = paired_tables(scores, files, ["ta", "ties"], "base", n_boot=n_boot)
    m = merges.set_index("model_id")
    assert list(m.index) == ["m-ta-null", "m-ta-gain", "m-ta-loss", "m-ties-copy", "m-ties-gain"]
    assert list(m.gain) == pytest.approx([0.0, 6.0, -7.0, 3.0, 6.0])
    assert list(m.significant) == [False, True, True, True, True]
    assert (m.reference_model == "base").all()
    # null merge: every paired replicate is exactly 0
    assert (m.loc["m-ta-null", "gain_lo"], m.loc["m-ta-null", "gain_hi"]) == (0.0, 0.0)
    assert m.loc["m-ta-null", "unpaired_lo"] < -5 and m.loc["m-ta-null", "unpaired_hi"] > 5
    # the known gain: 12 items changed, paired replicate = 100 X / N with X ~ Binomial(200, 0.06)
    g = m.loc["m-ta-gain"]
    assert_ci_in_band(g.gain_lo, g.gain_hi, _gain_dist(12), 0.95, n_boot)
    assert 0 < g.gain_lo
    unpaired = combine(scale(binomial(N, 112 / N), 100 / N), scale(binomial(N, 100 / N), 100 / N), lambda x, y: x - y)
    assert_ci_in_band(g.unpaired_lo, g.unpaired_hi, unpaired, 0.95, n_boot)
    assert g.unpaired_lo < 0 < g.unpaired_hi  # unpaired, the same gain is not significant
    loss = m.loc["m-ta-loss"]
    assert_ci_in_band(loss.gain_lo, loss.gain_hi, _gain_dist(14, -1.0), 0.95, n_boot)
    assert loss.gain_hi < 0

    c = cells[cells.base == "tiny"].set_index(["method", "n"])
    want = {  # k, % better, mean gain, significantly better, significantly worse
        ("ta", 1): (2, 50.0, 1.0, 1, 0),  # expert-a +3 (6 items: Binomial(200, .03) > 0 in 99.8%), expert-b -1 (not)
        ("ta", 2): (2, 50.0, 3.0, 1, 0),
        ("ta", 4): (1, 0.0, -7.0, 0, 1),
        ("ties", 1): (2, 50.0, 1.0, 1, 0),
        ("ties", 2): (2, 100.0, 4.5, 2, 0),
    }
    for key, (k, pct, gain, better, worse) in want.items():
        row = c.loc[key]
        assert (row.k, row.n_sig_better, row.n_sig_worse, row.n_items) == (k, better, worse, N), key
        assert (row.pct_better, row.mean_gain) == pytest.approx((pct, gain)), key
    # ta n=2: the subsets {null, gain} resampled on top of the items: 0 (P 1/4), G/2 (1/2), G (1/4)
    cell = c.loc[("ta", 2)]
    mix = mixture([(0.25, point(0.0)), (0.5, scale(_gain_dist(12), 0.5)), (0.25, _gain_dist(12))])
    assert cell.mean_gain_lo == pytest.approx(0.0, abs=1e-9)
    assert_ci_in_band(cell.mean_gain_lo, cell.mean_gain_hi, mix, 0.95, n_boot)
    assert (cell.pct_better_lo, cell.pct_better_hi) == (0.0, 100.0)
    assert cell.width_ratio > 1.5  # the unpaired interval is wider
    # one subset at n=4: its cell is the merge's own interval
    cell = c.loc[("ta", 4)]
    assert_ci_in_band(cell.mean_gain_lo, cell.mean_gain_hi, _gain_dist(14, -1.0), 0.95, n_boot)
    average = cells[cells.base == "Average"].set_index(["method", "n"])
    assert average.loc[("ta", 2), "mean_gain"] == pytest.approx(3.0) and average.loc[("ta", 2), "n_sig_better"] == 1

    best_cells, best = paired_tables(scores, files, ["ta", "ties"], "best_expert", n_boot=n_boot)
    b = best.set_index("model_id")
    assert (b.reference_model == "expert-a").all()
    assert list(b.gain) == pytest.approx([-3.0, 3.0, -10.0, 0.0, 3.0])
    assert list(b.significant) == [True, True, True, False, True]
    assert (b.loc["m-ties-copy", "gain_lo"], b.loc["m-ties-copy", "gain_hi"]) == (0.0, 0.0)  # the null merge here
    assert_ci_in_band(b.loc["m-ta-gain", "gain_lo"], b.loc["m-ta-gain", "gain_hi"], _gain_dist(6), 0.95, n_boot)
    bc = best_cells[best_cells.base == "tiny"].set_index(["method", "n"])
    want = {
        ("ta", 1): (0.0, -2.0, 0, 1),  # expert-a is the reference (0), expert-b -4 (8 items)
        ("ta", 2): (50.0, 0.0, 1, 1),  # the base's outcomes are 3 points below expert-a's, significantly
        ("ta", 4): (0.0, -10.0, 0, 1),
        ("ties", 2): (50.0, 1.5, 1, 0),
    }
    for key, (pct, gain, better, worse) in want.items():
        row = bc.loc[key]
        assert (row.pct_better, row.mean_gain) == pytest.approx((pct, gain)), key
        assert (row.n_sig_better, row.n_sig_worse) == (better, worse), key


def test_items_merges_csv_and_markdown_by_hand(tmp_path):
    """What write_paired_tables writes, read back: items_merges.csv (one row per merge and
    reference) and the exact Markdown of both cell tables. Outcomes are constant within each
    task (the bootstrap strata), so every replicate, CI and width ratio is known exactly."""
    tasks = {"t1": 4, "t2": 4}
    outcomes = {
        ("base", "base", "", 0, ""): set(range(4, 8)),  # t1 wrong, t2 right: 50
        ("expert-x", "expert", "", 1, ""): set(range(8)),  # 100 (best)
        ("expert-y", "expert", "", 1, ""): set(),  # 0
        ("m-null", "merged", "ta", 2, "s0"): set(range(4, 8)),  # the base's outcomes
        ("m-up", "merged", "ta", 2, "s1"): set(range(8)),  # expert-x's outcomes
    }
    scores, files = _outcome_study(tmp_path, outcomes, tasks, base="det")
    out = write_paired_tables(scores, files, ["ta"], ["ta"], tmp_path / "tables")
    assert [p.name for p in out] == ["items_vs_base.csv", "items_vs_base.md", "items_vs_best_expert.csv",
                                     "items_vs_best_expert.md", "items_merges.csv"]
    merges = pd.read_csv(tmp_path / "tables" / "items_merges.csv")
    got = [(r.model_id, r.reference, r.reference_model, r.gain, r.gain_lo, r.gain_hi, r.unpaired_lo, r.unpaired_hi,
            r.significant) for r in merges.itertuples()]
    assert got == [
        ("m-null", "base", "base", 0.0, 0.0, 0.0, 0.0, 0.0, False),
        ("m-up", "base", "base", 50.0, 50.0, 50.0, 50.0, 50.0, True),
        ("m-null", "best_expert", "expert-x", -50.0, -50.0, -50.0, -50.0, -50.0, True),
        ("m-up", "best_expert", "expert-x", 0.0, 0.0, 0.0, 0.0, 0.0, False),
    ]
    head = ["| base | method | n | k | % better [CI] | mean gain [paired CI] | unpaired CI | width ratio "
            "| sig. better / worse |", "|---|---|---|---|---|---|---|---|---|"]
    md = (tmp_path / "tables" / "items_vs_base.md").read_text()
    assert md.startswith("**items_vs_base.** Paired per-item comparison with the base model:")
    # n=1: experts +50 and -50, each significant; n=2: the null merge 0, the other +50
    assert [line for line in md.splitlines() if line.startswith("|")] == head + [
        "| det | ta | 1 | 2 | 50 [0, 100] | +0.00 [-50.00, +50.00] | [-50.00, +50.00] | 1.00 | 1 / 1 |",
        "| det | ta | 2 | 2 | 50 [0, 100] | +25.00 [+0.00, +50.00] | [+0.00, +50.00] | 1.00 | 1 / 0 |",
        "| Average | ta | 1 | 2 | 50 [0, 100] | +0.00 [-50.00, +50.00] | [-50.00, +50.00] | 1.00 | 1 / 1 |",
        "| Average | ta | 2 | 2 | 50 [0, 100] | +25.00 [+0.00, +50.00] | [+0.00, +50.00] | 1.00 | 1 / 0 |",
    ]
    md = (tmp_path / "tables" / "items_vs_best_expert.md").read_text()
    assert md.startswith("**items_vs_best_expert.** Paired per-item comparison with the best expert:")
    assert [line for line in md.splitlines() if line.startswith("|")] == head + [
        "| det | ta | 1 | 2 | 0 [0, 0] | -50.00 [-100.00, +0.00] | [-100.00, +0.00] | 1.00 | 0 / 1 |",
        "| det | ta | 2 | 2 | 0 [0, 0] | -25.00 [-50.00, +0.00] | [-50.00, +0.00] | 1.00 | 0 / 1 |",
        "| Average | ta | 1 | 2 | 0 [0, 0] | -50.00 [-100.00, +0.00] | [-100.00, +0.00] | 1.00 | 0 / 1 |",
        "| Average | ta | 2 | 2 | 0 [0, 0] | -25.00 [-50.00, +0.00] | [-50.00, +0.00] | 1.00 | 0 / 1 |",
    ]
    cells = pd.read_csv(tmp_path / "tables" / "items_vs_base.csv")
    assert list(cells.n_items) == [8] * 4 and list(cells.reference_model.fillna("")) == ["base", "base", "", ""]
