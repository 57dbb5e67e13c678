"""Running the workflow from tests: Snakemake as a subprocess, offline, and its dry-run job lists."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


#: what Snakemake (9.27.1) prints for a dry run that plans no job
NOTHING_TO_DO = "Nothing to be done (all requested files are present and up to date)."


def parse_job_stats(out: str) -> dict[str, int]:
    """Snakemake's own job counts (rule -> count) from a dry run's output: its "Job stats:"
    table (printed once or twice; each copy must agree and sum to its `total` row), or {} when
    it says "Nothing to be done". Anything else raises ValueError: a dry run whose output this
    cannot read never passes as "no job"."""
    lines = out.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if line.strip() != "Job stats:":
            continue
        head = lines[i + 1 : i + 3]
        if len(head) < 2 or head[0].split() != ["job", "count"] or not re.fullmatch(r"-+\s+-+", head[1].strip()):
            raise ValueError(f"a 'Job stats:' table without its header (line {i + 1}):\n{out[-3000:]}")
        counts: dict[str, int] = {}
        total = None
        for row in lines[i + 3 :]:
            parts = row.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError(f"unreadable job stats row {row!r} (no 'total' row before it):\n{out[-3000:]}")
            if parts[0] == "total":
                total = int(parts[1])
                break
            if parts[0] in counts:
                raise ValueError(f"rule {parts[0]} twice in one job stats table:\n{out[-3000:]}")
            counts[parts[0]] = int(parts[1])
        if total is None or not counts or total != sum(counts.values()):
            raise ValueError(f"job stats table without a matching 'total' row:\n{out[-3000:]}")
        tables.append(counts)
    nothing = any(line.strip() == NOTHING_TO_DO for line in lines)
    if tables and nothing:
        raise ValueError(f"a dry run with both a job stats table and {NOTHING_TO_DO!r}:\n{out[-3000:]}")
    if not tables and not nothing:
        raise ValueError(f"a dry run with neither a job stats table nor {NOTHING_TO_DO!r}:\n{out[-3000:]}")
    if any(t != tables[0] for t in tables[1:]):
        raise ValueError(f"a dry run's job stats tables disagree: {tables}")
    return tables[0] if tables else {}


def parse_job_wildcards(out: str) -> dict[str, set[str]]:
    """rule -> set of the jobs' wildcard strings, from a (not --quiet) dry run's job list, checked
    against its job stats (parse_job_stats): each rule's number of listed jobs must be its count."""
    counts = parse_job_stats(out)
    jobs: dict[str, set[str]] = {}
    listed: dict[str, int] = {}
    rule = None
    for line in out.splitlines():
        s = line.strip()
        if s.startswith(("rule ", "localrule ")) and s.endswith(":"):
            rule = s.split()[1].rstrip(":")
            jobs.setdefault(rule, set()).add("")
            listed[rule] = listed.get(rule, 0) + 1
        elif rule and s.startswith("wildcards:"):
            jobs[rule].discard("")
            jobs[rule].add(re.sub(r", record=[0-9a-f]+$", "", s.removeprefix("wildcards:").strip()))
        elif not s:
            rule = None
    if listed != counts:
        raise ValueError(f"the dry run lists jobs {listed}, its job stats say {counts}:\n{out[-3000:]}")
    return jobs


def dry_run_jobs(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> dict[str, int]:
    """Snakemake's own job counts from a dry run: rule -> count; {} only when Snakemake says
    "Nothing to be done". Raises when the dry run fails or its output cannot be read."""
    return parse_job_stats(smk(workdir, "-n", "--quiet", "rules", *args, config=config).stdout)


def dry_run_job_wildcards(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> dict[str, set[str]]:
    """Snakemake's own dry-run job list: rule -> set of the jobs' wildcard strings (without an
    evaluation job's `record`, the name of its own output); {} only when Snakemake says
    "Nothing to be done". Raises as dry_run_jobs does."""
    return parse_job_wildcards(smk(workdir, "-n", *args, config=config).stdout)


def dry_run_plan(workdir: Path, *args: str, config: Path | list[Path] | None = None) -> tuple[dict[str, set[str]], str]:
    """The dry run's job list (as dry_run_job_wildcards) and what it printed (stdout + stderr)."""
    proc = smk(workdir, "-n", *args, config=config)
    return parse_job_wildcards(proc.stdout), proc.stdout + proc.stderr


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def rerun_state(workdir: Path, config: Path | list[Path]) -> Iterator[Any]:
    """The Reruns (wildmerge.study.rerun) of a config on ``workdir``: the rerun state the DAG build,
    and each evaluation job, read from disk. Config files are merged as Snakemake merges them
    (later ones win, mappings merged key by key)."""
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
        yield Reruns(Study(cfg))
    finally:
        os.chdir(cwd)


def evaluation_record(workdir: Path, config: Path | list[Path], base: str, model: str) -> str:
    """The output an evaluation job of (base, model) would have now (Reruns.evaluation_record):
    the Snakemake target that scores that model, relative to ``workdir``."""
    with rerun_state(workdir, config) as reruns:
        return reruns.evaluation_record(base, model)


def pending_benchmarks(workdir: Path, config: Path | list[Path]) -> dict[tuple[str, str], tuple[str, ...]]:
    """(base, model) -> the benchmarks its evaluation job would score now, for every model with
    any (Reruns.pending_benchmarks: what the job itself scores)."""
    with rerun_state(workdir, config) as reruns:
        return {pair: names for pair in reruns.study.evaluated_models() if (names := reruns.pending_benchmarks(*pair))}
