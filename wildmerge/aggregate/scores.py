"""Tidy scores: reading ``scores.csv`` with canonical dtypes, and per-model averages.

Input is the tidy ``scores.csv`` (one row per model x benchmark; see
``wildmerge.aggregate.collect.SCORE_COLUMNS``). :func:`model_averages` is the mean accuracy over
benchmarks per model, in points (x100); it refuses incomplete score sets instead of
silently averaging over fewer benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

MODEL_KEYS = ["base", "model_id", "role", "method", "n", "subset_id", "members"]
ROLES = ("base", "expert", "merged")
#: ``base`` of the rows averaged over bases in the tables.
AVERAGE = "Average"


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a tidy scores.csv, keeping "" (base/expert method, subset_id) as "" not NaN."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    return normalize_scores(df)


def normalize_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``scores`` with canonical dtypes: str keys ("" for missing), int n, float value.

    Accepts frames read with or without ``keep_default_na`` (NaN keys become "").
    """
    missing = [c for c in MODEL_KEYS + ["benchmark", "metric", "value"] if c not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks column(s) {missing}; has {list(scores.columns)}")
    df = scores.copy()
    for col in ["base", "model_id", "role", "method", "subset_id", "members", "benchmark", "metric"]:
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str)
    df["n"] = pd.to_numeric(df["n"], errors="raise").astype(int)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    if "stderr" in df.columns:
        df["stderr"] = pd.to_numeric(df["stderr"].replace("", np.nan), errors="coerce").astype(float)
    bad_roles = sorted(set(df["role"]) - set(ROLES))
    if bad_roles:
        raise ValueError(f"unknown role(s) {bad_roles} in scores (expected one of {list(ROLES)})")
    return df



def short_list(items: Sequence[str], limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def model_averages(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over benchmarks per model, in points (value x 100).

    Returns one row per model with the columns ``MODEL_KEYS + ["n_benchmarks", "accuracy"]``.

    Raises ValueError (naming the models and benchmarks) when a model lacks a benchmark, or
    has a NaN score for one, that other models of the same base have; when a model has
    more than one row for a benchmark; or when a benchmark is scored with different metrics
    within a base. Averages over different benchmark sets would not be comparable.
    """
    df = normalize_scores(scores)
    if df.empty:
        raise ValueError("scores table is empty")
    problems: list[str] = []

    dup = df[df.duplicated(["base", "model_id", "benchmark"], keep=False)]
    if not dup.empty:
        pairs = sorted({f"{b}/{m}:{bm}" for b, m, bm in dup[["base", "model_id", "benchmark"]].itertuples(index=False)})
        problems.append(f"duplicate score rows for (base/model:benchmark) {short_list(pairs)}")

    keys_per_model = df.drop_duplicates(MODEL_KEYS).groupby(["base", "model_id"]).size()
    inconsistent = keys_per_model[keys_per_model > 1]
    if not inconsistent.empty:
        problems.append(
            "models with inconsistent role/method/n/subset/members across rows: "
            + short_list([f"{b}/{m}" for b, m in inconsistent.index])
        )

    metrics = df.groupby(["base", "benchmark"])["metric"].nunique()
    for (base, bench), count in metrics[metrics > 1].items():
        used = sorted(df.loc[(df.base == base) & (df.benchmark == bench), "metric"].unique())
        problems.append(f"base {base!r}: benchmark {bench!r} scored with different metrics {used}")

    valid = df[df["value"].notna()]
    for base, part in df.groupby("base", sort=False):
        benches = sorted(part["benchmark"].unique())
        have = valid[valid.base == base].groupby("model_id")["benchmark"].agg(set)
        lacking = []
        for model in sorted(part["model_id"].unique()):
            miss = [b for b in benches if b not in have.get(model, set())]
            if miss:
                lacking.append(f"{model} lacks {short_list(miss)}")
        if lacking:
            problems.append(
                f"base {base!r}: {len(lacking)} model(s) lack benchmark scores other models have: "
                + "; ".join(lacking[:20])
                + (f"; ... ({len(lacking)} in all)" if len(lacking) > 20 else "")
            )
    bad_range = df[(df["value"] < 0) | (df["value"] > 1)]
    if not bad_range.empty:
        rows = [f"{b}/{m}:{bm}={v}" for b, m, bm, v in bad_range[["base", "model_id", "benchmark", "value"]].itertuples(index=False)]
        problems.append(f"scores outside [0, 1]: {short_list(rows)}")
    if problems:
        raise ValueError("cannot average scores: " + " | ".join(problems))

    df = df.sort_values(MODEL_KEYS + ["benchmark"], kind="stable")
    out = (
        df.groupby(MODEL_KEYS, sort=False)["value"]
        .agg(n_benchmarks="size", accuracy="mean")
        .reset_index()
    )
    out["accuracy"] = out["accuracy"] * 100.0
    out["n_benchmarks"] = out["n_benchmarks"].astype(int)
    return out.reset_index(drop=True)

