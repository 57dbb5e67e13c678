"""The SLURM profile, for real: a one-node SLURM on localhost (Debian slurm-wlm + munge,
fake GPU gres) runs the demo study through `snakemake --profile slurm` (merged-model and
checkpoint evaluations as job arrays), and the profile's `jobs` cap holds on the cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
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


class _Squeue:
    """Polls `squeue` while a run goes on: every job and array task seen (`<id>_<index>` for a
    task) with its comment (the executor's `rule_<name>...`), and the most jobs queued at once
    (pending or running; an array's tasks one each). The cluster has no slurmdbd, so no sacct."""

    def __init__(self, env: dict[str, str], interval: float = 0.5) -> None:
        self.env, self.interval = env, interval
        self.seen: dict[str, str] = {}
        self.max_queued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _squeue(self, *args: str) -> list[str]:
        out = subprocess.run(["squeue", "-h", "-r", *args], env=self.env, capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines() if out.returncode == 0 else []

    def _poll(self) -> None:
        while not self._stop.is_set():
            for line in self._squeue("-t", "all", "-o", "%i|%k"):
                job, _, comment = line.partition("|")
                self.seen[job.strip()] = comment.strip()
            self.max_queued = max(self.max_queued, len(self._squeue("-t", "PD,R", "-o", "%i")))
            self._stop.wait(self.interval)

    def __enter__(self) -> "_Squeue":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def array_tasks(self, rule: str) -> set[str]:
        """The array tasks (`<id>_<index>`) squeue showed for `rule`."""
        return {j for j, c in self.seen.items() if re.fullmatch(r"\d+_\d+", j) and _rule_of(f"--comment {c}") == rule}


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
    # job arrays on (README: Job arrays), with the profile's own `jobs` cap: above the demo's job
    # count, as plugin 2.8.0's arrays need (the node itself runs two jobs at a time)
    env = {**slurm_env, **OFFLINE, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{slurm_env['PATH']}",
           "WILDMERGE_SLURM_ARRAYS": "1"}
    cmd = SNAKEMAKE + [
        "--profile", "slurm",  # exactly what users type at the repo root
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(REPO / "config.yaml"),
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1",
        "--default-resources", "mem_mb=2000", "runtime=30",
    ]
    with _Squeue(slurm_env) as squeue:
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
    # merged models were submitted as job arrays: sbatch --array, and squeue showed their tasks
    arrays = {rule: [c for c in rule_calls if " --array=" in c] for rule, rule_calls in by_rule.items()}
    assert arrays["merge_evaluate"], "no merge_evaluate job array was submitted"
    other = {r for r, a in arrays.items() if a} - {"merge_evaluate", "evaluate"}
    assert not other, f"job arrays for rules the profile does not name: {sorted(other)}"
    tasks = squeue.array_tasks("merge_evaluate")
    assert len(tasks) >= 2, f"squeue showed no merge_evaluate array tasks: {sorted(squeue.seen.items())[:20]}"
    print(f"array tasks seen: merge_evaluate {len(tasks)}, evaluate {len(squeue.array_tasks('evaluate'))}; "
          f"sbatch calls: {({r: (len(c), len(arrays[r])) for r, c in by_rule.items()})}; max queued {squeue.max_queued}")
    # merged weights are temporary: each merged model was made and scored in one job
    assert not any((work / "results/demo/models").glob("*/m-*"))


def test_profile_jobs_cap_holds_on_the_cluster(slurm_env, tmp_path):
    """`jobs` caps the jobs queued at once (README: Jobs queued at once); set here, as the README
    says, in a site profile layered on the repository's one."""
    import yaml

    assert isinstance(yaml.safe_load((REPO / "profiles/slurm/config.v9+.yaml").read_text())["jobs"], int)
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text("jobs: 2\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(
        'rule all:\n    input: expand("out/{i}.txt", i=range(6))\n\n'
        'rule work:\n    output: "out/{i}.txt"\n    resources: mem_mb=100, runtime=5\n'
        '    shell: "sleep 4; echo $SLURM_JOB_ID > {output}"\n'
    )
    cmd = SNAKEMAKE + [
        "--profile", "slurm", "--profile", str(site),
        "--snakefile", str(work / "Snakefile"), "--directory", str(work),
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1",
    ]
    t0 = time.time()
    with _Squeue(slurm_env, interval=0.2) as squeue:
        proc = subprocess.run(cmd, cwd=REPO, env={**slurm_env, **OFFLINE}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert len(list((work / "out").glob("*.txt"))) == 6
    assert squeue.max_queued == 2, f"at most {squeue.max_queued} jobs queued at once, want 2 ({time.time() - t0:.0f} s)"
