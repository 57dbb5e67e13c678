"""Evaluation budget (issue 13): a seeded sample of each benchmark's items, stratified by
sub-task, the same for every model, scored through lm-eval's ``samples`` (item indices, never
``limit``), with the per-item outcomes already scored reused when the budget grows.

* ``evaluation.budget``: ``null`` (all items), a fraction in (0, 1] written with a decimal
  point (``0.25``), or a number of items per benchmark (``{items: 500}``), split over the
  benchmark's leaf tasks in proportion to their size (at least one item each). A bare integer
  is an error (:func:`check_budget`). In the code (and the score key) a budget is the float
  fraction or the int number of items (:data:`Budget`).
* Sample (:func:`sample_ids`): per leaf task, the first ``n_t`` indices of a permutation of
  ``range(N_t)`` seeded by (``evaluation.seed``, task, ``N_t``). It depends on no model, and a
  larger budget takes a longer prefix of the same permutation: its sample contains the
  smaller one's.
* Reuse (:func:`pool_path`): each job keeps every item outcome it scored in
  ``items/<base>/<model>/.pool/<benchmark>.<outcome key>.parquet`` (the outcome key is the
  score key without the budget: same model, task, few-shot, seed, dtype). A later job of the
  same model and outcome key scores only the sampled items the pool lacks (Snakemake deletes a
  job's declared outputs before it runs; the pool is not one of them).
* Value: a task's value is the mean of its sampled items' outcomes; a group's the mean of its
  leaf tasks' values, weighted by their full sizes when the group weights by size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

#: A budget as the code uses it: a fraction (float) or a number of items per benchmark (int).
Budget = float | int | None


def check_budget(budget: Any, key: str = "evaluation.budget") -> Budget:
    """The config's ``evaluation.budget`` as a :data:`Budget`: ``null`` -> None, a fraction
    with a decimal point (a float in (0, 1]) -> that float, ``{items: N}`` -> the int N.
    A bare integer is refused (``1`` reads as "100 %" to some and "one item" to others);
    ValueError naming ``key`` for it and for anything else."""
    if budget is None:
        return None
    if isinstance(budget, Mapping):
        n = budget.get("items")
        if set(budget) != {"items"} or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{key}: a number of items is written {{items: N}} with an integer N >= 1, got {budget!r}")
        return n
    if isinstance(budget, bool):
        raise ValueError(f"{key}: expected a fraction (0.25) or {{items: N}}, got {budget!r}")
    if isinstance(budget, int):
        whole = " (or 1.0 for every item)" if budget == 1 else ""
        raise ValueError(
            f"{key}: {budget} is a bare integer, which could mean a fraction or a number of items: "
            f"write a fraction with a decimal point, e.g. `0.25`{whole}, or a number of items per "
            f"benchmark as `{{items: {budget}}}`"
        )
    if isinstance(budget, float) and 0.0 < budget <= 1.0:
        return budget
    raise ValueError(
        f"{key}: a fraction must be in (0, 1], got {budget!r}"
        + (f"; for {budget:g} items per benchmark write `{{items: {int(budget)}}}`" if isinstance(budget, float)
           and budget > 1 and budget == int(budget) else "")
    )


def _as_budget(budget: Budget | Mapping[str, Any]) -> Budget:
    """A :data:`Budget` (int = items, checked) or the config's form (:func:`check_budget`)."""
    if isinstance(budget, int) and not isinstance(budget, bool):
        if budget < 1:
            raise ValueError(f"evaluation.budget: a number of items must be >= 1, got {budget}")
        return budget
    return check_budget(budget)


def allocate(sizes: Mapping[str, int], budget: Budget | Mapping[str, Any]) -> dict[str, int]:
    """Items per leaf task for ``budget`` (stratified: proportional to the task sizes)."""
    budget = _as_budget(budget)
    if budget is None or (isinstance(budget, float) and budget >= 1.0):
        return dict(sizes)
    total = sum(sizes.values())
    want = budget * total if isinstance(budget, float) else min(float(budget), float(total))
    exact = {t: want * n / total for t, n in sizes.items()}
    out = {t: min(n, max(1, math.floor(exact[t]))) for t, n in sizes.items()}
    # largest remainders get the items still to place (never above a task's size)
    left = int(round(want)) - sum(out.values())
    for t in sorted(sizes, key=lambda t: (-(exact[t] - math.floor(exact[t])), t)):
        if left <= 0:
            break
        if out[t] < sizes[t]:
            out[t] += 1
            left -= 1
    return out


def _permutation(n: int, seed: int, task: str) -> np.ndarray:
    digest = hashlib.sha256(json.dumps(["budget", int(seed), task, int(n)]).encode()).digest()
    return np.random.default_rng(np.frombuffer(digest[:16], dtype=np.uint32).tolist()).permutation(n)


def sample_ids(sizes: Mapping[str, int], budget: Budget, seed: int) -> dict[str, list[int]]:
    """{leaf task: sorted item indices}: the budget's seeded stratified sample."""
    counts = allocate(sizes, budget)
    return {t: sorted(int(i) for i in _permutation(sizes[t], seed, t)[: counts[t]]) for t in sorted(sizes)}


def ids_sha256(sample: Mapping[str, Sequence[int]]) -> str:
    return hashlib.sha256(json.dumps({t: list(v) for t, v in sorted(sample.items())}).encode()).hexdigest()


def task_structure(task_manager: Any, name: str) -> tuple[dict[str, int], bool]:
    """({leaf task: number of evaluation items}, whether the benchmark weights tasks by size)
    of one benchmark, from lm-eval's task objects (loads the datasets, no model)."""
    from lm_eval.tasks import get_task_dict

    sizes: dict[str, int] = {}
    weight_by_size = True

    def walk(d: Mapping[Any, Any], top: bool) -> None:
        nonlocal weight_by_size
        for key, value in d.items():
            if isinstance(value, Mapping):
                agg = (getattr(key, "config", None) or {}).get("aggregate_metric_list") or []
                if top and agg:
                    weight_by_size = bool(agg[0].get("weight_by_size", True))
                walk(value, False)
            else:
                sizes[str(key) if isinstance(key, str) else value.config.task] = len(value.eval_docs)

    walk(get_task_dict([name], task_manager), True)
    return sizes, weight_by_size


def budget_value(frame: pd.DataFrame, sizes: Mapping[str, int], weight_by_size: bool) -> tuple[float, float]:
    """(value, stderr) of a benchmark from its sampled items' outcomes (see module doc)."""
    per_task = frame.groupby("task")["correct"].agg(["mean", "var", "size"])
    if len(per_task) == 1:
        r = per_task.iloc[0]
        return float(r["mean"]), float(math.sqrt(r["var"] / r["size"])) if r["size"] > 1 else float("nan")
    w = np.array([sizes[t] if weight_by_size else 1.0 for t in per_task.index], dtype=float)
    w /= w.sum()
    se2 = np.nan_to_num((per_task["var"] / per_task["size"]).to_numpy(dtype=float))
    return float(w @ per_task["mean"].to_numpy(dtype=float)), float(math.sqrt((w**2) @ se2))


def pool_path(items_file: str | Path, outcome_key: str) -> Path:
    p = Path(items_file)
    return p.parent / ".pool" / f"{p.stem}.{outcome_key}.parquet"


def read_pool(path: Path | None) -> pd.DataFrame:
    from wildmerge.evaluation.items import ITEM_COLUMNS, read_items

    if path is None or not path.is_file():
        return pd.DataFrame(columns=ITEM_COLUMNS)
    try:
        return read_items(path)
    except Exception:  # a broken pool only costs its reuse
        return pd.DataFrame(columns=ITEM_COLUMNS)


def update_pool(path: Path | None, old: pd.DataFrame, new: pd.DataFrame, meta: Mapping[str, Any]) -> None:
    """Keep every outcome scored so far (old and new) in the pool file."""
    from wildmerge.evaluation.items import sort_items, write_items

    if path is None or new.empty:
        return
    union = sort_items(pd.concat([new, old], ignore_index=True))
    write_items(path, union, {**meta, "pool": True})


def keep_full_outcomes(items_file: Path, pool: Path | None) -> None:
    """After a full (unbudgeted) evaluation: its per-item file becomes the pool, as a hard
    link (no second copy on disk), so a budget set later reuses every outcome."""
    if pool is None or not items_file.is_file():
        return
    pool.parent.mkdir(parents=True, exist_ok=True)
    tmp = pool.with_name(f".{pool.name}.{os.getpid()}.tmp")
    try:
        os.link(items_file, tmp)
    except OSError:  # another file system: a copy
        import shutil

        shutil.copyfile(items_file, tmp)
    os.replace(tmp, pool)


def requested(sample: Mapping[str, Sequence[int]], pool: pd.DataFrame) -> tuple[dict[str, list[int]], int]:
    """({leaf task: indices to score now}, items reused from the pool). A task with nothing
    new still gets its first sampled index (lm-eval reads an empty list as "every item")."""
    have = set(pool["item_id"]) if len(pool) else set()
    out: dict[str, list[int]] = {}
    reused = 0
    for task, ids in sample.items():
        todo = [i for i in ids if f"{task}/{i}" not in have]
        reused += len(ids) - len(todo)
        out[task] = todo or list(ids[:1])
    return out, reused


def budget_frame(sample: Mapping[str, Sequence[int]], new: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """The sampled items' outcomes: freshly scored ones, else the pool's."""
    from wildmerge.evaluation.items import sort_items

    wanted = {f"{t}/{i}" for t, ids in sample.items() for i in ids}
    both = sort_items(pd.concat([new, pool], ignore_index=True))
    out = both[both["item_id"].isin(wanted)].reset_index(drop=True)
    missing = len(wanted) - len(out)
    if missing:
        raise RuntimeError(f"{missing} sampled items have no outcome after scoring (lm-eval skipped them?)")
    return out


@dataclass
class BenchmarkPlan:
    """What one budgeted benchmark evaluation scores, and what it reuses."""

    name: str
    sizes: dict[str, int]
    weight_by_size: bool
    sample: dict[str, list[int]]
    pool_file: Path | None
    pool: pd.DataFrame
    request: dict[str, list[int]]
    reused: int


def plan_benchmark(task_manager: Any, name: str, budget: Budget, seed: int, pool_file: Path | None) -> BenchmarkPlan:
    sizes, by_size = task_structure(task_manager, name)
    sample = sample_ids(sizes, budget, seed)
    pool = read_pool(pool_file)
    request, reused = requested(sample, pool)
    return BenchmarkPlan(name, sizes, by_size, sample, pool_file, pool, request, reused)


def finish_benchmark(plan: BenchmarkPlan, new: pd.DataFrame, budget: Budget, seed: int,
                     meta: Mapping[str, Any]) -> tuple[pd.DataFrame, float, float, dict[str, Any]]:
    """(sampled items' outcomes, value, stderr, what the score file records about the budget);
    the pool keeps the new outcomes."""
    frame = budget_frame(plan.sample, new, plan.pool)
    value, stderr = budget_value(frame, plan.sizes, plan.weight_by_size)
    fresh = new[~new["item_id"].isin(set(plan.pool["item_id"]))] if len(plan.pool) else new
    update_pool(plan.pool_file, plan.pool, fresh, meta)
    info = {
        "budget": budget,
        "seed": seed,
        "n_items": int(len(frame)),
        "n_total": int(sum(plan.sizes.values())),
        "per_task": {t: len(v) for t, v in plan.sample.items()},
        "task_sizes": dict(plan.sizes),
        "weight_by_size": plan.weight_by_size,
        "ids_sha256": ids_sha256(plan.sample),
        "sample": plan.sample,
        "reused": int(plan.reused),
        "scored": int(len(fresh)),
        # loglikelihood requests (one per choice) of the items scored by this job
        "requests": int(fresh["logliks"].map(len).sum()) if len(fresh) else 0,
    }
    return frame, value, stderr, info
