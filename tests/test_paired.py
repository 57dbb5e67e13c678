"""Paired per-item statistics (issue 13) on synthetic per-item files: point estimates equal
the score-file tables', paired intervals are narrower than unpaired ones, significance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wildmerge.aggregate.tables import table_vs_base
from wildmerge.evaluation.items import write_items
from wildmerge.aggregate.item_tables import paired_tables, write_paired_tables

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
