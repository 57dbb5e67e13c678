"""Running the workflow from tests: Snakemake as a subprocess, offline, and its dry-run job lists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # a proxy pointing nowhere: any attempt to reach the network fails fast
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
}


def smk(workdir: Path, *args: str, config: Path | list[Path] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    configs = config if isinstance(config, list) else [config or REPO / "config.yaml"]
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", *map(str, configs), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=3000)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def dry_run_jobs(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> dict[str, int]:
    """Snakemake's own job counts from a dry run: rule -> count."""
    out = smk(workdir, "-n", "--quiet", "rules", *args, config=config).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def dry_run_job_wildcards(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> dict[str, set[str]]:
    """Snakemake's own dry-run job list: rule -> set of the jobs' wildcard strings (without an
    evaluation job's `record`, the name of its own output)."""
    return dry_run_plan(workdir, *args, config=config)[0]


def dry_run_plan(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> tuple[dict[str, set[str]], str]:
    """The dry run's job list (as dry_run_job_wildcards) and what it printed (stdout + stderr)."""
    proc = smk(workdir, "-n", *args, config=config)
    jobs: dict[str, set[str]] = {}
    rule = None
    for line in proc.stdout.splitlines():
        s = line.strip()
        if s.startswith(("rule ", "localrule ")) and s.endswith(":"):
            rule = s.split()[1].rstrip(":")
            jobs.setdefault(rule, set()).add("")
        elif rule and s.startswith("wildcards:"):
            jobs[rule].discard("")
            jobs[rule].add(re.sub(r", record=[0-9a-f]+$", "", s.removeprefix("wildcards:").strip()))
        elif not s:
            rule = None
    return jobs, proc.stdout + proc.stderr


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def evaluation_record(workdir: Path, config: Path | list[Path], base: str, model: str) -> str:
    """The output an evaluation job of (base, model) would have now (Reruns.evaluation_record):
    the Snakemake target that scores that model, relative to ``workdir``. Config files are
    merged as Snakemake merges them (later ones win, mappings merged key by key)."""
    sys.path.insert(0, str(REPO))
    from snakemake.utils import update_config

    from wildmerge.study.plan import Study
    from wildmerge.study.rerun import Reruns

    cfg: dict = {}
    for path in config if isinstance(config, list) else [config]:
        update_config(cfg, yaml.safe_load(Path(path).read_text()) or {})
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return Reruns(Study(cfg)).evaluation_record(base, model)
    finally:
        os.chdir(cwd)
