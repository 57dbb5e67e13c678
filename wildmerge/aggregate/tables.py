"""Per-model averages -> the paper's constructive-interference tables, and their files.

* :func:`table_vs_base` -- paper Tables 1 and 3: per base and method, the base accuracy and,
  per merge size n (n=1: the individual experts, common to all methods), the number of
  subsets k, the % of them whose average beats the base, and the mean gain in points,
  each with a percentile-bootstrap confidence interval over the k subsets.
* :func:`table_vs_best_expert` -- paper Table 2: the same against the best single expert
  (by average accuracy) of each base, for every method.
* :func:`table_paired` -- beyond the paper: paired comparison of every two merge methods on
  the subsets both merged (matched by ``subset_id``): mean difference with bootstrap CI,
  % of subsets where A wins, exact sign-test and Wilcoxon signed-rank p-values.
* :func:`write_tables` -- all of it as ``<name>.csv`` + ``<name>.md`` (plus ``paired``);
  the Markdown comes from :mod:`wildmerge.aggregate.rendering`.

Averages come from :func:`wildmerge.aggregate.scores.model_averages`, the bootstrap and tests from
:mod:`wildmerge.aggregate.statistics`. Tables are returned in tidy (long) form: one row per (base,
method, n), plus ``Average`` rows over bases (the mean of the per-base percentages and
gains, as in the paper).

Rows with k < 2 (e.g. the single full subset at n = number of experts) get NaN CIs: one
subset carries no information about the spread over subsets. ``Average`` rows: a stratified
bootstrap -- the replicates are drawn independently within each base and the per-replicate
statistics are averaged over bases, exactly like the point estimate; NaN if any of the
averaged bases has k < 2. Note the percentile CI of "% better" collapses to a point when
all k subsets are on the same side of the reference (e.g. [100, 100]); it describes the
subset-sampling spread, not a small-sample interval for a proportion.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from wildmerge.aggregate.rendering import CAPTIONS, ci_caption, paired_caption, paired_to_markdown, to_markdown
from wildmerge.aggregate.scores import AVERAGE, short_list, model_averages, read_scores
from wildmerge.aggregate.statistics import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    DEFAULT_SEED,
    EPS,
    Bootstrap,
    average_replicates,
    bootstrap_indices,
    percentile_ci,
    sign_test_p,
    wilcoxon_signed_rank_p,
)

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
    "wilcoxon_p",      # two-sided Wilcoxon signed-rank test, zeros dropped (exact; Monte Carlo if tied and k > 16)
]

#: Name of the paired-comparison table written by :func:`write_tables`.
PAIRED = "paired"


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
    n_better = int((gains > EPS).sum())
    reps: _Replicates = None
    if k >= 2 and boot.n_boot > 0:
        sample = gains[bootstrap_indices(k, boot.n_boot, boot.seed, base, int(n))]
        reps = (100.0 * (sample > EPS).mean(axis=1), sample.mean(axis=1))
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
                pct_reps, gain_reps = average_replicates(reps)
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
    n_a, n_b = int((diffs > EPS).sum()), int((diffs < -EPS).sum())
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
            + short_list([f"{b}/{m}" for b, m in no_id[["base", "model_id"]].itertuples(index=False)])
        )
    dup = merged[merged.duplicated(["base", "method", "n", "subset_id"], keep=False)]
    if not dup.empty:
        raise ValueError(
            "several merged models share (base, method, n, subset_id): "
            + short_list([f"{b}/{m}" for b, m in dup[["base", "model_id"]].itertuples(index=False)])
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
            markdown += f"\n{ci_caption(boot)}\n\n{to_markdown(table, ci=True)}"
        emit(name, table, caption, markdown)

    for name, methods in table_groups.items():
        if name == "table2":
            continue
        emit_reference(name, table_vs_base(scores, list(methods), **stats), CAPTIONS["base"])
    grouped = [m for methods in table_groups.values() for m in methods]
    all_methods = _ordered_unique(grouped + avgs_methods)
    best_methods = list(table_groups["table2"]) if "table2" in table_groups else all_methods
    emit_reference("table2", table_vs_best_expert(scores, best_methods, **stats), CAPTIONS["best_expert"])
    paired = table_paired(scores, all_methods, **stats)
    emit(PAIRED, paired, paired_caption(boot), paired_to_markdown(paired))
    return written
