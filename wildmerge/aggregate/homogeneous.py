"""Homogeneous vs. heterogeneous merges (paper Appendix E), the table half: one row per base,
suite and method.

Each expert group of a base has its own benchmark suite. The merge of the group alone and the
merge of all groups together are scored on it, as are the base and the group's experts
(planned by wildmerge.study.homogeneous); here the per-benchmark score files become average
accuracies (points) per suite.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from wildmerge.aggregate.scorecheck import check_task_versions
from wildmerge.provenance import read_json

if TYPE_CHECKING:  # pandas is imported by the job only, not at DAG build
    import pandas as pd

COLUMNS = ["base", "suite", "method", "group_merge", "all_merge", "all_minus_group",
           "base_model", "experts_mean", "best_expert", "n_group", "n_all", "n_benchmarks"]


def suite_accuracies(evals: Sequence[Mapping[str, Any]], folders: Sequence[str | Path]) -> pd.DataFrame:
    """Average accuracy (points) of every (base, suite, model) from its suite score folder
    (``folders[i]`` holds the per-benchmark JSONs of ``evals[i]``)."""
    import pandas as pd

    rows, records = [], []
    for e, folder in zip(evals, map(Path, folders), strict=True):
        scores = [(f, read_json(f)) for f in sorted(folder.glob("*.json"))]
        if not scores:
            raise FileNotFoundError(f"{folder}: no score files")
        records += scores
        values = [r["value"] for _, r in scores]
        rows.append({**e, "accuracy": 100.0 * sum(values) / len(values), "n_benchmarks": len(values)})
    # one version of each task in the table (a suite's folder is its evaluation's output: redone whole)
    check_task_versions(records, redo=lambda files: f"rm -r {' '.join(sorted({str(f.parent) for f in files}))} && snakemake")
    return pd.DataFrame(rows)


def homogeneous_table(acc: pd.DataFrame, group_sizes: Mapping[tuple[str, str], int]) -> pd.DataFrame:
    """Per base, suite and method: group-only merge vs. all-groups merge, with references."""
    import pandas as pd

    out = []
    for (base, suite), part in acc.groupby(["base", "suite"], sort=False):
        experts = part[part.kind == "expert"].accuracy
        ref = {
            "base_model": float(part[part.kind == "base"].accuracy.iloc[0]),
            "experts_mean": float(experts.mean()),
            "best_expert": float(experts.max()),
        }
        merged = part[part.kind.isin(["group", "all"])]
        for method, m in merged.groupby("method", sort=False):
            g = float(m[m.kind == "group"].accuracy.iloc[0])
            a = float(m[m.kind == "all"].accuracy.iloc[0])
            out.append({"base": base, "suite": suite, "method": method, "group_merge": g, "all_merge": a,
                        "all_minus_group": a - g, **ref, "n_group": group_sizes[(base, suite)],
                        "n_all": sum(v for (b, _), v in group_sizes.items() if b == base),
                        "n_benchmarks": int(m.n_benchmarks.iloc[0])})
    return pd.DataFrame(out, columns=COLUMNS)
