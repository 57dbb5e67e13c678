"""The SLURM profile, for real: a one-node SLURM on localhost (Debian slurm-wlm + munge,
fake GPU gres) runs the demo study (one subset per size: all 7 methods, 14 merged models) and a
small Appendix-E study through `snakemake --profile slurm` with the profile's own default resources, partition and account from the environment
variables the README names (merged-model and checkpoint evaluations as job arrays, each
homogeneous merge with its suite evaluations as one `merge_eval` group job), and the profile's
`jobs` cap holds on the cluster."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from workflow_helpers import OFFLINE, REPO, SNAKEMAKE

PROFILE = REPO / "profiles" / "slurm" / "config.v9+.yaml"
GPU_RULES = {"merge", "evaluate", "merge_evaluate", "evaluate_suite"}  # and the group jobs, "merge_eval"
CPU_RULES = {"preflight", "geometry"}
# the test cluster's second partition, not its default (tests/slurm/cluster.sh), so a job lands
# there only if it asked for it; any account is taken: the cluster has no slurmdbd
PARTITION, ACCOUNT = "gpu", "wildmerge-test"
# The demo with one subset per size, n = 2 and all 8 (every method: 14 merged models, where the
# local demo has 35; the SLURM mechanics are the same for each), and Appendix E, as small as it
# gets on the demo: two groups of two experts from the main pool (no
# extra expert to train), one method: 3 merges (rule `merge`), each run with its suite
# evaluations as one `merge_eval` group job, and the base and experts on the suites
HOMOGENEOUS = """\
subsets: {sizes: [2, all], per_size: 1}
homogeneous:
  tiny-llama:
    methods: [ta]
    groups:
      memory:
        experts: {facts: "demo:facts", antonym: "demo:antonym"}
        benchmarks: [demo_facts]
      reasoning:
        experts: {arith: "demo:arith", compare: "demo:compare"}
        benchmarks: [demo_arith]
"""


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
    (pending or running; an array's tasks one each); and `scontrol show job`: what SLURM holds
    for each job (partition, account, time limit, memory, GPUs, log file). The cluster has no
    slurmdbd, so no sacct: finished jobs stay visible for MinJobAge (300 s)."""

    def __init__(self, env: dict[str, str], interval: float = 0.5) -> None:
        self.env, self.interval = env, interval
        self.seen: dict[str, str] = {}
        self.records: dict[str, dict[str, str]] = {}
        self.max_queued = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _run(self, *cmd: str) -> list[str]:
        """A client command's output lines; none when it fails or hangs (a busy slurmctld): the
        poll goes on, so no job is missed while it stays visible (MinJobAge)."""
        try:
            out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return []
        return out.stdout.splitlines() if out.returncode == 0 else []

    def _squeue(self, *args: str) -> list[str]:
        return self._run("squeue", "-h", "-r", *args)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for line in self._squeue("-t", "all", "-o", "%i|%k"):
                job, _, comment = line.partition("|")
                self.seen[job.strip()] = comment.strip()
            self.max_queued = max(self.max_queued, len(self._squeue("-t", "PD,R", "-o", "%i")))
            self._scontrol()
            self._stop.wait(self.interval)

    def _scontrol(self) -> None:
        for line in self._run("scontrol", "-o", "show", "job"):
            rec = dict(re.findall(r"(\S+?)=(\S*)", line))
            if "JobId" in rec:  # an array task as squeue names it, `<id>_<index>`
                key = f"{rec['ArrayJobId']}_{rec['ArrayTaskId']}" if "ArrayTaskId" in rec else rec["JobId"]
                self.records[key] = rec

    def __enter__(self) -> "_Squeue":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._scontrol()  # the last jobs' final state

    def array_tasks(self, rule: str) -> set[str]:
        """The array tasks (`<id>_<index>`) squeue showed for `rule`."""
        return {j for j, c in self.seen.items() if re.fullmatch(r"\d+_\d+", j) and _rule_of(f"--comment {c}") == rule}


def _rule_of(call: str) -> str:
    """The rule (or group) a submission is for, from the executor's --comment."""
    comment = call.split("--comment", 1)[1].split()[0].strip("'\"=")
    name = comment.removeprefix("rule_").split("_wildcards_")[0]
    return "merge_eval" if name.startswith("merge_eval") and name != "merge_evaluate" else name


def _profile_default_resources(monkeypatch, **environ: str) -> dict:
    """The profile's default-resources as Snakemake reads them (a YTE template), under `environ`."""
    from yte import process_yaml

    for var in ("WILDMERGE_SLURM_PARTITION", "WILDMERGE_SLURM_ACCOUNT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    with PROFILE.open() as f:
        return process_yaml(f, require_use_yte=True)["default-resources"]


def _minutes(limit: str) -> int:
    """SLURM's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, sec = map(int, hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (sec > 0)


def _mb(mem: str) -> int:
    """SLURM's MinMemoryNode (e.g. 4000M, 8G) in MB."""
    return int(float(mem[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[mem[-1]])


def _gpus(record: dict[str, str]) -> int:
    """GPUs a job asked for (--gpus: TresPerJob, --gres: TresPerNode; no slurmdbd, so not in TRES)."""
    found = re.findall(r"gpu[:=](\d+)", record.get("TresPerJob", "") + " " + record.get("TresPerNode", ""))
    return sum(map(int, found))


def _jobs_run(slurm_log: Path) -> set[tuple[str, str]]:
    """(rule, wildcards) of every Snakemake job that a SLURM job's log shows run inside it."""
    ran, rule = set(), None
    for line in slurm_log.read_text(errors="replace").splitlines():
        s = line.strip()
        if m := re.fullmatch(r"(?:local)?rule (\w+):", s):
            rule = m.group(1)
        elif rule and s.startswith("wildcards:"):
            ran.add((rule, s.removeprefix("wildcards:").strip()))
            rule = None
    return ran


def test_demo_study_through_slurm_profile_equals_local_run(slurm_env, demo_run, tmp_path, monkeypatch):
    # the profile sets partition and account only from the README's variables
    assert not {"slurm_partition", "slurm_account"} & set(_profile_default_resources(monkeypatch))
    defaults = _profile_default_resources(
        monkeypatch, WILDMERGE_SLURM_PARTITION=PARTITION, WILDMERGE_SLURM_ACCOUNT=ACCOUNT
    )
    mem_mb, runtime = defaults["mem_mb"], defaults["runtime"]
    work = tmp_path / "work"
    # the local run's trained demo checkpoints and generated tasks: the cluster starts from them,
    # as a study starts from its hub checkpoints (training the demo is not what is tested here)
    shutil.copytree(demo_run / "resources" / "demo", work / "resources" / "demo")
    log = tmp_path / "sbatch.log"
    _sbatch_recorder(tmp_path / "bin", log)
    homogeneous = tmp_path / "homogeneous.yaml"
    homogeneous.write_text(HOMOGENEOUS)
    # job arrays on (README: Job arrays), with the profile's own `jobs` cap: above the demo's job
    # count, as plugin 2.8.0's arrays need (the node itself runs two jobs at a time); partition
    # and account as the README says, from the environment
    env = {**slurm_env, **OFFLINE, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{slurm_env['PATH']}",
           "WILDMERGE_SLURM_ARRAYS": "1", "WILDMERGE_SLURM_PARTITION": PARTITION, "WILDMERGE_SLURM_ACCOUNT": ACCOUNT}
    cmd = SNAKEMAKE + [
        "--profile", "slurm",  # exactly what users type at the repo root; its own default resources
        "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(REPO / "config.yaml"), str(homogeneous),
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1",
        "--slurm-keep-successful-logs",  # to read back which jobs ran in each SLURM job
    ]
    t0 = time.time()
    with _Squeue(slurm_env) as squeue:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    print(f"run through the profile: {time.time() - t0:.0f} s")

    # the cluster ran the first of each size's subsets the local demo drew (draw_subsets ranks
    # them, per_size takes the first): its scores are the local run's rows for those models
    local = pd.read_csv(demo_run / "results" / "demo" / "scores.csv", keep_default_na=False)
    remote = pd.read_csv(work / "results" / "demo" / "scores.csv", keep_default_na=False)
    merged = remote[remote.role == "merged"]
    assert merged.model_id.nunique() == 2 * 7 and set(merged.n) == {2, 8}, sorted(set(merged.model_id))
    assert set(remote.model_id) - set(merged.model_id) == set(local[local.role != "merged"].model_id)
    mine = local[local.model_id.isin(set(remote.model_id))].reset_index(drop=True)
    pd.testing.assert_frame_equal(remote.reset_index(drop=True), mine)
    # and its tables are those the local code makes of those rows
    from wildmerge.aggregate.tables import write_tables

    mine.to_csv(tmp_path / "mine.csv", index=False)
    groups = yaml.safe_load((REPO / "config.yaml").read_text())["tables"]
    write_tables(tmp_path / "mine.csv", tmp_path / "mine-tables", groups)
    for table in ("table1", "table2", "table3", "paired"):
        assert (work / "results/demo/tables" / f"{table}.md").read_text() == (
            tmp_path / "mine-tables" / f"{table}.md").read_text(), table
    table = pd.read_csv(work / "results/demo/tables/homogeneous.csv")
    assert sorted(zip(table.suite, table.method)) == [("memory", "ta"), ("reasoning", "ta")]

    calls = [c for c in log.read_text().splitlines() if c.strip()]
    by_rule: dict[str, list[str]] = {}
    for c in calls:
        by_rule.setdefault(_rule_of(c), []).append(c)
    assert {"merge_evaluate", "merge_eval"} <= set(by_rule) and set(by_rule) & CPU_RULES, sorted(by_rule)
    assert not {"demo_base", "demo_expert", "demo_tasks"} & set(by_rule), "the local run's demo checkpoints were not reused"
    # every rule of the homogeneous study ran inside a merge_eval group job, none on its own
    assert not {"merge", "evaluate_suite"} & set(by_rule), sorted(by_rule)
    for rule, rule_calls in by_rule.items():
        for c in rule_calls:
            asks_gpu = "--gpus" in c or "--gres=gpu" in c
            if rule in GPU_RULES or rule == "merge_eval":
                assert asks_gpu, f"{rule} submitted without a GPU request: {c}"
            else:
                assert not asks_gpu, f"CPU rule {rule} asked for a GPU: {c}"
            assert "--requeue" in c
            assert f" -p {PARTITION} " in c and f" -A {ACCOUNT} " in c, f"{rule}: not the README's partition/account: {c}"
    # merged models were submitted as job arrays: sbatch --array, and squeue showed their tasks
    arrays = {rule: [c for c in rule_calls if " --array=" in c] for rule, rule_calls in by_rule.items()}
    assert arrays["merge_evaluate"], "no merge_evaluate job array was submitted"
    other = {r for r, a in arrays.items() if a} - {"merge_evaluate", "evaluate"}
    assert not other, f"job arrays for rules the profile does not name: {sorted(other)}"
    tasks = squeue.array_tasks("merge_evaluate")
    assert len(tasks) >= 2, f"squeue showed no merge_evaluate array tasks: {sorted(squeue.seen.items())[:20]}"

    # what SLURM itself holds for each job (scontrol): the README's partition and account, and
    # the profile's default runtime and memory (no rule of the demo sets its own); a group job
    # asks for the sum of its parallel jobs and the runtimes of its steps one after another
    records = {k: r for k, r in squeue.records.items() if r.get("WorkDir") == str(work)}
    plain = {k for k, r in records.items() if not re.fullmatch(r"\d+_.+", k)}
    assert len(plain) == len([c for c in calls if " --array=" not in c]), f"scontrol missed jobs: {sorted(plain)}"
    for key, r in records.items():
        rule = _rule_of(f"--comment {r['Comment']}")
        what = f"job {key} ({r['Comment']})"
        assert (r["Partition"], r["Account"]) == (PARTITION, ACCOUNT), f"{what}: {r['Partition']}, {r['Account']}"
        assert (_gpus(r) > 0) == (rule in GPU_RULES or rule == "merge_eval"), f"{what}: {_gpus(r)} GPUs"
        if rule == "merge_eval":
            assert _minutes(r["TimeLimit"]) % runtime == 0 and _mb(r["MinMemoryNode"]) % mem_mb == 0, f"{what}: {r}"
        else:
            assert _minutes(r["TimeLimit"]) == runtime, f"{what}: time limit {r['TimeLimit']}, profile {runtime} min"
            extra = 64 if re.fullmatch(r"\d+_.+", key) else 0  # an array task: the executor's few MB more
            assert mem_mb <= _mb(r["MinMemoryNode"]) <= mem_mb + extra, f"{what}: {r['MinMemoryNode']}, profile {mem_mb}"
            assert _gpus(r) <= 1, f"{what}: {_gpus(r)} GPUs"

    # each homogeneous merge (rule `merge`) ran in one SLURM job together with all its suite
    # evaluations, read back from those jobs' own logs
    suites = work / "results/demo/homogeneous/scores/tiny-llama"
    merged = {m.name: {s.name for s in suites.iterdir() if (s / m.name).is_dir()} for m in suites.glob("*/m-*")}
    assert len(merged) == 3 and sorted(map(len, merged.values())) == [1, 1, 2], merged  # 2 groups, all
    ran = {key: _jobs_run(Path(r["StdOut"])) for key, r in records.items() if _rule_of(f"--comment {r['Comment']}") == "merge_eval"}
    for model, model_suites in merged.items():
        steps = {("merge", f"base=tiny-llama, merge={model}")}
        steps |= {("evaluate_suite", f"base=tiny-llama, suite={s}, model={model}") for s in model_suites}
        jobs = [key for key, r in ran.items() if steps & r]
        assert len(jobs) == 1 and steps <= ran[jobs[0]], f"{model}: {steps} ran in SLURM jobs {[(j, ran[j]) for j in jobs]}"
        # the merge, then its suite evaluations side by side: runtimes added, the evaluations'
        # memory and GPUs summed (README: Partition, account, defaults)
        r, n = records[jobs[0]], len(model_suites)
        got = (_minutes(r["TimeLimit"]), _mb(r["MinMemoryNode"]), _gpus(r))
        assert got == (2 * runtime, n * mem_mb, n), f"{model}: (minutes, MB, GPUs) {got}, want {(2 * runtime, n * mem_mb, n)}"
    print(f"array tasks seen: merge_evaluate {len(tasks)}, evaluate {len(squeue.array_tasks('evaluate'))}; "
          f"sbatch calls: {({r: (len(c), len(arrays[r])) for r, c in by_rule.items()})}; max queued {squeue.max_queued}; "
          f"group jobs: {({k: (records[k]['TimeLimit'], records[k]['MinMemoryNode'], _gpus(records[k]), sorted(v)) for k, v in ran.items()})}")
    # merged weights are temporary: each merged model was made and scored in one job
    assert not any((work / "results/demo/models").glob("*/m-*"))


def test_profile_jobs_cap_holds_on_the_cluster(slurm_env, tmp_path, monkeypatch):
    """`jobs` caps the jobs queued at once (README: Jobs queued at once); set here, as the README
    says, in a site profile layered on the repository's one. Jobs of a rule with no resources of
    its own get the profile's default-resources, and the README's partition and account."""
    import yaml

    assert isinstance(yaml.safe_load(PROFILE.read_text())["jobs"], int)
    defaults = _profile_default_resources(monkeypatch)
    site = tmp_path / "site"
    site.mkdir()
    (site / "config.yaml").write_text("jobs: 2\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(
        'rule all:\n    input: expand("out/{i}.txt", i=range(6))\n\n'
        'rule work:\n    output: "out/{i}.txt"\n'
        '    shell: "sleep 4; echo $SLURM_JOB_ID > {output}"\n'
    )
    cmd = SNAKEMAKE + [
        "--profile", "slurm", "--profile", str(site),
        "--snakefile", str(work / "Snakefile"), "--directory", str(work),
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1",
    ]
    env = {**slurm_env, **OFFLINE, "WILDMERGE_SLURM_PARTITION": PARTITION, "WILDMERGE_SLURM_ACCOUNT": ACCOUNT}
    t0 = time.time()
    with _Squeue(slurm_env, interval=0.2) as squeue:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert len(list((work / "out").glob("*.txt"))) == 6
    assert squeue.max_queued == 2, f"at most {squeue.max_queued} jobs queued at once, want 2 ({time.time() - t0:.0f} s)"
    records = [r for r in squeue.records.values() if r.get("WorkDir") == str(work)]
    held = {(r["Partition"], r["Account"], _minutes(r["TimeLimit"]), _mb(r["MinMemoryNode"])) for r in records}
    assert len(records) == 6 and held == {(PARTITION, ACCOUNT, defaults["runtime"], defaults["mem_mb"])}, held
