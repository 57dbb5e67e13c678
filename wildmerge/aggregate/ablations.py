"""Hyperparameter sweeps (paper Appendix C), the table half: one tidy table per sweep.

The score files and merge manifests of a sweep's merges (planned by wildmerge.study.ablations)
become one row per (base, subset, grid point): the average accuracy over benchmarks, the base
model's, the gain, and the merged task vector's L2 norm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from wildmerge.provenance import read_json

if TYPE_CHECKING:  # pandas is imported by the job only, not at DAG build
    import pandas as pd


def ablation_table(
    name: str,
    points: Sequence[Mapping[str, Any]],
    score_files: Iterable[str],
    manifests: Iterable[str],
) -> pd.DataFrame:
    """Rows per sweep point and subset.

    ``points``: dicts with base, merge_id, n, subset_id and ``point`` (swept parameter ->
    value), as :class:`AblationPoint`. ``score_files`` cover every point's
    merge and each base model; ``manifests`` every point's merge (for the L2 norm).
    """
    import pandas as pd

    from wildmerge.aggregate.collect import collect_scores
    from wildmerge.aggregate.scores import model_averages

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
