"""Hyperparameter sweeps (paper Appendix C): one tidy table per sweep.

A sweep merges the same subsets (by default all experts at once) with one method at every
point of a parameter grid; each merge is scored like any other model. Here the score files
and merge manifests become one row per (base, subset, grid point): the average accuracy
over benchmarks, the base model's, the gain, and the merged task vector's L2 norm.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from wildmerge.scores import model_averages
from wildmerge.collect import collect_scores
from wildmerge.provenance import read_json


def ablation_table(
    name: str,
    points: Sequence[Mapping[str, Any]],
    score_files: Iterable[str],
    manifests: Iterable[str],
) -> pd.DataFrame:
    """Rows per sweep point and subset.

    ``points``: dicts with base, merge_id, n, subset_id and ``point`` (swept parameter ->
    value), as :class:`wildmerge.study.AblationPoint`. ``score_files`` cover every point's
    merge and each base model; ``manifests`` every point's merge (for the L2 norm).
    """
    scores = collect_scores(score_files)
    avgs = model_averages(scores).set_index(["base", "model_id"])["accuracy"]
    norms = {(m["base"], m["merge_id"]): float(m["task_vector_l2"]) for m in map(read_json, manifests)}
    keys = list(dict.fromkeys(k for p in points for k in p["point"]))
    rows = []
    for p in points:
        base, mid = p["base"], p["merge_id"]
        rows.append(
            {
                "ablation": name,
                "base": base,
                "n": int(p["n"]),
                "subset_id": p["subset_id"],
                "merge_id": mid,
                **{k: p["point"].get(k) for k in keys},
                "accuracy": float(avgs[(base, mid)]),
                "base_accuracy": float(avgs[(base, "base")]),
                "gain": float(avgs[(base, mid)] - avgs[(base, "base")]),
                "l2_norm": norms[(base, mid)],
            }
        )
    return pd.DataFrame(rows)
