"""Tidy scores -> per-model averages -> the paper's constructive-interference tables.

Input is the tidy ``scores.csv`` (one row per model x benchmark; see
``wildmerge.collect.SCORE_COLUMNS``). Everything here is pure pandas/numpy:

* :func:`model_averages` -- mean accuracy over benchmarks per model, in points (x100);
  refuses incomplete score sets instead of silently averaging over fewer benchmarks.
* :func:`table_vs_base` -- paper Tables 1 and 3: per base and method, the base accuracy and,
  per merge size n (n=1: the individual experts, common to all methods), the number of
  subsets k, the % of them whose average beats the base, and the mean gain in points,
  each with a percentile-bootstrap confidence interval over the k subsets.
* :func:`table_vs_best_expert` -- paper Table 2: the same against the best single expert
  (by average accuracy) of each base, for every method.
* :func:`table_paired` -- beyond the paper: paired comparison of every two merge methods on
  the subsets both merged (matched by ``subset_id``): mean difference with bootstrap CI,
  % of subsets where A wins, exact sign-test and Wilcoxon signed-rank p-values.
* :func:`to_markdown` / :func:`paired_to_markdown` -- render the tables; vs-reference cells
  like the paper, ``"80 / +0.39"``, column headers ``"n=4 (15)"`` (n merged models,
  k evaluated subsets); with ``ci=True`` the same layout with the CIs,
  ``"[53, 100] / [-0.20, +0.90]"``.
* :func:`write_tables` -- all of it as ``<name>.csv`` + ``<name>.md`` (plus ``paired``).

Tables are returned in tidy (long) form: one row per (base, method, n), plus ``Average``
rows over bases (the mean of the per-base percentages and gains, as in the paper).

Bootstrap (:func:`bootstrap_indices`): the k subsets (experts at n=1) of a row are resampled
with replacement ``n_boot`` times (default :data:`DEFAULT_N_BOOT` = 2000) and the statistic
recomputed on each resample; the CI is the (1-level)/2 and (1+level)/2 percentiles of the
replicates (default level 0.95). The random stream is derived from (``seed``, base, n, k)
(default seed :data:`DEFAULT_SEED` = 0), so tables are reproducible, independent of which
other methods or tables are computed, identical for the n=1 rows of every method, and
every method at one (base, n) is resampled on the same draws of subsets. Rows with k < 2
(e.g. the single full subset at n = number of experts) get NaN CIs: one subset carries no
information about the spread over subsets. ``Average`` rows: a stratified bootstrap -- the
replicates are drawn independently within each base and the per-replicate statistics are
averaged over bases, exactly like the point estimate; NaN if any of the averaged bases has
k < 2. Note the percentile CI of "% better" collapses to a point when all k subsets are on
the same side of the reference (e.g. [100, 100]); it describes the subset-sampling spread,
not a small-sample interval for a proportion.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

MODEL_KEYS = ["base", "model_id", "role", "method", "n", "subset_id", "members"]
ROLES = ("base", "expert", "merged")
AVERAGE = "Average"

#: How the paper prints the config method names (unknown names are printed as they are).
METHOD_LABELS = {
    "ta": "TA",
    "task_arithmetic": "TA",
    "ties": "TIES",
    "model_stock": "Model Stock",
    "tsv": "TSV-M",
    "tsv_m": "TSV-M",
    "iso_c": "Iso-C",
    "ta_sb": "TA + SB",
    "ties_sb": "TIES + SB",
}

TABLE_COLUMNS = [
    "base",            # base-model id, or "Average" (mean over bases)
    "method",          # config method name
    "reference",       # "base" or "best_expert"
    "reference_model", # model_id of the reference ("base" or "expert-<name>"; "" for Average)
    "reference_acc",   # reference average accuracy, points
    "n",               # 1 = individual experts, else merge size
    "k",               # number of models (subsets) at this n (summed over bases for Average)
    "n_better",        # how many of them beat the reference (summed for Average)
    "pct_better",      # % of them whose average is strictly above the reference's
    "mean_acc",        # their mean average accuracy, points
    "mean_gain",       # mean (model avg - reference avg), points
    "std_gain",        # sample std of the gain over subsets (NaN for k=1 / Average)
    "n_bases",         # 1 for a base row; bases averaged for Average rows
    "pct_better_lo",   # bootstrap CI (default 95%) of pct_better over subsets (NaN for k<2)
    "pct_better_hi",
    "mean_gain_lo",    # bootstrap CI of mean_gain over subsets, points (NaN for k<2)
    "mean_gain_hi",
]

PAIRED_COLUMNS = [
    "base",            # base-model id
    "n",               # merge size
    "method_a",        # config method names; A comes before B in config order
    "method_b",
    "k",               # subsets both methods merged (same subset_id): the paired sample
    "k_a",             # subsets method A has at this (base, n)
    "k_b",             # subsets method B has at this (base, n)
    "mean_a",          # mean average accuracy of A over the k common subsets, points
    "mean_b",
    "mean_diff",       # mean of (A - B) over the k common subsets, points
    "mean_diff_lo",    # paired bootstrap CI of mean_diff (NaN for k<2)
    "mean_diff_hi",
    "n_a_better",      # subsets where A > B
    "n_b_better",      # subsets where B > A
    "n_ties",          # subsets where |A - B| <= 1e-9 points
    "pct_a_better",    # 100 * n_a_better / k (ties count as not better)
    "sign_p",          # exact two-sided sign test, ties dropped (1.0 if all tie)
    "wilcoxon_p",      # exact two-sided Wilcoxon signed-rank test, zeros dropped
]

#: Bootstrap resamples per table row, and the seed of the derived random streams.
DEFAULT_N_BOOT = 2000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95

#: Name of the paired-comparison table written by :func:`write_tables`.
PAIRED = "paired"

# A merged model "beats" the reference only if it is above it by more than float noise.
_EPS = 1e-9


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


# --------------------------------------------------------------------------- input


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


# --------------------------------------------------------------------------- averages


def _short_list(items: Sequence[str], limit: int = 8) -> str:
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
        problems.append(f"duplicate score rows for (base/model:benchmark) {_short_list(pairs)}")

    keys_per_model = df.drop_duplicates(MODEL_KEYS).groupby(["base", "model_id"]).size()
    inconsistent = keys_per_model[keys_per_model > 1]
    if not inconsistent.empty:
        problems.append(
            "models with inconsistent role/method/n/subset/members across rows: "
            + _short_list([f"{b}/{m}" for b, m in inconsistent.index])
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
                lacking.append(f"{model} lacks {_short_list(miss)}")
        if lacking:
            problems.append(
                f"base {base!r}: {len(lacking)} model(s) lack benchmark scores other models have: "
                + "; ".join(lacking[:20])
                + (f"; ... ({len(lacking)} in all)" if len(lacking) > 20 else "")
            )
    bad_range = df[(df["value"] < 0) | (df["value"] > 1)]
    if not bad_range.empty:
        rows = [f"{b}/{m}:{bm}={v}" for b, m, bm, v in bad_range[["base", "model_id", "benchmark", "value"]].itertuples(index=False)]
        problems.append(f"scores outside [0, 1]: {_short_list(rows)}")
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


# --------------------------------------------------------------------------- statistics


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

    Ties are expected to be dropped by the caller. ``p = min(1, 2 P(X <= min(n_pos, n_neg)))``
    for ``X ~ Binomial(n_pos + n_neg, 1/2)``; 1.0 when there is no non-tied pair.
    """
    if n_pos < 0 or n_neg < 0:
        raise ValueError(f"counts must be >= 0, got {n_pos}, {n_neg}")
    m = int(n_pos) + int(n_neg)
    tail = sum(math.comb(m, i) for i in range(min(n_pos, n_neg) + 1))
    return min(1.0, 2 * tail / 2**m)


def wilcoxon_signed_rank_p(diffs: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided Wilcoxon signed-rank p-value for paired differences.

    Differences within 1e-9 of zero are dropped (Wilcoxon's zero handling); tied absolute
    differences (compared at 9 decimals) get their average rank. The null distribution of
    the positive-rank sum W+ is the exact permutation distribution given those ranks (every
    sign equally likely), computed by dynamic programming over doubled ranks;
    ``p = min(1, 2 min(P(W+ <= w), P(W+ >= w)))``. 1.0 when no difference is non-zero;
    NaN for an empty input.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan")
    d = d[np.abs(d) > _EPS]
    if d.size == 0:
        return 1.0
    ranks2 = (2 * pd.Series(np.round(np.abs(d), 9)).rank(method="average").to_numpy()).round().astype(int)
    w2 = int(ranks2[d > 0].sum())
    total = int(ranks2.sum())
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for r in ranks2:  # probabilities of each doubled W+ (halved each step: no overflow)
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: total + 1 - r]
        dist = 0.5 * (dist + shifted)
    lower, upper = float(dist[: w2 + 1].sum()), float(dist[w2:].sum())
    return min(1.0, 2.0 * min(lower, upper))


def _nan_ci(prefix: str) -> dict[str, float]:
    return {f"{prefix}_lo": float("nan"), f"{prefix}_hi": float("nan")}


def _ci_columns(prefix: str, replicates: np.ndarray | None, level: float) -> dict[str, float]:
    if replicates is None:
        return _nan_ci(prefix)
    lo, hi = percentile_ci(replicates, level)
    return {f"{prefix}_lo": lo, f"{prefix}_hi": hi}


# --------------------------------------------------------------------------- tables


def _ordered_unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _resolve_methods(avgs: pd.DataFrame, methods: Sequence[str] | None) -> list[str]:
    present = _ordered_unique(avgs.loc[avgs.role == "merged", "method"])
    if methods is None:
        return present
    methods = list(methods)
    absent = [m for m in methods if m not in present]
    if absent:
        raise ValueError(
            f"method(s) {absent} have no merged models in the scores (methods present: {present})"
        )
    return methods


#: Bootstrap replicates of (pct_better, mean_gain) for one table row; None without a CI.
_Replicates = tuple[np.ndarray, np.ndarray] | None


def _group_row(
    base: str,
    method: str,
    reference: str,
    ref_model: str,
    ref_acc: float,
    n: int,
    accs: np.ndarray,
    boot: Bootstrap,
) -> tuple[dict, _Replicates]:
    gains = accs - ref_acc
    k = len(accs)
    n_better = int((gains > _EPS).sum())
    reps: _Replicates = None
    if k >= 2 and boot.n_boot > 0:
        sample = gains[bootstrap_indices(k, boot.n_boot, boot.seed, base, int(n))]
        reps = (100.0 * (sample > _EPS).mean(axis=1), sample.mean(axis=1))
    row = {
        "base": base,
        "method": method,
        "reference": reference,
        "reference_model": ref_model,
        "reference_acc": float(ref_acc),
        "n": int(n),
        "k": k,
        "n_better": n_better,
        "pct_better": 100.0 * n_better / k,
        "mean_acc": float(accs.mean()),
        "mean_gain": float(gains.mean()),
        "std_gain": float(gains.std(ddof=1)) if k > 1 else float("nan"),
        "n_bases": 1,
        **_ci_columns("pct_better", None if reps is None else reps[0], boot.level),
        **_ci_columns("mean_gain", None if reps is None else reps[1], boot.level),
    }
    return row, reps


def _reference_table(avgs: pd.DataFrame, methods: list[str], reference: str, boot: Bootstrap) -> pd.DataFrame:
    rows: list[dict] = []
    replicates: dict[tuple[str, str, int], _Replicates] = {}

    def add(base: str, method: str, ref_model: str, ref_acc: float, n: int, grp: pd.DataFrame) -> None:
        # subsets in subset_id (experts in model_id) order: the same subset -> the same
        # bootstrap position for every method
        grp = grp.sort_values(["subset_id", "model_id"], kind="stable")
        row, reps = _group_row(base, method, reference, ref_model, ref_acc, n, grp["accuracy"].to_numpy(), boot)
        rows.append(row)
        replicates[(base, method, int(n))] = reps

    for base in _ordered_unique(avgs["base"]):
        part = avgs[avgs.base == base]
        experts = part[part.role == "expert"].sort_values("model_id")
        if reference == "base":
            ref = part[part.role == "base"]
            if len(ref) != 1:
                raise ValueError(f"base {base!r}: expected exactly one base-model row, found {len(ref)}")
            ref_model, ref_acc = str(ref["model_id"].iloc[0]), float(ref["accuracy"].iloc[0])
        else:
            if experts.empty:
                raise ValueError(f"base {base!r}: no expert scores to pick the best expert from")
            # best by average accuracy; ties broken by model_id (experts are sorted by it)
            best = experts.loc[experts["accuracy"].idxmax()]
            ref_model, ref_acc = str(best["model_id"]), float(best["accuracy"])
        merged = part[part.role == "merged"]
        for method in methods:
            mm = merged[merged.method == method]
            if mm.empty:
                continue  # this base has no merges with this method
            if not experts.empty:
                add(base, method, ref_model, ref_acc, 1, experts)
            for n, grp in mm.groupby("n", sort=True):
                add(base, method, ref_model, ref_acc, int(n), grp)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if table.empty:
        return table
    return _with_average(table, methods, replicates, boot)


def _with_average(
    table: pd.DataFrame,
    methods: list[str],
    replicates: Mapping[tuple[str, str, int], _Replicates],
    boot: Bootstrap,
) -> pd.DataFrame:
    """Append "Average" rows: per (method, n) the mean over bases of % better and gain.

    Their CIs average the per-base bootstrap replicates (drawn independently per base) over
    the bases, replicate by replicate; NaN if a base has no replicates (k < 2).
    """
    ref_per_base = table.drop_duplicates("base")["reference_acc"]
    avg_rows = []
    for method in methods:
        sub = table[table.method == method]
        for n, grp in sub.groupby("n", sort=True):
            reps = [replicates.get((str(b), method, int(n))) for b in grp["base"]]
            pct_reps = gain_reps = None
            if reps and all(r is not None for r in reps):
                pct_reps = np.mean([r[0] for r in reps], axis=0)
                gain_reps = np.mean([r[1] for r in reps], axis=0)
            avg_rows.append(
                {
                    "base": AVERAGE,
                    "method": method,
                    "reference": grp["reference"].iloc[0],
                    "reference_model": "",
                    "reference_acc": float(ref_per_base.mean()),
                    "n": int(n),
                    "k": int(grp["k"].sum()),
                    "n_better": int(grp["n_better"].sum()),
                    "pct_better": float(grp["pct_better"].mean()),
                    "mean_acc": float(grp["mean_acc"].mean()),
                    "mean_gain": float(grp["mean_gain"].mean()),
                    "std_gain": float("nan"),
                    "n_bases": int(grp["base"].nunique()),
                    **_ci_columns("pct_better", pct_reps, boot.level),
                    **_ci_columns("mean_gain", gain_reps, boot.level),
                }
            )
    out = pd.concat([table, pd.DataFrame(avg_rows, columns=TABLE_COLUMNS)], ignore_index=True)
    order = {m: i for i, m in enumerate(methods)}
    bases = _ordered_unique(out["base"])
    base_order = {b: i for i, b in enumerate(bases)}
    out = out.assign(_b=out["base"].map(base_order), _m=out["method"].map(order))
    out = out.sort_values(["_b", "_m", "n"], kind="stable").drop(columns=["_b", "_m"])
    out["n"] = out["n"].astype(int)
    return out.reset_index(drop=True)


def table_vs_base(
    scores: pd.DataFrame,
    methods: Sequence[str] | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """Paper Tables 1/3: merged models (and single experts at n=1) against the base model.

    ``methods``: config method names in display order (default: all merged methods present);
    a listed method without any merged model is an error. Returns tidy rows with
    ``TABLE_COLUMNS`` (reference = "base"), bases sorted by name, then the
    ``Average`` rows. ``pct_better_lo/hi`` and ``mean_gain_lo/hi`` are percentile-bootstrap
    CIs at ``level`` from ``n_boot`` resamples of the subsets (see the module docstring;
    ``n_boot=0``: NaN).
    """
    boot = Bootstrap(n_boot, seed, level)
    avgs = model_averages(scores)
    return _reference_table(avgs, _resolve_methods(avgs, methods), "base", boot)


def table_vs_best_expert(
    scores: pd.DataFrame,
    methods: Sequence[str] | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """Paper Table 2: like :func:`table_vs_base`, against each base's best single expert.

    The best expert is the one with the highest average accuracy (ties: first model_id);
    at n=1 it is compared with itself (a tie, so it does not count as beating). The CIs
    treat the best expert as fixed (its selection is not resampled).
    """
    boot = Bootstrap(n_boot, seed, level)
    avgs = model_averages(scores)
    return _reference_table(avgs, _resolve_methods(avgs, methods), "best_expert", boot)


def _paired_row(
    base: str, n: int, a: str, b: str, acc_a: np.ndarray, acc_b: np.ndarray, k_a: int, k_b: int, boot: Bootstrap
) -> dict:
    diffs = acc_a - acc_b
    k = len(diffs)
    n_a, n_b = int((diffs > _EPS).sum()), int((diffs < -_EPS).sum())
    nan = float("nan")
    ci = _nan_ci("mean_diff")
    if k >= 2 and boot.n_boot > 0:
        reps = diffs[bootstrap_indices(k, boot.n_boot, boot.seed, base, int(n))].mean(axis=1)
        ci = _ci_columns("mean_diff", reps, boot.level)
    return {
        "base": base,
        "n": int(n),
        "method_a": a,
        "method_b": b,
        "k": k,
        "k_a": int(k_a),
        "k_b": int(k_b),
        "mean_a": float(acc_a.mean()) if k else nan,
        "mean_b": float(acc_b.mean()) if k else nan,
        "mean_diff": float(diffs.mean()) if k else nan,
        **ci,
        "n_a_better": n_a,
        "n_b_better": n_b,
        "n_ties": k - n_a - n_b,
        "pct_a_better": 100.0 * n_a / k if k else nan,
        "sign_p": sign_test_p(n_a, n_b) if k else nan,
        "wilcoxon_p": wilcoxon_signed_rank_p(diffs) if k else nan,
    }


def table_paired(
    scores: pd.DataFrame,
    methods: Sequence[str] | None = None,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> pd.DataFrame:
    """Paired comparison of merge methods on the same subsets, per base and merge size n.

    For every pair (A, B) of ``methods`` (default: all merged methods present, in order of
    appearance; A before B in that order) and every (base, n) at which both have merged
    models, the subsets both merged are matched by ``subset_id``; k is the size of that
    intersection (``k_a``/``k_b``: how many each method has, so missing merges show). Per
    row: mean accuracies, the mean difference A - B in points with a paired bootstrap CI
    (the k subsets resampled, differences kept together), how many subsets each method
    wins (``|A - B| <= 1e-9`` is a tie), ``pct_a_better`` (ties count as not better), the
    exact two-sided sign-test p (ties dropped) and the exact Wilcoxon signed-rank p.
    With k = 0 the statistics are NaN; with k < 2 the CI is NaN. p-values are per row,
    not corrected for multiple comparisons. Rows: bases sorted by name, then n, then
    pairs; columns ``PAIRED_COLUMNS``.

    Raises ValueError for merged models without a ``subset_id`` or with the same
    ``subset_id`` twice for one (base, method, n).
    """
    boot = Bootstrap(n_boot, seed, level)
    avgs = model_averages(scores)
    methods = _resolve_methods(avgs, methods)
    merged = avgs[(avgs.role == "merged") & avgs.method.isin(methods)]
    no_id = merged[merged.subset_id == ""]
    if not no_id.empty:
        raise ValueError(
            "cannot pair merged models without a subset_id: "
            + _short_list([f"{b}/{m}" for b, m in no_id[["base", "model_id"]].itertuples(index=False)])
        )
    dup = merged[merged.duplicated(["base", "method", "n", "subset_id"], keep=False)]
    if not dup.empty:
        raise ValueError(
            "several merged models share (base, method, n, subset_id): "
            + _short_list([f"{b}/{m}" for b, m in dup[["base", "model_id"]].itertuples(index=False)])
        )
    rows: list[dict] = []
    for base in _ordered_unique(merged["base"]):
        part = merged[merged.base == base]
        for n in sorted(int(x) for x in part["n"].unique()):
            acc = part[part.n == n].pivot(index="subset_id", columns="method", values="accuracy").sort_index()
            for a, b in combinations(methods, 2):
                if a not in acc.columns or b not in acc.columns:
                    continue  # one of them has no merges at this (base, n)
                both = acc[[a, b]].dropna()
                rows.append(
                    _paired_row(
                        base, n, a, b, both[a].to_numpy(), both[b].to_numpy(),
                        int(acc[a].notna().sum()), int(acc[b].notna().sum()), boot,
                    )
                )
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


# --------------------------------------------------------------------------- markdown


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _format_gain(x: float) -> str:
    gain = round(float(x), 2)
    if gain == 0:
        gain = 0.0  # no "-0.00"
    return f"{gain:+.2f}"


def _missing(*values: float | None) -> bool:
    return any(v is None or pd.isna(v) for v in values)


def format_cell(pct_better: float, mean_gain: float) -> str:
    """``"80 / +0.39"``: % of subsets beating the reference / mean gain in points."""
    if _missing(pct_better, mean_gain):
        return "–"
    return f"{_round_half_up(float(pct_better))} / {_format_gain(mean_gain)}"


def format_ci_cell(pct_lo: float, pct_hi: float, gain_lo: float, gain_hi: float) -> str:
    """``"[53, 100] / [-0.20, +0.90]"``: CI of the % better / CI of the mean gain (points)."""
    if _missing(pct_lo, pct_hi, gain_lo, gain_hi):
        return "–"
    pct = f"[{_round_half_up(float(pct_lo))}, {_round_half_up(float(pct_hi))}]"
    return f"{pct} / [{_format_gain(gain_lo)}, {_format_gain(gain_hi)}]"


def _n_header(n: int, ks: Sequence[int]) -> str:
    ks = sorted(set(int(k) for k in ks))
    if not ks:
        return f"n={n}"
    k = str(ks[0]) if len(ks) == 1 else f"{ks[0]}–{ks[-1]}"
    return f"n={n} ({k})"


def to_markdown(table: pd.DataFrame, *, ci: bool = False) -> str:
    """Render a tidy table from :func:`table_vs_base` / :func:`table_vs_best_expert`.

    One row per (base, method) like the paper (the base name only on its first row),
    a "Base" (or "Best FT" plus the best expert's name) accuracy column with one decimal,
    and one column per n with header ``n=<n> (<k>)`` and cells ``"<% better> / <gain>"``.
    ``ci=True``: the same layout with the bootstrap CIs, cells
    ``"[<% lo>, <% hi>] / [<gain lo>, <gain hi>]"`` (:func:`format_ci_cell`); "–" without one.
    """
    if table.empty:
        return "_(no merged models)_\n"
    if ci:
        lacking = [c for c in ["pct_better_lo", "pct_better_hi", "mean_gain_lo", "mean_gain_hi"] if c not in table]
        if lacking:
            raise ValueError(f"table has no CI column(s) {lacking}")
    reference = str(table["reference"].iloc[0])
    best = reference == "best_expert"
    ns = sorted(int(n) for n in table["n"].unique())
    per_base = table[table.base != AVERAGE]
    headers = ["Model", "Method", "Best FT" if best else "Base"]
    if best:
        headers.append("Best expert")
    headers += [_n_header(n, per_base.loc[per_base.n == n, "k"]) for n in ns]

    aligns = ["---", "---", "---:"] + (["---"] if best else []) + ["---:"] * len(ns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    previous_base = None
    for (base, method), grp in table.groupby(["base", "method"], sort=False):
        if ci:
            cells = {
                int(r.n): format_ci_cell(r.pct_better_lo, r.pct_better_hi, r.mean_gain_lo, r.mean_gain_hi)
                for r in grp.itertuples(index=False)
            }
        else:
            cells = {int(r.n): format_cell(r.pct_better, r.mean_gain) for r in grp.itertuples(index=False)}
        row = [
            base if base != previous_base else "",
            method_label(method),
            f"{grp['reference_acc'].iloc[0]:.1f}",
        ]
        if best:
            ref_model = str(grp["reference_model"].iloc[0])
            row.append(ref_model.removeprefix("expert-") if ref_model else "")
        row += [cells.get(n, "–") for n in ns]
        lines.append("| " + " | ".join(row) + " |")
        previous_base = base
    return "\n".join(lines) + "\n"


def _format_p(p: float) -> str:
    if _missing(p):
        return "–"
    return f"{float(p):.2g}"


def paired_to_markdown(paired: pd.DataFrame) -> str:
    """Render :func:`table_paired`: one row per (base, n, A, B), base and n shown when they change.

    Columns: k (``"k (k_a/k_b)"`` when a method lacks some of the other's subsets), the mean
    difference A − B in points, its CI, ``"<wins>/<k> (<%>)"`` for A > B, sign-test and
    Wilcoxon p-values (2 significant digits).
    """
    if paired.empty:
        return "_(no two merge methods share a merge size)_\n"
    headers = ["Model", "n", "A", "B", "k", "A − B", "CI", "A > B", "sign p", "Wilcoxon p"]
    aligns = ["---", "---:", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    previous: tuple[str, int] | None = None
    for r in paired.itertuples(index=False):
        k = str(r.k) if r.k == r.k_a == r.k_b else f"{r.k} ({r.k_a}/{r.k_b})"
        ci = "–" if _missing(r.mean_diff_lo, r.mean_diff_hi) else (
            f"[{_format_gain(r.mean_diff_lo)}, {_format_gain(r.mean_diff_hi)}]"
        )
        wins = "–" if r.k == 0 else f"{r.n_a_better}/{r.k} ({_round_half_up(float(r.pct_a_better))}%)"
        row = [
            str(r.base) if previous is None or previous[0] != r.base else "",
            str(r.n) if previous != (r.base, r.n) else "",
            method_label(r.method_a),
            method_label(r.method_b),
            k,
            "–" if _missing(r.mean_diff) else _format_gain(r.mean_diff),
            ci,
            wins,
            _format_p(r.sign_p),
            _format_p(r.wilcoxon_p),
        ]
        lines.append("| " + " | ".join(row) + " |")
        previous = (r.base, r.n)
    return "\n".join(lines) + "\n"


_CAPTIONS = {
    "base": (
        "Constructive interference vs. the base model. Each cell: % of merge combinations whose "
        "average accuracy exceeds the base model's / mean accuracy difference to the base (points). "
        "Headers n=m (k): m merged models, k evaluated combinations (n=1: the individual experts)."
    ),
    "best_expert": (
        "Merged models vs. the best fine-tuned checkpoint of each base (highest average accuracy). "
        "Each cell: % of merge combinations exceeding it / mean accuracy difference (points). "
        "Headers n=m (k): m merged models, k evaluated combinations."
    ),
}


def _ci_caption(boot: Bootstrap) -> str:
    return (
        f"**{boot.level * 100:g}% bootstrap CIs.** Same layout; each cell: [CI of the % of "
        f"combinations beating the reference] / [CI of the mean difference, points]. Percentile "
        f"intervals from B={boot.n_boot} resamples (with replacement) of the k combinations "
        f"(seed {boot.seed}); Average rows resample within each base and average over bases. "
        "– : fewer than 2 combinations (no CI)."
    )


def _paired_caption(boot: Bootstrap) -> str:
    ci = (
        f"CI: {boot.level * 100:g}% percentile bootstrap of the mean difference, B={boot.n_boot} "
        f"paired resamples of the k combinations (seed {boot.seed}; – for k < 2)"
        if boot.n_boot > 0
        else "CI: not computed (B=0)"
    )
    return (
        "Paired comparison of merge methods on the same merge combinations (matched by subset id "
        "within base and n). k: combinations both methods merged (k (k_A/k_B) when a method lacks "
        "some); A − B: mean difference in average accuracy (points); "
        + ci
        + "; A > B: combinations where A is higher (ties count for neither); sign p: exact "
        "two-sided sign test, ties dropped; Wilcoxon p: exact two-sided signed-rank test, zero "
        "differences dropped, average ranks for ties. p-values are not corrected for multiple "
        "comparisons."
    )


def write_tables(
    scores_csv: str | Path,
    out_dir: str | Path,
    table_groups: Mapping[str, Sequence[str]],
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = DEFAULT_SEED,
    level: float = DEFAULT_LEVEL,
) -> dict[str, tuple[Path, Path]]:
    """Write ``<name>.csv`` (tidy) and ``<name>.md`` for every group, ``table2`` and ``paired``.

    Each group (e.g. ``{"table1": ["ta", "ties", "model_stock"], "table3": [...]}``) becomes a
    vs-base table of its methods. ``table2`` compares with the best expert for every method
    (the methods of all groups in order, then any other merged method in the scores); a
    group named ``table2`` instead lists the methods of that vs-best-expert table.
    ``paired`` (:func:`table_paired`) compares every two merged methods, in that same order
    (all groups' methods, then the others); a group may not be named ``paired``.
    The markdown of the vs-reference tables has the main table and, below it, a
    "95% bootstrap CIs" section in the same layout (left out with ``n_boot=0``); the CSVs
    carry the CI columns. ``n_boot``/``seed``/``level``: see :func:`table_vs_base`.
    Returns ``{name: (csv_path, md_path)}``.
    """
    if PAIRED in table_groups:
        raise ValueError(f"a table group may not be named {PAIRED!r}: write_tables writes that table itself")
    boot = Bootstrap(n_boot, seed, level)
    stats = {"n_boot": boot.n_boot, "seed": boot.seed, "level": boot.level}
    scores = read_scores(scores_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    avgs_methods = _ordered_unique(scores.loc[scores.role == "merged", "method"])
    written: dict[str, tuple[Path, Path]] = {}

    def emit(name: str, table: pd.DataFrame, caption: str, markdown: str) -> None:
        csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
        table.to_csv(csv_path, index=False)
        md_path.write_text(f"**{name}.** {caption}\n\n{markdown}")
        written[name] = (csv_path, md_path)

    def emit_reference(name: str, table: pd.DataFrame, caption: str) -> None:
        markdown = to_markdown(table)
        if boot.n_boot > 0 and not table.empty:
            markdown += f"\n{_ci_caption(boot)}\n\n{to_markdown(table, ci=True)}"
        emit(name, table, caption, markdown)

    for name, methods in table_groups.items():
        if name == "table2":
            continue
        emit_reference(name, table_vs_base(scores, list(methods), **stats), _CAPTIONS["base"])
    grouped = [m for methods in table_groups.values() for m in methods]
    all_methods = _ordered_unique(grouped + avgs_methods)
    best_methods = list(table_groups["table2"]) if "table2" in table_groups else all_methods
    emit_reference("table2", table_vs_best_expert(scores, best_methods, **stats), _CAPTIONS["best_expert"])
    paired = table_paired(scores, all_methods, **stats)
    emit(PAIRED, paired, _paired_caption(boot), paired_to_markdown(paired))
    return written
