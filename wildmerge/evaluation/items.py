"""Per-item outcomes of one (model, benchmark): a compact Parquet file next to the score file.

One row per scored item: ``task`` (the leaf lm-eval task; a group benchmark's subtask),
``doc_id`` (the item's index in that task's evaluation split, what lm-eval's ``samples``
selects), ``item_id`` (``"<task>/<doc_id>"``: the same item has the same id for every model
of a study), ``correct`` (the benchmark's metric for this item, 0/1 for accuracy),
``logliks`` (per-choice log-likelihoods for multiple choice; empty otherwise) and
``doc_hash`` (16 hex digits of lm-eval's hash of the document, to check that two models saw
the same item). The file's key-value metadata holds ``wildmerge`` = JSON provenance (the
same as the score file's, with the score key).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

ITEM_COLUMNS = ["task", "doc_id", "item_id", "correct", "logliks", "doc_hash"]
META_KEY = b"wildmerge"


def leaf_tasks(name: str, group_subtasks: Mapping[str, Sequence[str]], logged: Iterable[str]) -> list[str]:
    """The leaf tasks (those lm-eval logged samples for) a benchmark consists of, sorted."""
    logged = set(logged)
    out: list[str] = []
    todo, seen = [name], set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in logged:
            out.append(t)
        todo += list(group_subtasks.get(t, []))
    return sorted(out)


def _loglik(resp: Any) -> float | None:
    """A loglikelihood response is (ll, is_greedy), sometimes wrapped in a list."""
    while isinstance(resp, (list, tuple)) and resp and isinstance(resp[0], (list, tuple)):
        resp = resp[0]
    if isinstance(resp, (list, tuple)) and resp and isinstance(resp[0], (int, float)):
        return float(resp[0])
    if isinstance(resp, (int, float)) and not isinstance(resp, bool):
        return float(resp)
    return None


def item_frame(samples: Mapping[str, Sequence[Mapping[str, Any]]], tasks: Sequence[str], metric: str,
               filt: str) -> pd.DataFrame:
    """Per-item rows of ``tasks`` from lm-eval's logged samples (``res["samples"]``), for the
    reported ``metric`` under filter ``filt``."""
    rows = []
    for task in tasks:
        for s in samples.get(task, []):
            if s.get("filter", filt) != filt or metric not in s:
                continue
            lls = [_loglik(r) for r in s.get("filtered_resps", [])]
            rows.append(
                {
                    "task": task,
                    "doc_id": int(s["doc_id"]),
                    "item_id": f"{task}/{int(s['doc_id'])}",
                    "correct": float(s[metric]),
                    "logliks": [x for x in lls if x is not None] if all(x is not None for x in lls) else [],
                    "doc_hash": str(s.get("doc_hash", ""))[:16],
                }
            )
    df = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    return sort_items(df)


def sort_items(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["task", "doc_id"], kind="stable").drop_duplicates("item_id").reset_index(drop=True)


def write_items(path: str | Path, df: pd.DataFrame, meta: Mapping[str, Any]) -> None:
    """Write ``df`` (ITEM_COLUMNS) atomically with ``meta`` as JSON in the file metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("task", pa.dictionary(pa.int32(), pa.string())),
            ("doc_id", pa.int32()),
            ("item_id", pa.string()),
            ("correct", pa.float32()),
            ("logliks", pa.list_(pa.float32())),
            ("doc_hash", pa.string()),
        ],
        metadata={META_KEY: json.dumps(meta, sort_keys=True, default=str).encode()},
    )
    table = pa.Table.from_pandas(df[ITEM_COLUMNS], schema=schema, preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def read_items(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    df = pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
    if "task" in df:
        df["task"] = df["task"].astype(str)
    return df


def read_items_meta(path: str | Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(META_KEY, b"{}"))
