"""How well the plan predicts (issue 25): run only the demo's n=2 subsets, calibrate the plan on
those jobs, plan the rest of the demo study (n=4 and n=8, and the aggregation again), run it, and
print predicted vs measured CPU-seconds, in total and per stage. Goal: within ±25 %.

    .venv/bin/python perf/plan_accuracy.py [--workdir DIR] [--cores 2]

CPU-seconds per job: the warm worker's log for the jobs forked from it (merges, evaluations),
the job's Snakemake benchmark file (cpu_time) for the others (wildmerge.plan.calibrate). The
plan counts each benchmark's forward tokens from its real items with the base's tokenizer.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO)}
WARM_LOG = ".snakemake/log/wildmerge-warm-jobs.jsonl"


def run(work: Path, config: Path, cores: int) -> float:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(config), "--cores", str(cores)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-6000:]}")
    return time.time() - t0


def measured_since(work: Path, t0: float, warm_log: Path) -> list:
    """The jobs (wildmerge.plan.calibrate.Measured, CPU-seconds) whose benchmark file was written after t0."""
    from wildmerge.plan.calibrate import measured_jobs

    results = work / "results" / "demo"
    fresh = {p.relative_to(results / "benchmarks").with_suffix("").parts
             for p in (results / "benchmarks").rglob("*.tsv") if p.stat().st_mtime >= t0}
    out = []
    for m in measured_jobs(str(results), cpu=True, warm_log=warm_log):
        key = tuple(x for x in (m.rule, m.base, m.model, m.record) if x)
        if m.rule == "evaluate_suite":
            key = (m.rule, m.base, m.record, m.model)
        if key in fresh:
            out.append(m)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary folder)")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wildmerge-plan-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    full = yaml.safe_load((REPO / "config.yaml").read_text())
    first = copy.deepcopy(full)
    first["subsets"]["sizes"] = [2]
    (work / "phase1.yaml").write_text(yaml.safe_dump(first))
    (work / "full.yaml").write_text(yaml.safe_dump(full))

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; work dir {work}")
    wall1 = run(work, work / "phase1.yaml", args.cores)
    shutil.copy(work / WARM_LOG, work / "warm-phase1.jsonl")
    print(f"phase 1 (the n=2 subsets, and everything they need): {wall1:.0f} s wall")

    os.chdir(work)  # the plan reads resources/ and results/ relative to the study's directory
    from wildmerge.plan.report import Plan
    from wildmerge.plan.throughput import Machine
    from wildmerge.study.plan import Study

    plan1 = Plan(Study(first), Machine.of("cpu"), measure=True)
    cal, pairs = plan1.calibrate(cpu=True, warm_log=str(work / "warm-phase1.jsonl"))
    plan1.apply_calibration(cal)
    fit_pred = sum(plan1.plan_job(jp.job).seconds for jp, _ in pairs)
    fit_meas = sum(t for _, t in pairs)
    print(f"calibrated on {cal['jobs']} finished jobs: predicted {fit_pred:.1f} s, measured {fit_meas:.1f} s CPU; "
          "efficiencies " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(cal["efficiency"].items()))
          + "; start-up " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(cal["startup"].items())))

    plan2 = Plan(Study(full), Machine.of("cpu"), measure=True, calibration=cal)
    remaining = plan2.remaining()
    t0 = time.time()
    wall2 = run(work, work / "full.yaml", args.cores)
    measured = measured_since(work, t0 - 1, work / WARM_LOG)
    print(f"phase 2 (the rest: n=4 and n=8, the aggregation again): {wall2:.0f} s wall, "
          f"{len(remaining)} jobs planned, {len(measured)} run")

    from wildmerge.plan.counts import STAGE_OF

    pred: dict[str, list[float]] = {}
    meas: dict[str, list[float]] = {}
    for jp in remaining:
        pred.setdefault(STAGE_OF.get(jp.job.rule, jp.job.rule), []).append(jp.seconds)
    for m in measured:
        meas.setdefault(STAGE_OF.get(m.rule, m.rule), []).append(m.seconds)
    print("\n| stage | jobs planned / run | predicted CPU s | measured CPU s | predicted / measured |")
    print("|---|---|---|---|---|")
    for stage in sorted(set(pred) | set(meas), key=lambda s: -sum(meas.get(s, [0]))):
        p, m = sum(pred.get(stage, [])), sum(meas.get(stage, []))
        ratio = f"{100 * (p / m - 1):+.0f} %" if m else "-"
        print(f"| {stage} | {len(pred.get(stage, []))} / {len(meas.get(stage, []))} | {p:.1f} | {m:.1f} | {ratio} |")
    p, m = sum(map(sum, pred.values())), sum(map(sum, meas.values()))
    print(f"| **total** | {len(remaining)} / {len(measured)} | {p:.1f} | {m:.1f} | **{100 * (p / m - 1):+.0f} %** |")
    ok = abs(p / m - 1) <= 0.25
    print(f"\ngoal ±25 % on the total: {'met' if ok else 'NOT met'}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
