"""Markdown of the tables, and their captions.

* :func:`to_markdown` / :func:`paired_to_markdown` -- render the tables of
  :mod:`wildmerge.aggregate.tables`; vs-reference cells like the paper, ``"80 / +0.39"``, column
  headers ``"n=4 (15)"`` (n merged models, k evaluated subsets); with ``ci=True`` the same
  layout with the CIs, ``"[53, 100] / [-0.20, +0.90]"``.
* :func:`method_label` -- how the paper prints a config method name.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from wildmerge.aggregate.scores import AVERAGE
from wildmerge.aggregate.statistics import Bootstrap

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


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)



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


CAPTIONS = {
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


def ci_caption(boot: Bootstrap) -> str:
    return (
        f"**{boot.level * 100:g}% bootstrap CIs.** Same layout; each cell: [CI of the % of "
        f"combinations beating the reference] / [CI of the mean difference, points]. Percentile "
        f"intervals from B={boot.n_boot} resamples (with replacement) of the k combinations "
        f"(seed {boot.seed}); Average rows resample within each base and average over bases. "
        "– : fewer than 2 combinations (no CI)."
    )


def paired_caption(boot: Bootstrap) -> str:
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


# --------------------------------------------------------------------------- paired per-item tables


def cells_to_markdown(cells: pd.DataFrame) -> str:
    """One line per (base, method, n): gain with its paired CI, the unpaired CI, significance."""
    if cells.empty:
        return "_no per-item outcomes_\n"
    head = ("| base | method | n | k | % better [CI] | mean gain [paired CI] | unpaired CI | width ratio "
            "| sig. better / worse |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = [
        f"| {r.base} | {r.method} | {r.n} | {r.k} | {r.pct_better:.0f} [{r.pct_better_lo:.0f}, {r.pct_better_hi:.0f}] "
        f"| {r.mean_gain:+.2f} [{r.mean_gain_lo:+.2f}, {r.mean_gain_hi:+.2f}] "
        f"| [{r.unpaired_lo:+.2f}, {r.unpaired_hi:+.2f}] | {r.width_ratio:.2f} | {r.n_sig_better} / {r.n_sig_worse} |"
        for r in cells.itertuples()
    ]
    return head + "\n".join(lines) + "\n"


ITEM_CAPTION = (
    "Paired per-item comparison with the {ref}: mean gain in points with its 95% CI from a bootstrap "
    "over the items (stratified by task; the same item draws for every model, so the {ref}'s outcomes "
    "are paired with the merge's) combined with the bootstrap over the k subsets; the unpaired CI draws "
    "the {ref}'s items independently; width ratio = unpaired / paired. sig. better / worse: merges "
    "(experts at n=1) whose own paired per-item CI lies above / below 0."
)
