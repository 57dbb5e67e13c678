"""Tidy scores -> per-model averages -> the paper's constructive-interference tables.

Input is the tidy ``scores.csv`` (one row per model x benchmark; see
``wildmerge.collect.SCORE_COLUMNS``). Everything here is pure pandas:

* :func:`model_averages` -- mean accuracy over benchmarks per model, in points (x100);
  refuses incomplete score sets instead of silently averaging over fewer benchmarks.
* :func:`table_vs_base` -- paper Tables 1 and 3: per base and method, the base accuracy and,
  per merge size n (n=1: the individual experts, common to all methods), the number of
  subsets k, the % of them whose average beats the base, and the mean gain in points.
* :func:`table_vs_best_expert` -- paper Table 2: the same against the best single expert
  (by average accuracy) of each base, for every method.
* :func:`to_markdown` -- renders a table like the paper: cells ``"80 / +0.39"``, column
  headers ``"n=4 (15)"`` (n merged models, k evaluated subsets).

Tables are returned in tidy (long) form: one row per (base, method, n), plus ``Average``
rows over bases (the mean of the per-base percentages and gains, as in the paper).
"""

from __future__ import annotations

import math
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
]

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


def _group_row(base, method, reference, ref_model, ref_acc, n, accs: np.ndarray) -> dict:
    gains = accs - ref_acc
    k = int(len(accs))
    n_better = int((gains > _EPS).sum())
    return {
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
    }


def _reference_table(avgs: pd.DataFrame, methods: list[str], reference: str) -> pd.DataFrame:
    rows: list[dict] = []
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
                rows.append(_group_row(base, method, reference, ref_model, ref_acc, 1, experts["accuracy"].to_numpy()))
            for n, grp in mm.groupby("n", sort=True):
                rows.append(_group_row(base, method, reference, ref_model, ref_acc, n, grp["accuracy"].to_numpy()))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if table.empty:
        return table
    return _with_average(table, methods)


def _with_average(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Append "Average" rows: per (method, n) the mean over bases of % better and gain."""
    ref_per_base = table.drop_duplicates("base")["reference_acc"]
    avg_rows = []
    for method in methods:
        sub = table[table.method == method]
        for n, grp in sub.groupby("n", sort=True):
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


def table_vs_base(scores: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper Tables 1/3: merged models (and single experts at n=1) against the base model.

    ``methods``: config method names in display order (default: all merged methods present);
    a listed method without any merged model is an error. Returns tidy rows with
    ``TABLE_COLUMNS`` (reference = "base"), bases sorted by name, then the
    ``Average`` rows.
    """
    avgs = model_averages(scores)
    return _reference_table(avgs, _resolve_methods(avgs, methods), "base")


def table_vs_best_expert(scores: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper Table 2: like :func:`table_vs_base`, against each base's best single expert.

    The best expert is the one with the highest average accuracy (ties: first model_id);
    at n=1 it is compared with itself (a tie, so it does not count as beating).
    """
    avgs = model_averages(scores)
    return _reference_table(avgs, _resolve_methods(avgs, methods), "best_expert")


# --------------------------------------------------------------------------- markdown


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def format_cell(pct_better: float, mean_gain: float) -> str:
    """``"80 / +0.39"``: % of subsets beating the reference / mean gain in points."""
    if pct_better is None or mean_gain is None or pd.isna(pct_better) or pd.isna(mean_gain):
        return "–"
    gain = round(float(mean_gain), 2)
    if gain == 0:
        gain = 0.0  # no "-0.00"
    return f"{_round_half_up(float(pct_better))} / {gain:+.2f}"


def _n_header(n: int, ks: Sequence[int]) -> str:
    ks = sorted(set(int(k) for k in ks))
    if not ks:
        return f"n={n}"
    k = str(ks[0]) if len(ks) == 1 else f"{ks[0]}–{ks[-1]}"
    return f"n={n} ({k})"


def to_markdown(table: pd.DataFrame) -> str:
    """Render a tidy table from :func:`table_vs_base` / :func:`table_vs_best_expert`.

    One row per (base, method) like the paper (the base name only on its first row),
    a "Base" (or "Best FT" plus the best expert's name) accuracy column with one decimal,
    and one column per n with header ``n=<n> (<k>)`` and cells ``"<% better> / <gain>"``.
    """
    if table.empty:
        return "_(no merged models)_\n"
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


def write_tables(
    scores_csv: str | Path,
    out_dir: str | Path,
    table_groups: Mapping[str, Sequence[str]],
) -> dict[str, tuple[Path, Path]]:
    """Write ``<name>.csv`` (tidy) and ``<name>.md`` for every group plus ``table2``.

    Each group (e.g. ``{"table1": ["ta", "ties", "model_stock"], "table3": [...]}``) becomes a
    vs-base table of its methods. ``table2`` compares with the best expert for every method
    (the methods of all groups in order, then any other merged method in the scores); a
    group named ``table2`` instead lists the methods of that vs-best-expert table.
    Returns ``{name: (csv_path, md_path)}``.
    """
    scores = read_scores(scores_csv)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    avgs_methods = _ordered_unique(scores.loc[scores.role == "merged", "method"])
    written: dict[str, tuple[Path, Path]] = {}

    def emit(name: str, table: pd.DataFrame, caption: str) -> None:
        csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
        table.to_csv(csv_path, index=False)
        md_path.write_text(f"**{name}.** {caption}\n\n{to_markdown(table)}")
        written[name] = (csv_path, md_path)

    for name, methods in table_groups.items():
        if name == "table2":
            continue
        emit(name, table_vs_base(scores, list(methods)), _CAPTIONS["base"])
    if "table2" in table_groups:
        best_methods = list(table_groups["table2"])
    else:
        grouped = [m for methods in table_groups.values() for m in methods]
        best_methods = _ordered_unique(grouped + avgs_methods)
    emit("table2", table_vs_best_expert(scores, best_methods), _CAPTIONS["best_expert"])
    return written
