"""`make rehearsal`: the paper study (config/paper.yaml) in miniature, end to end, offline.

A local fake hub (tests/hub_server.py, reached through HF_ENDPOINT) serves a tiny model for
every checkpoint id of config/paper.yaml (tests/rehearsal/models.py: the real vocabulary
sizes, the gated Llama bases) and synthetic rows for every dataset the 16 benchmarks' lm-eval
task YAMLs load (tests/rehearsal/data.py). The workflow then runs with
``--configfile config/paper.yaml config/rehearsal.yaml`` (scale only):

1. a fetch of a gated Llama base without a token, which must fail naming HF_TOKEN;
2. the 4 bases' evaluations with ``evaluation.budget`` set (a seeded half of each benchmark's
   items), after their fetch and pre-flight and every benchmark's data fetch;
3. the whole study without a budget (the bases score only the items 2 left out), then
   ``snakemake --report``.

Checks: Tables 1-3 hold the 4 bases; every model of the study has a score for each of the
16 benchmarks. Prints the wall time of each step and, per rule, the jobs run and their time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO / "tests"), str(REPO)]

from hub_server import HubServer, HubState  # noqa: E402
from models import load_config, push_models  # noqa: E402

TOKEN = "hf_wildmergeREHEARSALtoken0123456789"
CONFIGS = [REPO / "config/paper.yaml", REPO / "config/rehearsal.yaml"]
GATED_BASE = "meta-llama/Llama-3.2-3B-Instruct"


def benchmarks(config: dict) -> list[str]:
    names = [b if isinstance(b, str) else b["name"] for b in config["evaluation"]["benchmarks"]]
    for spec in (config.get("homogeneous") or {}).values():
        for group in spec["groups"].values():
            names += [b if isinstance(b, str) else b["name"] for b in group["benchmarks"]]
    return sorted(set(names))


def push_datasets(state: HubState, config: dict, rows: int) -> int:
    try:
        from data import push_benchmark_datasets  # tests/rehearsal/data.py
    except ImportError:
        print("rehearsal: tests/rehearsal/data.py not found: no benchmark datasets served", file=sys.stderr)
        return 0
    return len(push_benchmark_datasets(state, benchmarks(config), rows_per_split=rows))


def snakemake(env: dict[str, str], workdir: Path, configs: list[Path], *args: str, check: bool = True,
              log: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", *map(str, configs), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if log:
        log.write_text(r.stdout + r.stderr)
    if check and r.returncode != 0:
        sys.exit(f"rehearsal: snakemake {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout[-4000:]}{r.stderr[-8000:]}")
    return r


def job_stats(out: str) -> dict[str, int]:
    """The "Job stats:" table Snakemake prints when a run starts (rule -> jobs)."""
    lines = out.splitlines()
    try:
        i = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return {}
    stats = {}
    for line in lines[i + 3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        stats[parts[0]] = int(parts[1])
    stats.pop("total", None)
    return stats


def warm_times(jobs_log: Path, start: int) -> dict[str, tuple[int, float, float]]:
    """rule -> (jobs, wall s, CPU s) of the jobs the warm worker ran, from its JSON-lines log."""
    out: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    lines = jobs_log.read_text().splitlines()[start:] if jobs_log.exists() else []
    for line in lines:
        rec = json.loads(line)
        row = out[rec.get("rule", "?")]
        row[0] += 1
        row[1] += rec["wall_s"]
        row[2] += rec["cpu_s"]
    return {k: (int(v[0]), v[1], v[2]) for k, v in out.items()}


def report_step(name: str, wall: float, stats: dict[str, int], warm: dict[str, tuple[int, float, float]]) -> None:
    print(f"\n== {name}: {wall:.0f} s wall, {sum(stats.values())} jobs")
    if stats:
        print(f"   {'rule':<22} {'jobs':>5} {'warm wall s':>12} {'warm CPU s':>11}")
        for rule, n in sorted(stats.items(), key=lambda kv: -warm.get(kv[0], (0, 0.0, 0.0))[1]):
            _, w, c = warm.get(rule, (0, 0.0, 0.0))
            print(f"   {rule:<22} {n:>5} {w:>12.1f} {c:>11.1f}")


def check_results(results: Path, config: dict) -> list[str]:
    """Problems with the study's results: Tables 1-3 for the 4 bases, all 16 benchmarks scored
    for every model of scores.csv."""
    import pandas as pd

    problems = []
    bases = sorted(config["bases"])
    for table in ["table1", "table2", "table3"]:
        path = results / "tables" / f"{table}.csv"
        if not path.exists():
            problems.append(f"{path} missing")
            continue
        text = path.read_text()
        problems += [f"{path}: no row for base {b}" for b in bases if b not in text]
    scores = pd.read_csv(results / "scores.csv")
    wanted = {b if isinstance(b, str) else b["name"] for b in config["evaluation"]["benchmarks"]}
    model_cols = ["base", "model_id"]  # scores.csv: one row per (base, model_id, benchmark)
    for key, rows in scores.groupby(model_cols):
        got = set(rows.loc[rows["value"].notna(), "benchmark"])  # a NaN value is not a score
        if wanted - got:
            problems.append(f"{key}: not scored on {sorted(wanted - got)}")
    problems += check_score_files(results, config)
    n_models = scores.groupby(model_cols).ngroups
    experts = sum(len(spec["experts"]) for spec in config["bases"].values())
    if n_models <= len(bases) + experts:
        problems.append(f"scores.csv: {n_models} models, not the {len(bases)} bases, {experts} experts and their merges")
    print(f"\nscores.csv: {n_models} models x {len(wanted)} benchmarks ({len(scores)} rows)")
    return problems


def check_score_files(results: Path, config: dict) -> list[str]:
    """Each score file of the main study: the few-shot count and metric its benchmark entry sets,
    and a group scored over the same tasks for every model (MMLU 57, BBH 24, GPQA 3)."""
    specs = {b["name"]: b for b in config["evaluation"]["benchmarks"] if isinstance(b, dict)}
    problems: list[str] = []
    subtasks: dict[str, set[int]] = collections.defaultdict(set)
    files = sorted((results / "scores").glob("*/*/*.json"))
    for path in files:
        rec = json.loads(path.read_text())
        spec = specs.get(rec["benchmark"], {})
        for key in ("num_fewshot", "metric"):
            if key in spec and rec.get(key) != spec[key]:
                problems.append(f"{path}: {key} {rec.get(key)!r}, the config says {spec[key]!r}")
        if rec.get("subtask_hashes"):  # a group: the tasks its per-item outcomes come from
            subtasks[rec["benchmark"]].add(len((rec.get("items") or {}).get("tasks") or []))
    groups = {b: next(iter(n)) for b, n in subtasks.items() if len(n) == 1}
    problems += [f"{b}: scored over {sorted(n)} subtasks in different files" for b, n in subtasks.items() if len(n) > 1]
    for group, n in {"mmlu": 57, "leaderboard_bbh": 24, "leaderboard_gpqa": 3}.items():
        if group in subtasks and groups.get(group) != n:
            problems.append(f"{group}: scored over {sorted(subtasks[group])} subtasks, lm-eval's group has {n}")
    print(f"score files: {len(files)}, few-shot and metric as configured; groups' subtasks {groups}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=REPO / ".rehearsal",
                    help="Snakemake's working directory (results, resources, the HF cache); emptied first")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--rows", type=int, default=2, help="synthetic rows per dataset split")
    ap.add_argument("--budget", default="0.5", help="evaluation.budget of the first pass ('' skips that pass)")
    ap.add_argument("--config", type=Path, action="append", default=[],
                    help="one more overlay after config/rehearsal.yaml (development: e.g. fewer benchmarks)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory's earlier results")
    args = ap.parse_args(argv)

    configs = CONFIGS + [p.resolve() for p in args.config]
    config = load_config(configs)
    work = args.workdir.resolve()
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    state = HubState()
    t = time.perf_counter()
    n_models = len(push_models(state, config, TOKEN))
    n_data = push_datasets(state, config, args.rows)
    print(f"fake hub: {n_models} checkpoints, {n_data} dataset repositories ({time.perf_counter() - t:.0f} s to build)")

    with HubServer(state) as url, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_DISABLE_XET", "HF_TOKEN")}
        env.update({
            "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HOME": str(work / "hf"),
            "HF_TOKEN_PATH": str(work / "no-stored-token"), "NO_PROXY": "127.0.0.1,localhost",
            "WILDMERGE_HUB_BACKOFF_S": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        })
        jobs_log = work / ".snakemake/log/wildmerge-warm-jobs.jsonl"
        logs = work / "rehearsal-logs"
        logs.mkdir(exist_ok=True)

        # 1. a gated base without a token: refused, naming HF_TOKEN (the fetch job's own command,
        # not a workflow run: a DAG build of the whole study costs more than the fetch)
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "wildmerge.hub", "fetch", GATED_BASE, "--out", str(work / "gated-without-token"),
               "--lock", str(work / config["results"] / "hub.lock"), "--key", "bases.llama-3.2-3b.model"]
        empty_cache = {**env, "HF_HUB_CACHE": str(Path(tmp) / "hub-cache")}  # nothing fetched before
        r = subprocess.run(cmd, env=empty_cache, capture_output=True, text=True, cwd=work)
        text = r.stdout + r.stderr
        (logs / "1-gated-without-token.log").write_text(text)
        if r.returncode == 0 or "HF_TOKEN" not in text or "gated" not in text or "Traceback" in text:
            sys.exit(f"rehearsal: fetching the gated {GATED_BASE} without a token did not fail naming HF_TOKEN:\n{text[-4000:]}")
        print(f"\n== gated base without HF_TOKEN: refused as expected ({time.perf_counter() - t:.0f} s)")
        env["HF_TOKEN"] = TOKEN

        # 2. the study with a budget, 3. without (then the report)
        # the budgeted pass scores the 4 bases (their fetch and pre-flight, all 16 benchmarks'
        # data): every evaluation again would double the rehearsal's main cost; the full pass
        # then scores only the bases' items the budget left out
        passes = []
        if args.budget:
            from workflow_helpers import evaluation_record

            budget = Path(tmp) / "budget.yaml"
            budget.write_text(f"evaluation:\n  budget: {args.budget}\n")
            targets = [evaluation_record(work, configs + [budget], b, "base") for b in sorted(config["bases"])]
            passes.append((f"the bases with evaluation.budget: {args.budget}", configs + [budget], targets, "2-budget"))
        passes.append(("the study without budget", configs, [], "3-full"))
        for name, cfgs, targets, tag in passes:
            t = time.perf_counter()
            start = len(jobs_log.read_text().splitlines()) if jobs_log.exists() else 0
            r = snakemake(env, work, cfgs, "--cores", args.cores, *targets, log=logs / f"{tag}.log")
            report_step(name, time.perf_counter() - t, job_stats(r.stdout + r.stderr), warm_times(jobs_log, start))
        t = time.perf_counter()
        snakemake(env, work, configs, "--report", str(work / "report.html"), log=logs / "4-report.log")
        print(f"\n== report: {work / 'report.html'} ({time.perf_counter() - t:.0f} s)")

    results = work / config["results"]
    problems = check_results(results, config)
    print(f"\nrehearsal: {time.perf_counter() - started:.0f} s wall in all; tables in {results / 'tables'}")
    if problems:
        print("rehearsal FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("rehearsal passed: Tables 1-3 for the 4 bases, every benchmark scored for every model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
