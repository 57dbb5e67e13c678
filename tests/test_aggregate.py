"""Averages, the paper's tables (vs base, vs best expert), Markdown rendering and figures."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from wildmerge.aggregate.rendering import format_cell, to_markdown
from wildmerge.aggregate.scores import model_averages, read_scores
from wildmerge.aggregate.tables import TABLE_COLUMNS, table_vs_base, table_vs_best_expert, write_tables

BENCH = ["bx", "by"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(base, model_id, role, method, n, subset_id, members, avg, spread=0.0):
    """Two benchmarks whose mean is exactly ``avg`` points (values avg/100 -+ spread)."""
    vals = [avg / 100 - spread, avg / 100 + spread]
    return [
        dict(base=base, model_id=model_id, role=role, method=method, n=n, subset_id=subset_id,
             members=members, benchmark=b, metric="acc", value=v, stderr=0.01)
        for b, v in zip(BENCH, vals)
    ]


def _merged(base, method, n, j, avg):
    sid = f"s{n}{j}"
    return _rows(base, f"m-{base}{method}{sid}", "merged", method, n, sid, f"e{j};e{j + 1}", avg, 0.01)


def synthetic_scores() -> pd.DataFrame:
    """Two bases with known averages (points).

    b1: base 55; experts 56, 54, 55 (tie: not better), 57 (best);
        ta n=2: 56, 54.5, 55.5; ta n=4: 57.5; ties n=2: 55.2, 55.4
    b2: base 40; experts 41, 39; ta n=2: 42, 38; ta n=4: 45; ties n=2: 41
    """
    rows = []
    rows += _rows("b1", "base", "base", "", 0, "", "", 55.0, 0.05)
    for name, avg in [("e1", 56.0), ("e2", 54.0), ("e3", 55.0), ("e4", 57.0)]:
        # e3 has the base's exact per-benchmark values: a tie must not count as beating
        rows += _rows("b1", f"expert-{name}", "expert", "", 1, "", name, avg, 0.05 if name == "e3" else 0.02)
    for j, avg in enumerate([56.0, 54.5, 55.5]):
        rows += _merged("b1", "ta", 2, j, avg)
    rows += _merged("b1", "ta", 4, 0, 57.5)
    for j, avg in enumerate([55.2, 55.4]):
        rows += _merged("b1", "ties", 2, j, avg)

    rows += _rows("b2", "base", "base", "", 0, "", "", 40.0)
    for name, avg in [("e1", 41.0), ("e2", 39.0)]:
        rows += _rows("b2", f"expert-{name}", "expert", "", 1, "", name, avg)
    for j, avg in enumerate([42.0, 38.0]):
        rows += _merged("b2", "ta", 2, j, avg)
    rows += _merged("b2", "ta", 4, 0, 45.0)
    rows += _merged("b2", "ties", 2, 0, 41.0)
    return pd.DataFrame(rows)


def _cell(table, base, method, n, col):
    sel = table[(table.base == base) & (table.method == method) & (table.n == n)]
    assert len(sel) == 1, (base, method, n)
    return sel[col].iloc[0]


# --------------------------------------------------------------------------- averages


def test_model_averages_in_points():
    avgs = model_averages(synthetic_scores())
    assert len(avgs) == (1 + 4 + 6) + (1 + 2 + 4)  # base + experts + merged per base
    got = avgs.set_index(["base", "model_id"])["accuracy"]
    assert got["b1", "base"] == pytest.approx(55.0)
    assert got["b1", "expert-e4"] == pytest.approx(57.0)
    assert got["b2", "m-b2tas40"] == pytest.approx(45.0)
    assert (avgs["n_benchmarks"] == 2).all()
    assert set(avgs.columns) >= {"base", "model_id", "role", "method", "n", "subset_id", "members", "accuracy"}


def test_missing_benchmark_is_refused_naming_model_and_benchmark():
    s = synthetic_scores()
    s = s[~((s.model_id == "m-b1tas21") & (s.benchmark == "by"))]
    with pytest.raises(ValueError, match=r"b1.*m-b1tas21 lacks by"):
        model_averages(s)
    with pytest.raises(ValueError, match="m-b1tas21"):
        table_vs_base(s, ["ta"])


def test_nan_score_counts_as_missing_and_duplicates_are_refused():
    s = synthetic_scores()
    s.loc[(s.model_id == "expert-e2") & (s.benchmark == "bx"), "value"] = np.nan
    with pytest.raises(ValueError, match="expert-e2 lacks bx"):
        model_averages(s)
    s = synthetic_scores()
    with pytest.raises(ValueError, match="duplicate"):
        model_averages(pd.concat([s, s.iloc[:1]]))


def test_different_bases_may_have_different_benchmarks():
    s = synthetic_scores()
    extra = s[s.base == "b2"].drop_duplicates("model_id").assign(benchmark="bz", value=0.5)
    avgs = model_averages(pd.concat([s, extra]))
    assert (avgs.loc[avgs.base == "b2", "n_benchmarks"] == 3).all()
    assert (avgs.loc[avgs.base == "b1", "n_benchmarks"] == 2).all()


# --------------------------------------------------------------------------- vs base


def test_table_vs_base_numbers():
    t = table_vs_base(synthetic_scores(), ["ta", "ties"])
    assert list(t.columns) == TABLE_COLUMNS
    assert set(t.reference) == {"base"}
    # experts (n=1) are the same rows for every method
    for m in ["ta", "ties"]:
        assert _cell(t, "b1", m, 1, "k") == 4
        assert _cell(t, "b1", m, 1, "n_better") == 2  # 56 and 57; 55 ties the base
        assert _cell(t, "b1", m, 1, "pct_better") == pytest.approx(50.0)
        assert _cell(t, "b1", m, 1, "mean_gain") == pytest.approx(0.5)
    assert _cell(t, "b1", "ta", 2, "k") == 3
    assert _cell(t, "b1", "ta", 2, "pct_better") == pytest.approx(200 / 3)
    assert _cell(t, "b1", "ta", 2, "mean_gain") == pytest.approx(1 / 3)
    assert _cell(t, "b1", "ta", 4, "pct_better") == pytest.approx(100.0)
    assert _cell(t, "b1", "ta", 4, "mean_gain") == pytest.approx(2.5)
    assert math.isnan(_cell(t, "b1", "ta", 4, "std_gain"))  # a single subset
    assert _cell(t, "b1", "ties", 2, "pct_better") == pytest.approx(100.0)
    assert _cell(t, "b1", "ties", 2, "mean_gain") == pytest.approx(0.3)
    assert _cell(t, "b2", "ta", 2, "pct_better") == pytest.approx(50.0)
    assert _cell(t, "b2", "ta", 2, "mean_gain") == pytest.approx(0.0)
    assert _cell(t, "b2", "ta", 1, "mean_gain") == pytest.approx(0.0)
    assert _cell(t, "b1", "ta", 1, "reference_acc") == pytest.approx(55.0)

    # Average rows: mean over bases of % and gain (like the paper), base accuracy averaged
    assert _cell(t, "Average", "ta", 1, "pct_better") == pytest.approx(50.0)
    assert _cell(t, "Average", "ta", 1, "mean_gain") == pytest.approx(0.25)
    assert _cell(t, "Average", "ta", 2, "pct_better") == pytest.approx((200 / 3 + 50) / 2)
    assert _cell(t, "Average", "ta", 2, "mean_gain") == pytest.approx((1 / 3 + 0) / 2)
    assert _cell(t, "Average", "ta", 4, "mean_gain") == pytest.approx(3.75)
    assert _cell(t, "Average", "ties", 2, "mean_gain") == pytest.approx((0.3 + 1.0) / 2)
    assert _cell(t, "Average", "ta", 2, "k") == 5 and _cell(t, "Average", "ta", 2, "n_bases") == 2
    assert _cell(t, "Average", "ta", 2, "reference_acc") == pytest.approx(47.5)
    # order: bases as they appear, Average last; methods as requested; n ascending
    assert list(dict.fromkeys(t.base)) == ["b1", "b2", "Average"]
    assert list(t[t.base == "b1"].method.drop_duplicates()) == ["ta", "ties"]
    assert list(t[(t.base == "b1") & (t.method == "ta")].n) == [1, 2, 4]


def test_table_vs_base_default_methods_and_unknown_method():
    t = table_vs_base(synthetic_scores())
    assert list(t.method.drop_duplicates()) == ["ta", "ties"]
    with pytest.raises(ValueError, match=r"\['tsv'\]"):
        table_vs_base(synthetic_scores(), ["ta", "tsv"])


def test_table_vs_best_expert_numbers():
    t = table_vs_best_expert(synthetic_scores(), ["ta", "ties"])
    assert set(t.reference) == {"best_expert"}
    assert _cell(t, "b1", "ta", 1, "reference_model") == "expert-e4"
    assert _cell(t, "b1", "ta", 1, "reference_acc") == pytest.approx(57.0)
    assert _cell(t, "b1", "ta", 1, "pct_better") == 0.0  # the best expert does not beat itself
    assert _cell(t, "b1", "ta", 1, "mean_gain") == pytest.approx(-1.5)
    assert _cell(t, "b1", "ta", 2, "pct_better") == 0.0
    assert _cell(t, "b1", "ta", 2, "mean_gain") == pytest.approx(-5 / 3)
    assert _cell(t, "b1", "ta", 4, "pct_better") == pytest.approx(100.0)
    assert _cell(t, "b1", "ta", 4, "mean_gain") == pytest.approx(0.5)
    assert _cell(t, "b2", "ta", 2, "pct_better") == pytest.approx(50.0)
    assert _cell(t, "b2", "ta", 2, "mean_gain") == pytest.approx(-1.0)
    assert _cell(t, "b2", "ties", 2, "mean_gain") == pytest.approx(0.0)
    assert _cell(t, "Average", "ta", 4, "mean_gain") == pytest.approx((0.5 + 4.0) / 2)
    assert _cell(t, "Average", "ta", 4, "reference_acc") == pytest.approx(49.0)


# --------------------------------------------------------------------------- markdown


def test_format_cell_like_the_paper():
    assert format_cell(80.0, 0.3912) == "80 / +0.39"
    assert format_cell(100.0, 0.64) == "100 / +0.64"
    assert format_cell(17 / 100 * 100, -0.854) == "17 / -0.85"
    assert format_cell(200 / 3, 1 / 3) == "67 / +0.33"
    assert format_cell(12.5, -0.001) == "13 / +0.00"  # half up; no "-0.00"
    assert format_cell(float("nan"), 1.0) == "–"


def test_to_markdown_vs_base():
    md = to_markdown(table_vs_base(synthetic_scores(), ["ta", "ties"]))
    lines = md.strip().splitlines()
    assert lines[0] == "| Model | Method | Base | n=1 (2–4) | n=2 (1–3) | n=4 (1) |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|"
    assert lines[2] == "| b1 | TA | 55.0 | 50 / +0.50 | 67 / +0.33 | 100 / +2.50 |"
    assert lines[3] == "|  | TIES | 55.0 | 50 / +0.50 | 100 / +0.30 | – |"
    assert lines[4] == "| b2 | TA | 40.0 | 50 / +0.00 | 50 / +0.00 | 100 / +5.00 |"
    assert lines[6] == "| Average | TA | 47.5 | 50 / +0.25 | 58 / +0.17 | 100 / +3.75 |"
    assert len(lines) == 2 + 6


def test_to_markdown_vs_best_expert():
    md = to_markdown(table_vs_best_expert(synthetic_scores(), ["ta"]))
    lines = md.strip().splitlines()
    assert lines[0] == "| Model | Method | Best FT | Best expert | n=1 (2–4) | n=2 (2–3) | n=4 (1) |"
    assert lines[2] == "| b1 | TA | 57.0 | e4 | 0 / -1.50 | 0 / -1.67 | 100 / +0.50 |"
    assert lines[4].startswith("| Average | TA | 49.0 |  | ")


def two_subset_scores() -> pd.DataFrame:
    """Every cell has k <= 2 subsets, so every bootstrap CI is known by hand: with two values
    a < b the mean of two draws is a (P = 1/4), (a+b)/2 (1/2) or b (1/4), so the 2.5% and 97.5%
    percentiles of 2000 resamples are a and b (and over two bases, each with P >= 1/16, the
    averages of the ends). Averages in points (both benchmarks score avg/100):

    b1: base 50; experts e1 51 (best), e2 48; ta n=2: s0 53, s1 49; ta n=4: s9 52;
        ties n=2: s0 50.5, s1 51.5
    b2: base 40; experts e1 40 (ties the base), e2 42 (best); ta n=2: s0 41, s1 45; ta n=4: s9 39;
        ties n=2: s0 40 (ties the base), s1 38
    """
    rows = []
    for base, base_acc, experts, ta2, ta4, ties2 in [
        ("b1", 50.0, {"e1": 51.0, "e2": 48.0}, [53.0, 49.0], 52.0, [50.5, 51.5]),
        ("b2", 40.0, {"e1": 40.0, "e2": 42.0}, [41.0, 45.0], 39.0, [40.0, 38.0]),
    ]:
        rows += _rows(base, "base", "base", "", 0, "", "", base_acc)
        for name, avg in experts.items():
            rows += _rows(base, f"expert-{name}", "expert", "", 1, "", name, avg)
        for method, n, accs in [("ta", 2, ta2), ("ta", 4, [ta4]), ("ties", 2, ties2)]:
            for j, avg in enumerate(accs):
                sid = f"s{9 if n == 4 else j}"
                rows += _rows(base, f"m-{base}{method}{sid}", "merged", method, n, sid, "e1;e2", avg)
    return pd.DataFrame(rows)


def _table_lines(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("|")]


def test_write_tables_values_and_markdown_by_hand(tmp_path):
    """Tables 1-3 and the paired table as written to disk (CSV and Markdown), every number
    worked out by hand (two_subset_scores)."""
    csv = tmp_path / "scores.csv"
    two_subset_scores().to_csv(csv, index=False)
    back = read_scores(csv)
    assert (back.loc[back.role == "base", "method"] == "").all()
    written = write_tables(csv, tmp_path / "tables", {"table1": ["ta"], "table3": ["ties"]})
    assert set(written) == {"table1", "table2", "table3", "paired"}
    for name in ["table1", "table2", "table3", "paired"]:
        assert written[name] == (tmp_path / "tables" / f"{name}.csv", tmp_path / "tables" / f"{name}.md")

    md = {name: (tmp_path / "tables" / f"{name}.md").read_text() for name in written}
    assert md["table1"].startswith("**table1.** Constructive interference vs. the base model.")
    assert md["table2"].startswith("**table2.** Merged models vs. the best fine-tuned checkpoint")
    for name in ["table1", "table2", "table3"]:
        assert "**95% bootstrap CIs.**" in md[name] and "B=2000" in md[name] and "seed 0" in md[name]
    head = "| Model | Method | Base | n=1 (2) | n=2 (2) | n=4 (1) |"
    assert _table_lines(md["table1"]) == [
        head, "|---|---|---:|---:|---:|---:|",
        "| b1 | TA | 50.0 | 50 / -0.50 | 50 / +1.00 | 100 / +2.00 |",
        "| b2 | TA | 40.0 | 50 / +1.00 | 100 / +3.00 | 0 / -1.00 |",
        "| Average | TA | 45.0 | 50 / +0.25 | 75 / +2.00 | 50 / +0.50 |",
        head, "|---|---|---:|---:|---:|---:|",
        "| b1 | TA | 50.0 | [0, 100] / [-2.00, +1.00] | [0, 100] / [-1.00, +3.00] | – |",
        "| b2 | TA | 40.0 | [0, 100] / [+0.00, +2.00] | [100, 100] / [+1.00, +5.00] | – |",
        "| Average | TA | 45.0 | [0, 100] / [-1.00, +1.50] | [50, 100] / [+0.00, +4.00] | – |",
    ]
    head = "| Model | Method | Base | n=1 (2) | n=2 (2) |"
    assert _table_lines(md["table3"]) == [
        head, "|---|---|---:|---:|---:|",
        "| b1 | TIES | 50.0 | 50 / -0.50 | 100 / +1.00 |",
        "| b2 | TIES | 40.0 | 50 / +1.00 | 0 / -1.00 |",
        "| Average | TIES | 45.0 | 50 / +0.25 | 50 / +0.00 |",
        head, "|---|---|---:|---:|---:|",
        "| b1 | TIES | 50.0 | [0, 100] / [-2.00, +1.00] | [100, 100] / [+0.50, +1.50] |",
        "| b2 | TIES | 40.0 | [0, 100] / [+0.00, +2.00] | [0, 0] / [-2.00, +0.00] |",
        "| Average | TIES | 45.0 | [0, 100] / [-1.00, +1.50] | [50, 50] / [-0.75, +0.75] |",
    ]
    head = "| Model | Method | Best FT | Best expert | n=1 (2) | n=2 (2) | n=4 (1) |"
    assert _table_lines(md["table2"]) == [
        head, "|---|---|---:|---|---:|---:|---:|",
        "| b1 | TA | 51.0 | e1 | 0 / -1.50 | 50 / +0.00 | 100 / +1.00 |",
        "|  | TIES | 51.0 | e1 | 0 / -1.50 | 50 / +0.00 | – |",
        "| b2 | TA | 42.0 | e2 | 0 / -1.00 | 50 / +1.00 | 0 / -3.00 |",
        "|  | TIES | 42.0 | e2 | 0 / -1.00 | 0 / -3.00 | – |",
        "| Average | TA | 46.5 |  | 0 / -1.25 | 50 / +0.50 | 50 / -1.00 |",
        "|  | TIES | 46.5 |  | 0 / -1.25 | 25 / -1.50 | – |",
        head, "|---|---|---:|---|---:|---:|---:|",
        "| b1 | TA | 51.0 | e1 | [0, 0] / [-3.00, +0.00] | [0, 100] / [-2.00, +2.00] | – |",
        "|  | TIES | 51.0 | e1 | [0, 0] / [-3.00, +0.00] | [0, 100] / [-0.50, +0.50] | – |",
        "| b2 | TA | 42.0 | e2 | [0, 0] / [-2.00, +0.00] | [0, 100] / [-1.00, +3.00] | – |",
        "|  | TIES | 42.0 | e2 | [0, 0] / [-2.00, +0.00] | [0, 0] / [-4.00, -2.00] | – |",
        "| Average | TA | 46.5 |  | [0, 0] / [-2.50, +0.00] | [0, 100] / [-1.50, +2.50] | – |",
        "|  | TIES | 46.5 |  | [0, 0] / [-2.50, +0.00] | [0, 50] / [-2.25, -0.75] | – |",
    ]
    # ta - ties on the same two subsets: b1 +2.5 and -2.5 (sign test 1 of 2: p = 1; the two tied
    # ranks give W+ = 1.5, the middle of the 4 sign patterns: p = 1); b2 +1 and +7 (both
    # positive: p = 2 * 1/4 for both tests)
    assert _table_lines(md["paired"]) == [
        "| Model | n | A | B | k | A − B | CI | A > B | sign p | Wilcoxon p |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
        "| b1 | 2 | TA | TIES | 2 | +0.00 | [-2.50, +2.50] | 1/2 (50%) | 1 | 1 |",
        "| b2 | 2 | TA | TIES | 2 | +4.00 | [+1.00, +7.00] | 2/2 (100%) | 0.5 | 0.5 |",
    ]

    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv", keep_default_na=False, na_values=[""])
    assert list(t1.columns) == TABLE_COLUMNS
    got = t1.set_index(["base", "n"])
    want = {  # (base, n): k, n_better, pct_better, mean_acc, mean_gain, std_gain, CI of pct, CI of gain
        ("b1", 1): (2, 1, 50.0, 49.5, -0.5, 2.1213203435596424, 0.0, 100.0, -2.0, 1.0),
        ("b1", 2): (2, 1, 50.0, 51.0, 1.0, 2.8284271247461903, 0.0, 100.0, -1.0, 3.0),
        ("b1", 4): (1, 1, 100.0, 52.0, 2.0, math.nan, math.nan, math.nan, math.nan, math.nan),
        ("b2", 2): (2, 2, 100.0, 43.0, 3.0, 2.8284271247461903, 100.0, 100.0, 1.0, 5.0),
        ("Average", 1): (4, 2, 50.0, 45.25, 0.25, math.nan, 0.0, 100.0, -1.0, 1.5),
        ("Average", 2): (4, 3, 75.0, 47.0, 2.0, math.nan, 50.0, 100.0, 0.0, 4.0),
        ("Average", 4): (2, 1, 50.0, 45.5, 0.5, math.nan, math.nan, math.nan, math.nan, math.nan),
    }
    cols = ["k", "n_better", "pct_better", "mean_acc", "mean_gain", "std_gain", "pct_better_lo", "pct_better_hi",
            "mean_gain_lo", "mean_gain_hi"]
    for key, values in want.items():
        row = got.loc[key]
        assert [row[c] for c in cols] == pytest.approx(list(values), nan_ok=True), key
    t2 = pd.read_csv(tmp_path / "tables" / "table2.csv", keep_default_na=False, na_values=[""])
    assert list(t2.method.drop_duplicates()) == ["ta", "ties"]  # table2: every method
    assert set(t2.reference) == {"best_expert"}
    assert dict(zip(t2.base, t2.reference_model.fillna(""))) == {"b1": "expert-e1", "b2": "expert-e2", "Average": ""}
    paired = pd.read_csv(tmp_path / "tables" / "paired.csv").set_index("base")
    assert [paired.loc["b2", c] for c in ["k", "mean_diff", "mean_diff_lo", "mean_diff_hi", "n_a_better", "sign_p",
                                          "wilcoxon_p"]] == pytest.approx([2, 4.0, 1.0, 7.0, 2, 0.5, 0.5])


def test_scores_read_with_empty_strings_as_nan_are_accepted():
    s = synthetic_scores().replace({"method": {"": np.nan}, "subset_id": {"": np.nan}, "members": {"": np.nan}})
    t = table_vs_base(s, ["ta"])
    assert _cell(t, "b1", "ta", 2, "mean_gain") == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- figures


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_figures_write_pngs(tmp_path):
    from wildmerge.aggregate.figures import plot_accuracy_vs_n, plot_norm_vs_n, plot_taskwise

    s = synthetic_scores()
    merged = s[s.role == "merged"].drop_duplicates("model_id")
    norms = merged[["base", "method", "n", "subset_id"]].assign(l2_norm=np.arange(len(merged), dtype=float))
    out = [
        plot_accuracy_vs_n(s, tmp_path / "figs" / "acc.png"),
        plot_taskwise(s, tmp_path / "figs" / "taskwise.png"),
        plot_norm_vs_n(norms, tmp_path / "figs" / "norm.png"),
    ]
    assert all(_is_png(p) for p in out)


def test_figures_single_base_single_subset(tmp_path):
    """One base, one subset per n (no std band), read back from CSV as the workflow does."""
    from wildmerge.aggregate.figures import plot_accuracy_vs_n, plot_norm_vs_n

    s = synthetic_scores()
    s = s[(s.base == "b2") & ((s.role != "merged") | (s.subset_id != "s21"))]
    csv = tmp_path / "scores.csv"
    s.to_csv(csv, index=False)
    back = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    norms = pd.DataFrame({"base": ["b2", "b2"], "method": ["ta", "ta"], "n": [2, 4],
                          "subset_id": ["s20", "s40"], "l2_norm": [1.0, 2.0]})
    assert _is_png(plot_accuracy_vs_n(back, tmp_path / "acc.png"))
    assert _is_png(plot_norm_vs_n(norms, tmp_path / "norm.png"))


# --------------------------------------------------------------------------- figure contents


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib Figure written by the code under test, kept for inspection."""
    from matplotlib.figure import Figure

    figures = []
    save = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _lines(ax) -> dict[str, tuple[list[float], list[float]]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_accuracy_vs_n_figure_plots_the_means_by_hand(tmp_path, saved_figures):
    """The curves are the mean average accuracy per n (n=1: the experts), the base dashed and the
    best expert dotted (synthetic_scores' docstring has the numbers)."""
    from wildmerge.aggregate.figures import plot_accuracy_vs_n

    assert _is_png(plot_accuracy_vs_n(synthetic_scores(), tmp_path / "acc.png"))
    (fig,) = saved_figures
    b1 = next(ax for ax in fig.axes if ax.get_title().startswith("b1"))
    lines = _lines(b1)
    assert lines["base model"][1] == pytest.approx([55.0, 55.0])
    assert lines["best expert"][1] == pytest.approx([57.0, 57.0])
    assert lines["TA"][0] == [1, 2, 4]
    assert lines["TA"][1] == pytest.approx([(56 + 54 + 55 + 57) / 4, (56 + 54.5 + 55.5) / 3, 57.5])
    assert lines["TIES"][0] == [1, 2] and lines["TIES"][1] == pytest.approx([55.5, 55.3])
    experts = b1.collections[0].get_offsets()
    assert np.allclose(sorted(np.asarray(experts).tolist()), [(1, 54), (1, 55), (1, 56), (1, 57)])
    b2 = next(ax for ax in fig.axes if ax.get_title().startswith("b2"))
    assert _lines(b2)["TA"][1] == pytest.approx([40.0, 40.0, 45.0])
    assert b1.get_title() == "b1 (2 benchmarks)"


# --------------------------------------------------------------------------- homogeneous table


def _write_value(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"value": value}))


def test_homogeneous_table_by_hand(tmp_path, saved_figures):
    """Appendix E's table from suite score folders, every cell by hand: memory suite (2
    benchmarks, experts a and b), reasoning suite (1 benchmark, expert c); the all-groups merge
    of each method is the same model on both suites."""
    from collections import Counter

    from wildmerge.aggregate.figures import plot_homogeneous
    from wildmerge.aggregate.homogeneous import COLUMNS, homogeneous_table, suite_accuracies

    scores = {  # (suite, model_id, kind, method): per-benchmark values
        ("memory", "base", "base", ""): [0.40, 0.30],
        ("memory", "expert-a", "expert", ""): [0.60, 0.50],
        ("memory", "expert-b", "expert", ""): [0.50, 0.30],
        ("memory", "m-ta-mem", "group", "ta"): [0.70, 0.50],
        ("memory", "m-ta-all", "all", "ta"): [0.55, 0.45],
        ("memory", "m-ties-mem", "group", "ties"): [0.45, 0.35],
        ("memory", "m-ties-all", "all", "ties"): [0.60, 0.50],
        ("reasoning", "base", "base", ""): [0.20],
        ("reasoning", "expert-c", "expert", ""): [0.50],
        ("reasoning", "m-ta-rea", "group", "ta"): [0.45],
        ("reasoning", "m-ta-all", "all", "ta"): [0.30],
        ("reasoning", "m-ties-rea", "group", "ties"): [0.25],
        ("reasoning", "m-ties-all", "all", "ties"): [0.35],
    }
    evals, folders = [], []
    for (suite, model, kind, method), values in scores.items():
        folder = tmp_path / "suites" / suite / model
        for bench, v in zip(["bench_1", "bench_2"], values):
            _write_value(folder / f"{bench}.json", v)
        evals.append({"base": "tb", "suite": suite, "model_id": model, "kind": kind, "method": method})
        folders.append(folder)
    sizes = Counter((e["base"], e["suite"]) for e in evals if e["kind"] == "expert")  # as scripts/homogeneous.py
    table = homogeneous_table(suite_accuracies(evals, folders), sizes)
    table.to_csv(tmp_path / "homogeneous.csv", index=False)
    back = pd.read_csv(tmp_path / "homogeneous.csv")
    assert list(back.columns) == COLUMNS
    want = [  # suite, method, group_merge, all_merge, all - group, base, experts' mean, best expert, n_group, n_all, n_bench
        ("memory", "ta", 60.0, 50.0, -10.0, 35.0, 47.5, 55.0, 2, 3, 2),
        ("memory", "ties", 40.0, 55.0, 15.0, 35.0, 47.5, 55.0, 2, 3, 2),
        ("reasoning", "ta", 45.0, 30.0, -15.0, 20.0, 50.0, 50.0, 1, 3, 1),
        ("reasoning", "ties", 25.0, 35.0, 10.0, 20.0, 50.0, 50.0, 1, 3, 1),
    ]
    assert len(back) == len(want) and set(back.base) == {"tb"}
    for row, expected in zip(back.itertuples(index=False), want):
        assert (row.suite, row.method) == expected[:2]
        got = [row.group_merge, row.all_merge, row.all_minus_group, row.base_model, row.experts_mean, row.best_expert]
        assert got == pytest.approx(expected[2:8])
        assert (row.n_group, row.n_all, row.n_benchmarks) == expected[8:]

    assert _is_png(plot_homogeneous(table, tmp_path / "homogeneous.png"))
    (fig,) = saved_figures
    memory = next(ax for ax in fig.axes if ax.get_title() == "tb: memory suite (2 benchmarks)")
    heights = [round(p.get_height(), 9) for p in memory.patches]
    assert heights == [60.0, 40.0, 50.0, 55.0]  # group merges (ta, ties), then the all-groups merges
    assert _lines(memory)["base model"][1] == pytest.approx([35.0, 35.0])
    assert _lines(memory)["memory experts (mean)"][1] == pytest.approx([47.5, 47.5])


# --------------------------------------------------------------------------- ablation CSV


def _score_file(root, base, model, bench, value, role="merged", n=2):
    _write_score = {"base": base, "model_id": model, "role": role, "n": n if role == "merged" else 0,
                    "benchmark": bench, "metric": "acc", "value": value}
    path = root / "scores" / base / model / f"{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_write_score))
    return str(path)


def test_ablation_table_by_hand(tmp_path, saved_figures):
    """One sweep (TA lambda x normalize on two subsets): a row per point and subset with the
    average accuracy, the base's, the gain and the merged task vector's L2 norm, by hand."""
    from wildmerge.aggregate.ablations import ablation_table
    from wildmerge.aggregate.figures import plot_ablation, plot_ablation_norm

    grid = [(0.5, True, "s0", [0.60, 0.50], 1.5), (1.0, True, "s0", [0.70, 0.60], 2.5),
            (0.5, True, "s1", [0.40, 0.50], 1.0), (1.0, True, "s1", [0.80, 0.70], 3.0),
            (1.0, False, "s0", [0.30, 0.20], 6.0)]
    files = [_score_file(tmp_path, "tb", "base", b, v, role="base") for b, v in [("bx", 0.50), ("by", 0.40)]]
    points, manifests = [], []
    for lam, norm, sid, values, l2 in grid:
        mid = f"m-{lam}-{norm}-{sid}"
        files += [_score_file(tmp_path, "tb", mid, b, v) for b, v in zip(["bx", "by"], values)]
        points.append({"base": "tb", "merge_id": mid, "n": 2, "subset_id": sid,
                       "point": {"lambda": lam, "normalize": norm}})
        manifest = tmp_path / "manifests" / f"{mid}.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"base": "tb", "merge_id": mid, "task_vector_l2": l2}))
        manifests.append(str(manifest))
    table = ablation_table("ta_lambda", points, files, manifests)
    table.to_csv(tmp_path / "ta_lambda.csv", index=False)
    back = pd.read_csv(tmp_path / "ta_lambda.csv")
    assert list(back.columns) == ["ablation", "base", "n", "subset_id", "merge_id", "lambda", "normalize",
                                  "accuracy", "base_accuracy", "gain", "l2_norm"]
    assert list(back.merge_id) == [p["merge_id"] for p in points]  # one row per point, in order
    assert (back.ablation == "ta_lambda").all() and list(back.base_accuracy) == pytest.approx([45.0] * 5)
    assert list(back.accuracy) == pytest.approx([55.0, 65.0, 45.0, 75.0, 25.0])
    assert list(back.gain) == pytest.approx([10.0, 20.0, 0.0, 30.0, -20.0])
    assert list(back.l2_norm) == pytest.approx([1.5, 2.5, 1.0, 3.0, 6.0])
    assert list(back["lambda"]) == [0.5, 1.0, 0.5, 1.0, 1.0] and list(back.normalize) == [True, True, True, True, False]

    plot_ablation(table, "lambda", "normalize", tmp_path / "acc.png", "ta_lambda")
    plot_ablation_norm(table, "normalize", tmp_path / "l2.png", "ta_lambda", marker_by="lambda")
    acc_fig, norm_fig = saved_figures
    lines = _lines(acc_fig.axes[0])
    assert lines["normalize=True"] == ([0.5, 1.0], pytest.approx([50.0, 70.0]))  # mean over the two subsets
    assert lines["normalize=False"] == ([1.0], pytest.approx([25.0]))
    assert lines["base model"][1] == pytest.approx([45.0, 45.0])
    dots = sorted(xy for c in norm_fig.axes[0].collections for xy in np.asarray(c.get_offsets()).tolist())
    assert np.allclose(dots, sorted((l2, 100 * sum(v) / 2) for _, _, _, v, l2 in grid))
