"""Gather per-benchmark score files and merge manifests into tidy tables."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from wildmerge.provenance import read_json
from wildmerge.aggregate.scorecheck import check_task_versions, read_score_file

SCORE_COLUMNS = [
    "base", "model_id", "role", "method", "n", "subset_id", "members",
    "benchmark", "metric", "value", "stderr", "model_sha256",
]
NORM_COLUMNS = ["base", "model_id", "method", "n", "subset_id", "members", "l2_norm"]


def score_files(dirs: Iterable[str | Path], benchmarks: Sequence[str]) -> list[Path]:
    """The ``<benchmark>.json`` of every benchmark in every model's score folder (or each
    score file given as such), in order;
    a missing one is an error naming the folder (never averaged over fewer benchmarks)."""
    out: list[Path] = []
    for d in map(Path, dirs):
        if d.suffix == ".json":  # a score file itself
            if not d.is_file():
                raise FileNotFoundError(f"{d}: no such score file; rerun its evaluation")
            out.append(d)
            continue
        files = [d / f"{b}.json" for b in benchmarks]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{d}: no score file {missing}; rerun the workflow (with your usual "
                f"--configfile/--profile): a missing score is scored again"
            )
        out += files
    return out


def collect_scores(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One tidy row per score file; each file is validated first (ScoreFileError names it), and
    each benchmark's files must come from one version of its task (check_task_versions)."""
    rows, records = [], []
    for p in paths:
        r = read_score_file(p)
        records.append((p, r))
        rows.append(
            {
                "base": r["base"],
                "model_id": r["model_id"],
                "role": r["role"],
                "method": r.get("method", ""),
                "n": int(r["n"]),
                "subset_id": r.get("subset_id", ""),
                "members": ";".join(sorted(r.get("members", []))),
                "benchmark": r["benchmark"],
                "metric": r["metric"],
                "value": float(r["value"]),
                "stderr": r.get("stderr"),
                "model_sha256": r.get("model_sha256", ""),
            }
        )
    check_task_versions(records)  # one benchmark, one version of its task, in every table
    df = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    return df.sort_values(["base", "n", "method", "model_id", "benchmark"]).reset_index(drop=True)


def collect_norms(paths: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        m = read_json(p)
        rows.append(
            {
                "base": m["base"],
                "model_id": m["merge_id"],
                "method": m["method"],
                "n": int(m["n"]),
                "subset_id": m["subset_id"],
                "members": ";".join(sorted(m["members"])),
                "l2_norm": float(m["task_vector_l2"]),
            }
        )
    df = pd.DataFrame(rows, columns=NORM_COLUMNS)
    return df.sort_values(["base", "method", "n", "model_id"]).reset_index(drop=True)
