"""The SLURM profile, for real: a one-node SLURM on localhost (Debian slurm-wlm + munge,
fake GPU gres) runs the demo study through `snakemake --profile slurm`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from workflow_helpers import OFFLINE, REPO, SNAKEMAKE

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
GPU_RULES = {"merge", "evaluate", "merge_evaluate"}  # and the group jobs, "merge_eval"
CPU_RULES = {"demo_base", "demo_expert", "demo_tasks", "preflight", "geometry"}


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    if os.geteuid() != 0:
        reason = "starting slurmctld/slurmd needs root"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}; CI is set, where the SLURM profile must be tested, not skipped: run the tests as root")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm") / "cluster"
    up = subprocess.run(["bash", str(CLUSTER), "up", str(state)], capture_output=True, text=True, timeout=1200)
    if up.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "down", str(state)], capture_output=True, timeout=120)
        pytest.fail(f"local SLURM did not come up:\n{up.stdout}\n{up.stderr[-6000:]}")
    try:
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        down = subprocess.run(["bash", str(CLUSTER), "down", str(state)], capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


def _sbatch_recorder(bindir: Path, log: Path) -> None:
    """An `sbatch` first on PATH that records its arguments, then runs the real one."""
    real = shutil.which("sbatch")
    assert real, "sbatch not found"
    bindir.mkdir()
    wrapper = bindir / "sbatch"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)


def _rule_of(call: str) -> str:
    """The rule (or group) a submission is for, from the executor's --comment."""
    comment = call.split("--comment", 1)[1].split()[0].strip("'\"=")
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return "merge_eval" if name.startswith("merge_eval") and name != "merge_evaluate" else name


def test_demo_study_through_slurm_profile_equals_local_run(slurm_env, demo_run, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "sbatch.log"
    _sbatch_recorder(tmp_path / "bin", log)
    env = {**slurm_env, **OFFLINE, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{slurm_env['PATH']}"}
    cmd = SNAKEMAKE + [
        "--profile", "slurm",  # exactly what users type at the repo root
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(REPO / "config.yaml"),
        "--jobs", "2",
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1",
        "--default-resources", "mem_mb=2000", "runtime=30",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]

    local = pd.read_csv(demo_run / "results" / "demo" / "scores.csv", keep_default_na=False)
    remote = pd.read_csv(work / "results" / "demo" / "scores.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(remote, local)
    for table in ("table1", "table2", "table3"):
        assert (work / "results/demo/tables" / f"{table}.md").read_text() == (
            demo_run / "results/demo/tables" / f"{table}.md"
        ).read_text()

    calls = [c for c in log.read_text().splitlines() if c.strip()]
    by_rule: dict[str, list[str]] = {}
    for c in calls:
        by_rule.setdefault(_rule_of(c), []).append(c)
    assert "merge_evaluate" in by_rule and set(by_rule) & CPU_RULES, sorted(by_rule)
    for rule, rule_calls in by_rule.items():
        for c in rule_calls:
            asks_gpu = "--gpus" in c or "--gres=gpu" in c
            if rule in GPU_RULES or rule == "merge_eval":
                assert asks_gpu, f"{rule} submitted without a GPU request: {c}"
            else:
                assert not asks_gpu, f"CPU rule {rule} asked for a GPU: {c}"
            assert "--requeue" in c
    # merged weights are temporary: each merged model was made and scored in one job
    assert not any((work / "results/demo/models").glob("*/m-*"))
