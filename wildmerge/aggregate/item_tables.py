"""Paired per-item statistics (issue 13): merges vs the base and vs the best expert, with the
items as the sampling unit, on the per-item outcome files (:mod:`wildmerge.evaluation.items`).

Every model of a base is scored on the same items, so a merge's gain over its reference is
the mean of per-item differences, and its uncertainty is that of the items actually drawn:

* **Model accuracy** (points): ``100 * mean over benchmarks of sum_i w_i c_i``, ``c_i`` the
  item's outcome and ``w_i`` its weight in the benchmark's value (``1/N`` for a task; for a
  group, ``1/N`` or ``1/(T N_t)`` per task, whichever reproduces the score file's value), so
  it equals the score-file average of :func:`wildmerge.aggregate.scores.model_averages`.
* **Item bootstrap** (:func:`item_replicates`): per benchmark the items are resampled with
  replacement within each task (stratified by sub-task), ``n_boot`` times, the same draws for
  every model of the base: the *paired* replicate of a gain is the merge's replicate minus
  the reference's on the same draws. The *unpaired* replicate draws the reference's items
  independently (what two separately subsampled evaluations would give); the ratio of the two
  interval widths is reported.
* **Per merge**: the paired gain and its percentile CI; a merge *beats the reference
  significantly* when its CI lies above 0 (``n_sig_better``; below 0: ``n_sig_worse``).
* **Table cells** (base, method, n): each replicate also resamples the k subsets (with
  :func:`wildmerge.aggregate.statistics.bootstrap_indices`, the subset stream of the main tables), so the
  CI of "% better" and of the mean gain combines subset and item sampling. ``Average`` rows
  average the per-base replicates (drawn independently per base).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from wildmerge.aggregate.scores import AVERAGE, model_averages
from wildmerge.aggregate.rendering import ITEM_CAPTION, cells_to_markdown
from wildmerge.aggregate.statistics import (
    DEFAULT_LEVEL,
    DEFAULT_SEED,
    EPS,
    average_replicates,
    bootstrap_indices,
    percentile_ci,
)

#: Item bootstrap resamples: fewer than the subset bootstrap's (statistics.DEFAULT_N_BOOT)
#: because each one is an (items)-long weight vector held in memory for every model.
ITEM_N_BOOT = 1000

CELL_COLUMNS = [
    "base", "method", "reference", "reference_model", "n", "k",
    "pct_better", "pct_better_lo", "pct_better_hi",        # % of subsets above the reference; CI over subsets x items
    "mean_gain", "mean_gain_lo", "mean_gain_hi",           # points; paired CI (subsets x items)
    "unpaired_lo", "unpaired_hi",                          # the same CI with the reference's items drawn independently
    "width_ratio",                                         # unpaired / paired CI width of mean_gain
    "n_sig_better", "n_sig_worse",                         # merges whose own paired item CI is above / below 0
    "n_items",                                             # items per model behind the row
]
MERGE_COLUMNS = [
    "base", "model_id", "method", "n", "subset_id", "reference", "reference_model",
    "gain", "gain_lo", "gain_hi", "unpaired_lo", "unpaired_hi", "significant",
]


@dataclass
class ItemMatrix:
    """One base's per-item outcomes: ``outcomes[model]`` is a vector over ``items`` (the items
    every model has, benchmark by benchmark), ``weights`` their weight in the average
    (summing to 1 over all benchmarks), ``strata`` the (benchmark, task) each belongs to."""

    models: list[str]
    outcomes: np.ndarray  # (models, items)
    weights: np.ndarray  # (items,)
    strata: np.ndarray  # (items,) int stratum index
    n_items: int

    def accuracy(self) -> np.ndarray:
        return 100.0 * self.outcomes @ self.weights


def _benchmark_weights(tasks: pd.Series, value: float | None, correct: np.ndarray) -> np.ndarray:
    n = len(tasks)
    flat = np.full(n, 1.0 / n)
    counts = tasks.map(tasks.value_counts())
    per_task = (1.0 / (tasks.nunique() * counts)).to_numpy(dtype=float)
    if value is None or tasks.nunique() == 1:
        return flat
    return per_task if abs(per_task @ correct - value) < abs(flat @ correct - value) else flat


def item_matrix(files: Mapping[str, Mapping[str, str | Path]], values: Mapping[tuple[str, str], float] | None = None,
                item_ids: Mapping[str, Sequence[str]] | None = None) -> ItemMatrix:
    """Build one base's :class:`ItemMatrix` from ``files[model][benchmark]`` (per-item
    Parquet files). ``values[(model, benchmark)]`` (score-file values) picks a group's
    weighting; ``item_ids[benchmark]`` restricts to those items (a budget)."""
    from wildmerge.evaluation.items import read_items

    models = sorted(files)
    benches = sorted({b for f in files.values() for b in f})
    blocks, weights, strata = [], [], []
    n_strata = 0
    for bench in benches:
        frames = {m: read_items(files[m][bench], ["item_id", "task", "correct"]).set_index("item_id") for m in models}
        common = sorted(set.intersection(*(set(f.index) for f in frames.values())))
        if item_ids is not None and bench in item_ids:
            common = sorted(set(common) & set(item_ids[bench]))
        if not common:
            raise ValueError(f"benchmark {bench!r}: no item that every model of the base has")
        block = np.stack([frames[m].loc[common, "correct"].to_numpy(dtype=float) for m in models])
        tasks = frames[models[0]].loc[common, "task"].astype(str).reset_index(drop=True)
        ref = models[0]
        w = _benchmark_weights(tasks, (values or {}).get((ref, bench)), block[0])
        codes, _ = pd.factorize(tasks)
        blocks.append(block)
        weights.append(w / len(benches))
        strata.append(codes + n_strata)
        n_strata += int(codes.max()) + 1
    return ItemMatrix(models, np.concatenate(blocks, axis=1), np.concatenate(weights),
                      np.concatenate(strata), sum(b.shape[1] for b in blocks))


def _rng(seed: int, *key: object) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps([str(x) for x in key]).encode()).digest()
    return np.random.default_rng([int(seed), *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def item_replicates(mat: ItemMatrix, n_boot: int, seed: int, *key: object) -> np.ndarray:
    """``(n_boot, items)`` replicate weights: items resampled with replacement within each
    stratum (benchmark x task), each stratum keeping its total weight."""
    rng = _rng(seed, "items", *key)
    q = np.zeros((n_boot, mat.n_items))
    for s in np.unique(mat.strata):
        idx = np.flatnonzero(mat.strata == s)
        draws = rng.integers(0, len(idx), size=(n_boot, len(idx)))
        counts = np.zeros((n_boot, len(idx)))
        np.add.at(counts, (np.repeat(np.arange(n_boot), len(idx)), draws.ravel()), 1.0)
        q[:, idx] = counts * (mat.weights[idx].sum() / len(idx))
    return q


def _ci(reps: np.ndarray, level: float) -> tuple[float, float]:
    return percentile_ci(reps, level) if reps.size else (float("nan"), float("nan"))


def paired_tables(scores: pd.DataFrame, files: Mapping[tuple[str, str, str], str | Path], methods: Sequence[str],
                  reference: str = "base", *, n_boot: int = ITEM_N_BOOT, seed: int = DEFAULT_SEED,
                  level: float = DEFAULT_LEVEL, item_ids: Mapping[str, Sequence[str]] | None = None,
                  resample_subsets: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, merges): per (base, method, n) and per merge, the paired per-item comparison
    with the ``reference`` ("base" or "best_expert"). ``files[(base, model, benchmark)]``.
    ``resample_subsets=False``: the cells' CIs hold the subsets fixed (item sampling only)."""
    avgs = model_averages(scores)
    vals = {(r.base, r.model_id, r.benchmark): float(r.value) for r in scores.itertuples()}
    cells, merges = [], []
    reps_by: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for base in list(dict.fromkeys(avgs["base"])):
        part = avgs[avgs.base == base]
        by_model: dict[str, dict[str, str | Path]] = {}
        for (b, m, bench), f in files.items():
            if b == base and m in set(part.model_id):
                by_model.setdefault(m, {})[bench] = f
        if not by_model:
            continue
        mat = item_matrix(by_model, {(m, bn): v for (b, m, bn), v in vals.items() if b == base}, item_ids)
        acc = dict(zip(mat.models, mat.accuracy()))
        experts = part[part.role == "expert"].sort_values("model_id")
        if reference == "base":
            ref_model = "base"
        else:  # best expert by its average over these items (ties: first model_id)
            ref_model = max(experts.model_id, key=lambda m: (acc[m], -list(experts.model_id).index(m)))
        q = item_replicates(mat, n_boot, seed, base)
        q2 = item_replicates(mat, n_boot, seed, base, "unpaired")
        row_of = {m: i for i, m in enumerate(mat.models)}
        ref = mat.outcomes[row_of[ref_model]]
        ref_rep2 = 100.0 * q2 @ ref

        def gains(models: list[str], mat: ItemMatrix = mat, row_of: dict = row_of, ref: np.ndarray = ref,
                  q: np.ndarray = q, ref_rep2: np.ndarray = ref_rep2,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            out = mat.outcomes[[row_of[m] for m in models]]
            point = 100.0 * (out - ref) @ mat.weights
            # paired: the differences resampled (a model equal to its reference gains exactly 0 in
            # every replicate; two products subtracted differ by BLAS's rounding, ~1e-14)
            paired = 100.0 * (out - ref) @ q.T
            return point, paired, 100.0 * out @ q.T - ref_rep2  # (k,), (k, B) paired, (k, B) unpaired

        for method in methods:
            mm = part[(part.role == "merged") & (part.method == method)]
            if mm.empty:
                continue
            groups = ([(1, experts)] if not experts.empty else []) + [(int(n), g) for n, g in mm.groupby("n", sort=True)]
            for n, grp in groups:
                grp = grp.sort_values(["subset_id", "model_id"], kind="stable")
                models = list(grp.model_id)
                point, rep, rep_u = gains(models)
                lo_hi = [_ci(rep[i], level) for i in range(len(models))]
                lo_hi_u = [_ci(rep_u[i], level) for i in range(len(models))]
                sig_better = sum(lo > 0 for lo, _ in lo_hi)
                sig_worse = sum(hi < 0 for _, hi in lo_hi)
                if n > 1:
                    for i, r in enumerate(grp.itertuples()):
                        merges.append({
                            "base": base, "model_id": r.model_id, "method": method, "n": n, "subset_id": r.subset_id,
                            "reference": reference, "reference_model": ref_model, "gain": point[i],
                            "gain_lo": lo_hi[i][0], "gain_hi": lo_hi[i][1],
                            "unpaired_lo": lo_hi_u[i][0], "unpaired_hi": lo_hi_u[i][1],
                            "significant": bool(lo_hi[i][0] > 0 or lo_hi[i][1] < 0),
                        })
                k = len(models)
                sub = (bootstrap_indices(k, n_boot, seed, base, n) if resample_subsets  # (B, k) subset draws
                       else np.tile(np.arange(k), (n_boot, 1)))
                cols = np.arange(n_boot)[:, None]
                g_rep = rep.T[cols, sub].mean(axis=1)
                g_rep_u = rep_u.T[cols, sub].mean(axis=1)
                p_rep = 100.0 * (rep.T[cols, sub] > EPS).mean(axis=1)
                reps_by[(base, method, n)] = (p_rep, g_rep, g_rep_u)
                cells.append(_cell(base, method, reference, ref_model, n, k,
                                   100.0 * float((point > EPS).mean()), float(point.mean()),
                                   p_rep, g_rep, g_rep_u, sig_better, sig_worse, mat.n_items, level))
    cells_df = pd.DataFrame(cells, columns=CELL_COLUMNS)
    if not cells_df.empty:
        cells_df = _with_average(cells_df, methods, reps_by, reference, level)
    return cells_df, pd.DataFrame(merges, columns=MERGE_COLUMNS)


def _cell(base: str, method: str, reference: str, ref_model: str, n: int, k: int, pct: float, gain: float,
          p_rep: np.ndarray, g_rep: np.ndarray, g_rep_u: np.ndarray, sig_better: int, sig_worse: int,
          n_items: int, level: float) -> dict:
    plo, phi = _ci(p_rep, level)
    glo, ghi = _ci(g_rep, level)
    ulo, uhi = _ci(g_rep_u, level)
    width = ghi - glo
    return {
        "base": base, "method": method, "reference": reference, "reference_model": ref_model, "n": n, "k": k,
        "pct_better": pct, "pct_better_lo": plo, "pct_better_hi": phi,
        "mean_gain": gain, "mean_gain_lo": glo, "mean_gain_hi": ghi, "unpaired_lo": ulo, "unpaired_hi": uhi,
        "width_ratio": (uhi - ulo) / width if width > 0 else float("nan"),
        "n_sig_better": sig_better, "n_sig_worse": sig_worse, "n_items": n_items,
    }


def _with_average(cells: pd.DataFrame, methods: Sequence[str], reps: Mapping, reference: str,
                  level: float) -> pd.DataFrame:
    rows = []
    for method in methods:
        for n, grp in cells[cells.method == method].groupby("n", sort=True):
            p_rep, g_rep, g_rep_u = average_replicates([reps[(b, method, int(n))] for b in grp.base])
            rows.append(_cell(AVERAGE, method, reference, "", int(n), int(grp.k.sum()),
                              float(grp.pct_better.mean()), float(grp.mean_gain.mean()), p_rep, g_rep, g_rep_u,
                              int(grp.n_sig_better.sum()), int(grp.n_sig_worse.sum()), int(grp.n_items.min()), level))
    return pd.concat([cells, pd.DataFrame(rows, columns=CELL_COLUMNS)], ignore_index=True)


def write_paired_tables(scores: pd.DataFrame, files: Mapping[tuple[str, str, str], str | Path],
                        base_methods: Sequence[str], all_methods: Sequence[str], out_dir: str | Path,
                        **kw: object) -> list[Path]:
    """``items_vs_base`` and ``items_vs_best_expert`` (cells: CSV + Markdown) and
    ``items_merges.csv`` (one row per merge and reference)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, merges = [], []
    for name, ref, methods, label in (("items_vs_base", "base", base_methods, "base model"),
                                      ("items_vs_best_expert", "best_expert", all_methods, "best expert")):
        cells, per_merge = paired_tables(scores, files, methods, ref, **kw)  # type: ignore[arg-type]
        cells.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(f"**{name}.** {ITEM_CAPTION.format(ref=label)}\n\n{cells_to_markdown(cells)}")
        written += [out_dir / f"{name}.csv", out_dir / f"{name}.md"]
        merges.append(per_merge)
    pd.concat(merges, ignore_index=True).to_csv(out_dir / "items_merges.csv", index=False)
    return [*written, out_dir / "items_merges.csv"]
