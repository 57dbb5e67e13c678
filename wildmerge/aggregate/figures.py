"""The paper's figures as PNGs (seaborn styling, Agg rendering, no pyplot state).

* :func:`plot_accuracy_vs_n` -- average accuracy vs. number of merged models (Figs. 3/6).
* :func:`plot_taskwise` -- the same per benchmark (Figs. 7-10).
* :func:`plot_norm_vs_n` -- ||theta_merged - theta_base||_2 vs. n (Fig. 4).
* :func:`plot_cosine_heatmap` -- pairwise task-vector cosine similarities (Figs. 19-22).
* :func:`plot_layer_signs` -- per pair, number of layers with positive / negative cosine
  (Figs. 23-26).

Each takes DataFrames and an output path. Curves are the mean over the sampled subsets of a
merge size with a +-1 std band (no band where there is a single subset); n=1 is the
individual experts (common to all methods), the base model is a dashed and the best expert a
dotted horizontal line; one panel per base model.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display; figures are rendered with Agg and written as PNG

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wildmerge.aggregate.rendering import method_label  # noqa: E402
from wildmerge.aggregate.scores import model_averages, normalize_scores  # noqa: E402

DPI = 150
MAX_PIXELS = 9000  # cap on either side of a (taskwise) figure; dpi is lowered to fit
METHOD_ORDER = ["ta", "ties", "model_stock", "ta_sb", "ties_sb", "tsv", "iso_c"]
BASE_STYLE = dict(color="black", linestyle="--", linewidth=1.3)
BEST_STYLE = dict(color="dimgray", linestyle=":", linewidth=1.6)
EXPERT_COLOR = "0.55"


# --------------------------------------------------------------------------- helpers


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)


def _methods(values: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(v for v in values if v))
    known = [m for m in METHOD_ORDER if m in present]
    return known + sorted(m for m in present if m not in known)


def _palette(methods: Sequence[str]) -> dict[str, tuple]:
    colors = sns.color_palette("tab10", n_colors=max(10, len(methods)))
    return {m: colors[i % len(colors)] for i, m in enumerate(methods)}


def _grid(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(max_cols, n_panels))
    return ncols, max(1, math.ceil(n_panels / ncols))


def _save(fig: Figure, out_png: str | Path, dpi: int = DPI) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = fig.get_size_inches()
    dpi = min(dpi, int(MAX_PIXELS / max(w, h)))
    fig.savefig(out, dpi=dpi, bbox_inches="tight", format="png")
    return out


def _mean_std(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per n: mean, sample std (0 where a single subset), count."""
    g = df.groupby("n", sort=True)[value]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "k": g.size()}).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def _draw_curve(ax, stats: pd.DataFrame, color, label: str) -> None:
    x = stats["n"].to_numpy(dtype=float)
    m = stats["mean"].to_numpy(dtype=float)
    s = stats["std"].to_numpy(dtype=float)
    ax.plot(x, m, marker="o", markersize=4, linewidth=1.8, color=color, label=label)
    if (s > 0).any():
        ax.fill_between(x, m - s, m + s, color=color, alpha=0.18, linewidth=0)


def _reference_panel(ax, part: pd.DataFrame, value: str, methods: list[str], palette: dict) -> list[int]:
    """Draw base/best-expert lines, experts at n=1 and one mean+-std curve per method.

    ``part``: rows of one base (and benchmark) with columns role, method, n and ``value``.
    Returns the x positions used.
    """
    base = part[part.role == "base"]
    experts = part[part.role == "expert"]
    merged = part[part.role == "merged"]
    xs: set[int] = set()
    if not base.empty:
        ax.axhline(float(base[value].mean()), **BASE_STYLE, label="base model")
    expert_stats = None
    if not experts.empty:
        ev = experts[value].to_numpy(dtype=float)
        ax.axhline(float(ev.max()), **BEST_STYLE, label="best expert")
        ax.scatter(np.ones_like(ev), ev, s=14, color=EXPERT_COLOR, alpha=0.8, zorder=3, label="experts (n=1)")
        expert_stats = pd.DataFrame(
            {"n": [1], "mean": [ev.mean()], "std": [ev.std(ddof=1) if len(ev) > 1 else 0.0], "k": [len(ev)]}
        )
        xs.add(1)
    for method in methods:
        mm = merged[merged.method == method]
        if mm.empty:
            continue
        stats = _mean_std(mm, value)
        if expert_stats is not None:
            stats = pd.concat([expert_stats, stats], ignore_index=True)
        _draw_curve(ax, stats, palette[method], method_label(method))
        xs.update(int(n) for n in stats["n"])
    if xs:
        ax.set_xticks(sorted(xs))
    return sorted(xs)


def _figure_legend(fig: Figure, axes, ncol_max: int = 6) -> None:
    handles, labels = {}, {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                labels[lab] = lab
                handles[lab] = h
    if handles:
        fig.legend(
            list(handles.values()), list(labels.values()), loc="outside lower center",
            ncol=min(ncol_max, len(handles)), frameon=False,
        )


# --------------------------------------------------------------------------- figures


def plot_accuracy_vs_n(scores: pd.DataFrame, out_png: str | Path, *, title: str | None = None) -> Path:
    """Average accuracy (points) vs. n per method, mean +- std over subsets; one panel per base."""
    _theme()
    avgs = model_averages(scores)
    n_bench = avgs.groupby("base")["n_benchmarks"].max()
    bases = list(dict.fromkeys(avgs["base"]))
    methods = _methods(avgs.loc[avgs.role == "merged", "method"])
    palette = _palette(methods)
    ncols, nrows = _grid(len(bases))
    fig = Figure(figsize=(4.8 * ncols, 3.9 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, base in zip(axes, bases):
        _reference_panel(ax, avgs[avgs.base == base], "accuracy", methods, palette)
        ax.set_title(f"{base} ({int(n_bench[base])} benchmarks)", fontsize=11)
        ax.set_xlabel("number of merged models n")
        ax.set_ylabel("average accuracy (%)")
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    fig.suptitle(title or "Average accuracy vs. number of merged models (mean ± std over subsets)", fontsize=12)
    _figure_legend(fig, axes[: len(bases)])
    return _save(fig, out_png)


def plot_taskwise(scores: pd.DataFrame, out_png: str | Path, *, max_cols: int = 4) -> Path:
    """Per-benchmark accuracy vs. n per method; for each base a block of benchmark panels."""
    _theme()
    df = normalize_scores(scores)
    df = df[df["value"].notna()].assign(accuracy=lambda d: d["value"] * 100.0)
    bases = list(dict.fromkeys(df["base"]))
    methods = _methods(df.loc[df.role == "merged", "method"])
    palette = _palette(methods)
    blocks = []
    for base in bases:
        benches = sorted(df.loc[df.base == base, "benchmark"].unique())
        blocks.append((base, benches))
    ncols = max(1, min(max_cols, max(len(b) for _, b in blocks)))
    rows_per = [math.ceil(len(b) / ncols) for _, b in blocks]
    nrows = sum(rows_per)
    fig = Figure(figsize=(3.6 * ncols, 2.8 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    used = []
    r0 = 0
    for (base, benches), nr in zip(blocks, rows_per):
        for i, bench in enumerate(benches):
            ax = axes[r0 + i // ncols, i % ncols]
            part = df[(df.base == base) & (df.benchmark == bench)]
            _reference_panel(ax, part, "accuracy", methods, palette)
            ax.set_title(f"{base}: {bench}", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.set_xlabel("n", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
            used.append(ax)
        for j in range(len(benches), nr * ncols):
            axes[r0 + j // ncols, j % ncols].set_visible(False)
        r0 += nr
    fig.suptitle("Task-wise accuracy vs. number of merged models (mean ± std over subsets)", fontsize=12)
    _figure_legend(fig, used)
    return _save(fig, out_png)


def plot_norm_vs_n(norms: pd.DataFrame, out_png: str | Path, *, log_y: bool = False) -> Path:
    """Task-vector L2 norm of the merged models vs. n per method, mean +- std; one panel per base.

    ``norms`` has columns base, method, n, subset_id, l2_norm (one row per merged model).
    """
    _theme()
    missing = [c for c in ["base", "method", "n", "l2_norm"] if c not in norms.columns]
    if missing:
        raise ValueError(f"norms table lacks column(s) {missing}")
    df = norms.copy()
    df["base"] = df["base"].astype(str)
    df["method"] = df["method"].astype(str)
    df["n"] = pd.to_numeric(df["n"]).astype(int)
    df["l2_norm"] = pd.to_numeric(df["l2_norm"], errors="coerce").astype(float)
    df = df[df["l2_norm"].notna()]
    bases = list(dict.fromkeys(df["base"]))
    methods = _methods(df["method"])
    palette = _palette(methods)
    ncols, nrows = _grid(max(1, len(bases)))
    fig = Figure(figsize=(4.8 * ncols, 3.9 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, base in zip(axes, bases):
        part = df[df.base == base]
        for method in methods:
            mm = part[part.method == method]
            if not mm.empty:
                _draw_curve(ax, _mean_std(mm, "l2_norm"), palette[method], method_label(method))
        ax.set_xticks(sorted(part["n"].unique()))
        if log_y:
            ax.set_yscale("log")
        ax.set_title(base, fontsize=11)
        ax.set_xlabel("number of merged models n")
        ax.set_ylabel(r"$\|\theta_{\mathrm{merged}} - \theta_{\mathrm{base}}\|_2$")
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    if not bases:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no merged models", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle("Task-vector L2 norm of merged models vs. n (mean ± std over subsets)", fontsize=12)
    _figure_legend(fig, axes[: len(bases)])
    return _save(fig, out_png)


def _heatmap(data: pd.DataFrame, **kwargs):
    with warnings.catch_warnings():  # seaborn 0.13 calls the deprecated Colormap.set_bad
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return sns.heatmap(data, **kwargs)


def _short(name: str, limit: int = 34) -> str:
    name = str(name).removeprefix("expert-")
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_cosine_heatmap(cos: pd.DataFrame, out_png: str | Path, title: str) -> Path:
    """Annotated heatmap of a square cosine matrix; diverging colormap centred at 0.

    The colour range is symmetric and set by the largest off-diagonal |cos| (the diagonal of
    ones would otherwise wash out the near-zero off-diagonal values); cells are annotated
    with their values. Rows are labelled "i  name", columns by the index i.
    """
    _theme()
    names = [str(c) for c in cos.columns]
    m = len(names)
    values = cos.to_numpy(dtype=float)
    off = values[~np.eye(m, dtype=bool)] if m > 1 else values.ravel()
    off = off[np.isfinite(off)]
    vmax = float(np.max(np.abs(off))) if off.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    side = max(4.5, 0.62 * m + 2.5)
    fig = Figure(figsize=(side + 2.2, side), layout="constrained")
    ax = fig.subplots()
    annot = m <= 24
    data = pd.DataFrame(values, index=[f"{i + 1}  {_short(n)}" for i, n in enumerate(names)],
                        columns=[str(i + 1) for i in range(m)])
    _heatmap(
        data, ax=ax, cmap="RdBu_r", center=0.0, vmin=-vmax, vmax=vmax, square=True,
        annot=annot, fmt=".2f", annot_kws={"fontsize": 8 if m <= 12 else 6},
        linewidths=0.4, linecolor="white", cbar_kws={"label": "cosine similarity", "shrink": 0.8},
    )
    ax.set_title(title, fontsize=11)
    ax.grid(False)
    ax.set_xlabel("model index")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=8 if m <= 16 else 6, rotation=0)
    ax.tick_params(axis="x", labelsize=8, rotation=0)
    return _save(fig, out_png)


def plot_layer_signs(layers: pd.DataFrame, out_png: str | Path, title: str, *, tol: float = 1e-6) -> Path:
    """Per pair of models, the number of layers whose task-vector cosine is positive/negative.

    ``layers`` is the long per-layer table of :func:`wildmerge.geometry.pairwise_cosine`.
    Cells show "positive/negative" counts, coloured by (positive - negative) / layers.
    """
    from wildmerge.geometry import layer_sign_counts

    _theme()
    counts = layer_sign_counts(layers, tol=tol)
    names = list(dict.fromkeys(list(layers["model_a"]) + list(layers["model_b"])))
    m = len(names)
    pos = pd.DataFrame(0, index=names, columns=names)
    neg = pd.DataFrame(0, index=names, columns=names)
    for r in counts.itertuples(index=False):
        pos.loc[r.model_a, r.model_b] = pos.loc[r.model_b, r.model_a] = r.positive
        neg.loc[r.model_a, r.model_b] = neg.loc[r.model_b, r.model_a] = r.negative
    n_layers = max(1, layers.loc[layers["layer"].astype(str) != "other", "layer"].nunique())
    score = (pos - neg) / n_layers
    labels = pos.astype(str) + "/" + neg.astype(str)
    mask = np.eye(m, dtype=bool)
    side = max(4.5, 0.7 * m + 2.5)
    fig = Figure(figsize=(side + 2.2, side), layout="constrained")
    ax = fig.subplots()
    data = score.set_axis([f"{i + 1}  {_short(n)}" for i, n in enumerate(names)], axis=0)
    data.columns = [str(i + 1) for i in range(m)]
    _heatmap(
        data, ax=ax, mask=mask, cmap="RdBu_r", center=0.0, vmin=-1, vmax=1, square=True,
        annot=labels.to_numpy() if m <= 20 else False, fmt="", annot_kws={"fontsize": 7},
        linewidths=0.4, linecolor="white",
        cbar_kws={"label": f"(positive − negative layers) / {n_layers}", "shrink": 0.8},
    )
    ax.set_title(f"{title}\ncells: layers with cosine > 0 / < 0", fontsize=11)
    ax.grid(False)
    ax.set_xlabel("model index")
    ax.set_ylabel("")
    ax.tick_params(axis="y", labelsize=8, rotation=0)
    ax.tick_params(axis="x", labelsize=8, rotation=0)
    return _save(fig, out_png)


__all__ = [
    "plot_accuracy_vs_n",
    "plot_taskwise",
    "plot_norm_vs_n",
    "plot_cosine_heatmap",
    "plot_layer_signs",
]


# --------------------------------------------------------------------------- ablations


def _ablation_panels(table: pd.DataFrame, title: str):
    _theme()
    bases = list(dict.fromkeys(table["base"]))
    ncols, nrows = _grid(len(bases), max_cols=3)
    fig = Figure(figsize=(5.2 * ncols, 3.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(zip(bases, axes))


def _hue_levels(table: pd.DataFrame, hue: str | None) -> list:
    return [None] if hue is None else list(dict.fromkeys(table[hue]))


def plot_ablation(table: pd.DataFrame, x: str, hue: str | None, out_png: str | Path, title: str) -> Path:
    """Average accuracy vs. the swept parameter ``x`` (one line per ``hue`` value; mean +- std
    over subsets), base model dashed; one panel per base (Figs. 11, 12, 17, 18)."""
    fig, panels = _ablation_panels(table, title)
    levels = _hue_levels(table, hue)
    colors = sns.color_palette("viridis" if len(levels) > 3 else "tab10", n_colors=max(3, len(levels)))
    numeric = pd.api.types.is_numeric_dtype(table[x]) and not pd.api.types.is_bool_dtype(table[x])
    for base, ax in panels:
        part = table[table["base"] == base]
        for color, level in zip(colors, levels):
            sub = part if level is None else part[part[hue] == level]
            g = sub.groupby(x, sort=True)["accuracy"]
            stats = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0)}).reset_index()
            xs = stats[x].to_numpy(dtype=float) if numeric else np.arange(len(stats))
            label = "" if level is None else f"{hue}={level}"
            ax.plot(xs, stats["mean"], marker="o", markersize=4, linewidth=1.8, color=color, label=label)
            if (stats["std"] > 0).any():
                ax.fill_between(xs, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                                color=color, alpha=0.18, linewidth=0)
            if not numeric:
                ax.set_xticks(xs, [str(v) for v in stats[x]])
        ax.axhline(part["base_accuracy"].iloc[0], label="base model", **BASE_STYLE)
        ns = sorted(set(part["n"]))
        ax.set_title(f"{base} (n={', '.join(map(str, ns))})")
        ax.set_xlabel(x)
        ax.set_ylabel("average accuracy (%)")
        ax.legend(fontsize="small")
    return _save(fig, out_png)


def plot_ablation_norm(table: pd.DataFrame, hue: str, out_png: str | Path, title: str,
                       marker_by: str | None = None) -> Path:
    """Average accuracy vs. ||theta_merged - theta_base||_2 of each sweep merge, coloured by
    ``hue`` (and marker by a second parameter), base model dashed (Figs. 13-16)."""
    fig, panels = _ablation_panels(table, title)
    levels = _hue_levels(table, hue)
    colors = sns.color_palette("viridis", n_colors=max(3, len(levels)))
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    mlevels = _hue_levels(table, marker_by)
    for base, ax in panels:
        part = table[table["base"] == base]
        for color, level in zip(colors, levels):
            for marker, mlevel in zip(markers * 8, mlevels):
                sub = part[part[hue] == level]
                if mlevel is not None:
                    sub = sub[sub[marker_by] == mlevel]
                if sub.empty:
                    continue
                label = f"{hue}={level}" + ("" if mlevel is None else f", {marker_by}={mlevel}")
                ax.scatter(sub["l2_norm"], sub["accuracy"], color=color, marker=marker, s=36, label=label)
        ax.axhline(part["base_accuracy"].iloc[0], label="base model", **BASE_STYLE)
        ax.set_title(base)
        ax.set_xlabel(r"$\|\theta_{merged} - \theta_{base}\|_2$")
        ax.set_ylabel("average accuracy (%)")
        ax.legend(fontsize="x-small", ncol=2 if len(levels) * len(mlevels) > 6 else 1)
    return _save(fig, out_png)


# --------------------------------------------------------------------------- homogeneous


def plot_homogeneous(table: pd.DataFrame, out_png: str | Path) -> Path:
    """Per base and suite: merge of the suite's expert group alone vs. merge of all groups,
    per method (grouped bars); base model dashed, the group's experts' mean dotted (Figs. 27-28)."""
    _theme()
    panels = list(dict.fromkeys(zip(table["base"], table["suite"])))
    ncols, nrows = _grid(len(panels), max_cols=3)
    fig = Figure(figsize=(5.4 * ncols, 3.9 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    colors = sns.color_palette("tab10", n_colors=3)
    for (base, suite), ax in zip(panels, axes):
        part = table[(table["base"] == base) & (table["suite"] == suite)]
        methods = _methods(part["method"])
        part = part.set_index("method").loc[methods]
        xs = np.arange(len(methods))
        ax.bar(xs - 0.2, part["group_merge"], width=0.4, color=colors[0],
               label=f"merge of the {suite} group (n={int(part['n_group'].iloc[0])})")
        ax.bar(xs + 0.2, part["all_merge"], width=0.4, color=colors[1],
               label=f"merge of all groups (n={int(part['n_all'].iloc[0])})")
        ax.axhline(part["base_model"].iloc[0], label="base model", **BASE_STYLE)
        ax.axhline(part["experts_mean"].iloc[0], label=f"{suite} experts (mean)", **BEST_STYLE)
        ax.set_xticks(xs, [method_label(m) for m in methods], rotation=30, ha="right")
        ax.set_title(f"{base}: {suite} suite ({int(part['n_benchmarks'].iloc[0])} benchmarks)")
        ax.set_ylabel("average accuracy (%)")
        lo = min(part[["group_merge", "all_merge", "base_model", "experts_mean"]].min())
        ax.set_ylim(max(0.0, lo - 10.0), None)
        ax.legend(fontsize="x-small")
    fig.suptitle("Homogeneous vs. heterogeneous merges")
    return _save(fig, out_png)
