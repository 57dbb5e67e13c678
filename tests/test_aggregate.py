"""Averages, the paper's tables (vs base, vs best expert), Markdown rendering and figures."""

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


def test_write_tables_csv_and_markdown(tmp_path):
    csv = tmp_path / "scores.csv"
    synthetic_scores().to_csv(csv, index=False)
    back = read_scores(csv)
    assert (back.loc[back.role == "base", "method"] == "").all()
    written = write_tables(csv, tmp_path / "tables", {"table1": ["ta"], "table3": ["ties"]})
    assert set(written) == {"table1", "table2", "table3", "paired"}
    for name in ["table1", "table2", "table3", "paired"]:
        assert written[name] == (tmp_path / "tables" / f"{name}.csv", tmp_path / "tables" / f"{name}.md")
        assert (tmp_path / "tables" / f"{name}.csv").stat().st_size > 0
        assert "| Model |" in (tmp_path / "tables" / f"{name}.md").read_text()
    for name in ["table1", "table2", "table3"]:
        md = (tmp_path / "tables" / f"{name}.md").read_text()
        assert md.count("| Model | Method |") == 2  # main table + the CI section below it
        assert "**95% bootstrap CIs.**" in md and "B=2000" in md and "seed 0" in md
    t1 = pd.read_csv(tmp_path / "tables" / "table1.csv", keep_default_na=False, na_values=[""])
    assert list(t1.columns) == TABLE_COLUMNS
    assert {"pct_better_lo", "pct_better_hi", "mean_gain_lo", "mean_gain_hi"} <= set(t1.columns)
    expected = table_vs_base(synthetic_scores(), ["ta"])
    assert np.allclose(t1["mean_gain"], expected["mean_gain"])
    for col in ["pct_better_lo", "pct_better_hi", "mean_gain_lo", "mean_gain_hi"]:
        assert np.allclose(t1[col], expected[col], equal_nan=True)  # same default B and seed
    t2 = pd.read_csv(tmp_path / "tables" / "table2.csv")
    assert list(t2.method.drop_duplicates()) == ["ta", "ties"]  # table2: every method
    assert set(t2.reference) == {"best_expert"}


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
