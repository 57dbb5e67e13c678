"""Planned runtimes reach SLURM (issue 25): with `resources.planned` in the config, each
merge_evaluate and evaluate job is submitted with its own planned runtime (`sbatch -t`), which
`squeue` shows as the job's time limit, on the suite's one-node SLURM (tests/slurm/cluster.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading

import pytest
import yaml

from workflow_helpers import OFFLINE, REPO, SNAKEMAKE

pytestmark = pytest.mark.slow  # a workflow run on the cluster (not in make test-quick)
PLANNED = {"gpu": "cpu", "safety": 1000.0, "floor_min": 1, "mem_safety": 0.2, "mem_floor_mb": 500}


def _small_demo() -> dict:
    """The demo with 2 experts, one n=2 subset, TA and TSV-M, 2 benchmarks: few jobs."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["bases"]["tiny-llama"]["experts"] = {"arith": "demo:arith", "compare": "demo:compare"}
    cfg["subsets"] = {"sizes": [2], "per_size": 1, "seed": 0}
    cfg["methods"] = {k: v for k, v in cfg["methods"].items() if k in ("ta", "tsv")}
    cfg["tables"] = {"table1": ["ta"], "table3": ["tsv"]}
    cfg["evaluation"]["benchmarks"] = ["demo_arith", "demo_compare"]
    cfg["resources"] = {"planned": dict(PLANNED)}
    return cfg


def _minutes(limit: str) -> int:
    """squeue's %l ([days-]hours:minutes:seconds, or minutes:seconds) in minutes."""
    days, _, rest = limit.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + (1 if parts[2] else 0)


def test_planned_runtimes_reach_sbatch(slurm_env, demo_run, tmp_path, monkeypatch):
    from wildmerge.plan.runtimes import PlannedResources
    from wildmerge.study.plan import Study

    work = tmp_path / "work"
    # the session's local demo run trained the checkpoints: the cluster starts from them
    shutil.copytree(demo_run / "resources" / "demo", work / "resources" / "demo")
    cfg = _small_demo()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    # what the DAG build plans: the same study, nothing scored yet
    monkeypatch.chdir(work)
    study = Study(cfg)
    planner = PlannedResources(study, study.config["resources"]["planned"])
    merges = {m.merge_id: m.method for m in study.bases["tiny-llama"].merges.values()}
    want = {mid: planner.runtime("merge_evaluate", "tiny-llama", mid) for mid in merges}
    want |= {m: planner.runtime("evaluate", "tiny-llama", m) for m in ("base", "expert-arith", "expert-compare")}
    assert len(set(want[m] for m in merges)) == 2, f"TA and TSV-M planned alike: {want}"

    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    (bindir / "sbatch").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{shutil.which("sbatch")}" "$@"\n')
    (bindir / "sbatch").chmod(0o755)
    limits: dict[str, str] = {}  # SLURM job id -> "comment|time limit"
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%.400k|%l"], env=slurm_env,
                                 capture_output=True, text=True, timeout=30)
            for line in out.stdout.splitlines():
                job, _, rest = line.partition("|")
                limits[job.strip()] = rest.strip()
            stop.wait(0.5)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    cmd = SNAKEMAKE + [
        "--profile", "slurm", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(tmp_path / "config.yaml"),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1", "--default-resources", "mem_mb=1000", "runtime=30",
    ]
    env = {**slurm_env, **OFFLINE, "PATH": f"{bindir}{os.pathsep}{slurm_env['PATH']}"}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]

    got: dict[str, int] = {}
    for call in log.read_text().splitlines():
        rule = re.search(r"rule_(merge_evaluate|evaluate)_wildcards", call)
        if not rule:
            continue
        model = re.search(r"model=(base|expert-[\w.-]+|m-[0-9a-f]{12})", call).group(1)
        got[model] = int(re.search(r" -t '?(\d+)'?", call).group(1))
    assert got == want, f"sbatch -t per model {got}, planned {want}"
    # and SLURM holds each job to it: squeue's time limit of the merged models' jobs
    shown = {}
    for comment, _, limit in (v.rpartition("|") for v in limits.values()):
        merge = re.search(r"m-[0-9a-f]{12}", comment)
        if "merge_evaluate" in comment and merge:
            shown[merge.group(0)] = _minutes(limit)
    assert shown and all(shown[m] == want[m] for m in shown), f"squeue time limits {shown}, planned {want}: {limits}"
    print(f"planned runtimes (min): {want}; squeue: {shown}")
