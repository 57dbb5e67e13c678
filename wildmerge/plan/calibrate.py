"""Calibration from what has run: each finished job's measured time against its planned work.

Measured times come from the Snakemake ``benchmark:`` file of each job (``s``: wall seconds,
``cpu_time``: CPU seconds of the job process) and, for local runs, the warm worker's job log
(``.snakemake/log/wildmerge-warm-jobs.jsonl``: the forked child's CPU and wall seconds; the job's
benchmark file measures only the process that waits for it, wildmerge/warm.py).

The fit: measured ≈ Σ_kinds multiplier_k × planned seconds_k + a start-up per rule, by
non-negative least squares with a weak pull of each multiplier towards 1. A kind of work whose
planned seconds do not vary among the finished jobs of any rule (the demo's n=2 merges all read
three checkpoints of one size) cannot be told apart from the start-up: it keeps its prior. A
kind's calibrated efficiency is its prior efficiency / its multiplier.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

WARM_LOG = ".snakemake/log/wildmerge-warm-jobs.jsonl"


@dataclass(frozen=True)
class Measured:
    rule: str
    base: str
    model: str
    record: str
    seconds: float


def _tsv(path: Path) -> dict[str, str] | None:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError:
        return None
    return rows[-1] if rows else None


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return 0.0
    return v if v == v else 0.0  # NaN (a job too short to sample) -> 0


def benchmark_jobs(results: str, cpu: bool) -> list[Measured]:
    """Every job with a benchmark file under ``<results>/benchmarks/<rule>/...``."""
    root = Path(results) / "benchmarks"
    out = []
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        parts = path.relative_to(root).with_suffix("").parts
        row = _tsv(path)
        if row is None:
            continue
        rule = parts[0]
        base = parts[1] if len(parts) > 2 else ""
        if rule in ("evaluate", "merge_evaluate") and len(parts) == 4:
            model, record = parts[2], parts[3]
        elif rule == "evaluate_suite" and len(parts) == 4:
            model, record = parts[3], parts[2]  # record: the suite
        elif len(parts) == 3:  # merge/<base>/<merge>, preflight/<base>/<checkpoint>
            model, record = parts[2], ""
        elif len(parts) == 2 and rule == "geometry":  # geometry/<base>
            model, record = "", ""
        else:  # <rule>/<name> (fetches, a sweep) or <rule> (the aggregation)
            base, model, record = "", (parts[1] if len(parts) == 2 else ""), ""
        out.append(Measured(rule, base, model, record, _num(row.get("cpu_time" if cpu else "s"))))
    return out


def warm_jobs(log: str | Path = WARM_LOG) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    """(rule, base, model, record) -> (CPU s, wall s) of the jobs run in the warm worker."""
    out = {}
    try:
        lines = Path(log).read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        wc = rec.get("wildcards") or {}
        model = wc.get("model") or wc.get("merge") or wc.get("expert") or ""
        key = (rec.get("rule", ""), wc.get("base", ""), model, wc.get("record") or wc.get("suite") or "")
        out[key] = (float(rec.get("cpu_s", 0.0)), float(rec.get("wall_s", 0.0)))
    return out


def measured_jobs(results: str, cpu: bool, warm_log: str | Path | None = WARM_LOG) -> list[Measured]:
    """Finished jobs and their measured seconds (CPU or wall): a warm-run job's child's, plus
    what its own (waiting) process used."""
    warm = warm_jobs(warm_log) if warm_log else {}
    out = []
    for m in benchmark_jobs(results, cpu):
        w = warm.get((m.rule, m.base, m.model, m.record))
        if w is not None:
            m = Measured(m.rule, m.base, m.model, m.record, (m.seconds + w[0]) if cpu else max(m.seconds, w[1]))
        out.append(m)
    return out


def scored_benchmarks(results: str, m: Measured) -> list[str] | None:
    """The benchmarks an evaluation job scored, from its record (None when it is gone)."""
    if m.rule not in ("evaluate", "merge_evaluate"):
        return None
    try:
        rec = json.loads((Path(results) / "evaluations" / m.base / m.model / f"{m.record}.json").read_text())
    except (OSError, ValueError):
        return None
    return sorted(rec.get("scores") or {})


@dataclass
class Fit:
    multipliers: dict[str, float]  # kind -> measured / planned at the prior efficiency
    startup: dict[str, float]  # rule -> seconds per job
    jobs: int


def fit(rows: Iterable[tuple[str, Mapping[str, float], float]], prior_startup: float, pull: float = 0.05) -> Fit:
    """``rows``: (rule, planned seconds per kind at the prior efficiencies, without start-up;
    measured seconds). Non-negative least squares with a pull of each multiplier to 1 and of
    each rule's start-up to ``prior_startup``, weighted by the size of its column."""
    rows = list(rows)
    if not rows:
        return Fit({}, {}, 0)
    rules = sorted({r for r, _, _ in rows})
    # a kind whose planned seconds are the same in every finished job of each rule cannot be told
    # apart from that rule's start-up: it keeps its prior (multiplier 1), the start-up takes the rest
    kinds, fixed = [], []
    for k in sorted({k for _, x, _ in rows for k, v in x.items() if v > 0}):
        varies = False
        for r in rules:
            vals = [x.get(k, 0.0) for rr, x, _ in rows if rr == r]
            varies |= max(vals) > 1.01 * min(vals)
        (kinds if varies else fixed).append(k)
    rows = [(r, x, m - sum(x.get(k, 0.0) for k in fixed)) for r, x, m in rows]
    cols = [("k", k) for k in kinds] + [("r", r) for r in rules]
    a = np.zeros((len(rows), len(cols)))
    t = np.array([m for _, _, m in rows], dtype=float)
    for i, (rule, x, _) in enumerate(rows):
        for j, (what, name) in enumerate(cols):
            a[i, j] = x.get(name, 0.0) if what == "k" else (prior_startup if name == rule else 0.0)
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    pull_rows = np.diag(pull * norms)
    from scipy.optimize import nnls

    coef, _ = nnls(np.vstack([a, pull_rows]), np.concatenate([t, pull * norms]))
    mult = {name: float(coef[j]) for j, (what, name) in enumerate(cols) if what == "k"} | {k: 1.0 for k in fixed}
    start = {name: float(coef[j]) * prior_startup for j, (what, name) in enumerate(cols) if what == "r"}
    return Fit(mult, start, len(rows))
