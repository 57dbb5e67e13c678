"""Regenerate the README's performance table: every number in it comes from this script.

Measures, on this machine:

* ``make run`` with ``.venv`` ready: the demo study from scratch ``--runs`` times, each in a
  fresh directory (``make run ARGS="--directory <tmp>"``): median and range of the wall
  time, and the CPU time (user + sys of every process of the run);
* where the time of the median run went, per stage (Snakemake's ``benchmark:`` files plus
  the warm worker's per-job CPU, ``.snakemake/log/wildmerge-warm-jobs.jsonl``), next to the
  work done (training steps, merged bytes, scored items);
* the cost of one merged model (its one job: merge, then evaluation) against the import
  floor of a fresh Python process (``import torch``; torch + transformers + lm-eval;
  torch + ``mergekit.merge``);
* ``snakemake -n`` on ``config/paper.yaml`` (``--no-dry-run`` to skip);
* with ``--fresh-clone``: ``git clone`` of this checkout's HEAD + ``make run`` including
  the ``.venv`` set-up (pip's cache is whatever this machine has);
* with ``--tests``: ``make test`` (lint, the suite, then the rehearsal: what CI runs; long);
* with ``--rehearsal``: ``make rehearsal`` (the paper study in miniature; long);
* with ``--ci``: a fresh clone's ``.ci/run`` (what CI runs: set-up, lint, the suite, the
  rehearsal; long), with the suite's and the rehearsal's own times read from its output
  (``--runs 0 --no-dry-run --ci``: that alone);

and prints the machine and a Markdown table to paste into the README's Performance
section. Timings vary with load: the load average at the start is printed; run it on an
idle machine. Asserts nothing about the timings.

    .venv/bin/python perf/perf_table.py [--runs 3] [--cores 2] [--fresh-clone] [--tests] [--rehearsal] [--ci]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
IMPORT_FLOORS = {
    "torch": "import torch",
    "torch + transformers + lm-eval": "import torch, transformers.modeling_utils, lm_eval.evaluator, lm_eval.models.huggingface",
    "torch + mergekit": "import torch, mergekit.merge",
}
#: stage -> rules (rules without a benchmark: directive only count in the run's total)
STAGES = {
    "demo training": ("demo_base", "demo_expert"),
    "merged models (merged and scored in one job)": ("merge_evaluate",),
    "checkpoint evaluations": ("evaluate",),
    "expert geometry": ("geometry",),
}
GOALS = {"run": 180.0, "fresh": 300.0, "dry_run": 10.0}


@dataclass
class Timed:
    wall: float
    cpu: float  # user + sys of the process and all its waited-for descendants
    returncode: int
    out: str = ""


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, capture: bool = True) -> Timed:
    """Run ``cmd``; its wall time and the CPU time of its whole process tree (wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **OFFLINE, **(env or {})},
                            stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None,
                            text=True)
    out = proc.stdout.read() if capture and proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Timed(time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, proc.returncode, out)


def fmt_s(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if s else f"{m} min"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{mem_kb / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        mem = "?"
    versions = subprocess.run(
        [str(PYTHON), "-c", ("import importlib.metadata as m; print(' '.join(f'{p} {m.version(p)}' for p in "
                             "['torch', 'transformers', 'lm_eval', 'mergekit', 'snakemake']))")],
        capture_output=True, text=True, check=False).stdout.strip()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "memory": mem, "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "versions": versions, "commit": commit + (" (modified)" if dirty else ""),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# --- one demo run and what its files say ---------------------------------------------------


@dataclass
class RunStats:
    timed: Timed
    jobs: int
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    per_model: dict[str, list[float]] = field(default_factory=dict)
    work: dict[str, float] = field(default_factory=dict)


def _benchmarks(work: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(rule, job key) -> {s, cpu} from every Snakemake benchmark TSV under ``work``."""
    out = {}
    for tsv in work.rglob("benchmarks/**/*.tsv"):
        rows = list(csv.DictReader(tsv.open(), delimiter="\t"))
        if not rows:
            continue
        out[_rule_of(tsv, work)] = {"s": float(rows[-1]["s"]), "cpu": float(rows[-1].get("cpu_time") or 0)}
    return out


def _rule_of(tsv: Path, work: Path) -> tuple[str, str]:
    parts = tsv.relative_to(work).parts
    i = parts.index("benchmarks")
    rest = parts[i + 1:]
    if parts[0] == "resources":  # resources/demo/benchmarks/{base,tasks,expert_<name>}.tsv
        stem = tsv.stem
        if stem in ("base", "tasks"):
            return f"demo_{stem}", stem
        return "demo_expert", stem.removeprefix("expert_")
    if rest[0] in ("evaluate", "merge_evaluate"):  # results/<study>/benchmarks/<rule>/<base>/<model>/<record>.tsv
        return rest[0], "/".join(rest[1:3])
    return rest[0], "/".join(rest[1:])[: -len(".tsv")]  # results/<study>/benchmarks/<rule>/<base>/<x>.tsv


def _warm_jobs(work: Path) -> dict[tuple[str, str], float]:
    """(rule, job key) -> CPU seconds of the job's warm-worker child."""
    path = work / ".snakemake" / "log" / "wildmerge-warm-jobs.jsonl"
    out: dict[tuple[str, str], float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        rule, wc = rec.get("rule"), rec.get("wildcards") or {}
        if rule in ("demo_base",):
            key = "base"
        elif rule == "demo_expert":
            key = wc.get("expert", "")
        elif "base" in wc:  # the benchmark file's key: <base>/<model> (evaluations), <base> (geometry)
            rest = wc.get("merge") or wc.get("model") or wc.get("checkpoint")
            key = f"{wc['base']}/{rest}" if rest else wc["base"]
        else:
            key = "/".join(wc.values())
        if rule:
            out[(rule, key)] = out.get((rule, key), 0.0) + float(rec["cpu_s"])
    return out


def run_stats(work: Path, result: Timed) -> RunStats:
    m = re.findall(r"(\d+) of (\d+) steps \(100%\) done", result.out)
    stats = RunStats(result, int(m[-1][1]) if m else 0)
    bench, warm = _benchmarks(work), _warm_jobs(work)
    cpu = {k: v["cpu"] + warm.get(k, 0.0) for k, v in bench.items()}
    for stage, rules in STAGES.items():
        keys = [k for k in bench if k[0] in rules]
        if keys:
            stats.stages[stage] = {"jobs": len(keys), "cpu": sum(cpu[k] for k in keys),
                                   "wall": sum(bench[k]["s"] for k in keys)}
    for (rule, key) in bench:
        if rule != "merge_evaluate":
            continue
        manifest = next(work.glob(f"results/*/manifests/{key}.json"), None)
        merge_s = json.loads(manifest.read_text())["merge_seconds"] if manifest else 0.0
        stats.per_model.setdefault("cpu", []).append(cpu[(rule, key)])
        stats.per_model.setdefault("merge_s", []).append(merge_s)
        stats.per_model.setdefault("wall", []).append(bench[(rule, key)]["s"])
    stats.work = _work_done(work)
    return stats


def _work_done(work: Path) -> dict[str, float]:
    """What the demo's jobs compute: training steps, merged bytes, scored items."""
    done: dict[str, float] = {"steps": 0, "train_s": 0.0, "merged_bytes": 0, "merge_s": 0.0,
                              "merged_items": 0, "checkpoint_items": 0}
    for meta in (work / "resources").glob("demo/**/wildmerge_demo.json"):
        rec = json.loads(meta.read_text())
        done["steps"] += rec.get("steps", 0)
        done["train_s"] += rec.get("train_seconds", 0.0)
    for manifest in work.glob("results/*/manifests/*/*.json"):
        rec = json.loads(manifest.read_text())
        done["merged_bytes"] += rec.get("output", {}).get("bytes", 0)
        done["merge_s"] += rec.get("merge_seconds", 0.0)
    models: dict[str, set[Path]] = {"checkpoint": set(), "merged": set()}
    for score in work.glob("results/*/scores/*/*/*.json"):
        rec = json.loads(score.read_text())
        kind = "merged" if score.parent.name.startswith("m-") else "checkpoint"  # merge ids are m-<hash>
        n = rec.get("n_samples")
        done[f"{kind}_items"] += n.get("effective", 0) if isinstance(n, dict) else 0
        models[kind].add(score.parent)
    for kind, dirs in models.items():
        done[f"{kind}_models"] = len(dirs)
    return done


def demo_run(cores: int, args: str, keep: bool) -> tuple[Path, RunStats]:
    work = Path(tempfile.mkdtemp(prefix="wildmerge-perf-"))
    cmd = ["make", "-s", "-C", str(REPO), "run", f"CORES={cores}", f"ARGS=--directory {work} {args}".strip()]
    result = timed(cmd, REPO)
    if result.returncode:
        raise SystemExit(f"make run failed (exit {result.returncode}) in {work}:\n{result.out[-4000:]}")
    stats = run_stats(work, result)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return work, stats


# --- the other rows ------------------------------------------------------------------------


def import_floor(repeats: int) -> dict[str, float]:
    """Median CPU seconds of a fresh ``python -c 'import ...'``, per set of libraries."""
    out = {}
    for name, code in IMPORT_FLOORS.items():
        runs = [timed([str(PYTHON), "-c", code], REPO) for _ in range(repeats)]
        out[name] = statistics.median(r.cpu for r in runs)
    return out


def dry_run(repeats: int) -> tuple[float, float]:
    walls = []
    for _ in range(repeats):
        work = Path(tempfile.mkdtemp(prefix="wildmerge-perf-dry-"))
        r = timed([str(REPO / ".venv" / "bin" / "snakemake"), "-n", "--quiet", "--snakefile", str(REPO / "Snakefile"),
                   "--configfile", "config/paper.yaml", "--directory", str(work)], REPO)
        shutil.rmtree(work, ignore_errors=True)
        if r.returncode:
            raise SystemExit(f"snakemake -n failed:\n{r.out[-3000:]}")
        walls.append(r.wall)
    return statistics.median(walls), max(walls) - min(walls)


def _clone(prefix: str) -> tuple[Path, Path]:
    """(a new temporary folder, this checkout's HEAD cloned into it)."""
    where = Path(tempfile.mkdtemp(prefix=prefix))
    clone = where / "wildmerge"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    return where, clone


def fresh_clone(cores: int) -> tuple[Timed, Timed]:
    where, clone = _clone("wildmerge-perf-clone-")
    setup = timed(["make", "-s", "setup"], clone)
    run = timed(["make", "-s", "run", f"CORES={cores}"], clone)
    shutil.rmtree(where, ignore_errors=True)
    if setup.returncode or run.returncode:
        raise SystemExit(f"fresh clone: make setup/run failed:\n{setup.out[-2000:]}\n{run.out[-3000:]}")
    return setup, run


@dataclass
class CiRun:
    run: Timed
    suite: str  # pytest's summary line ("643 passed in 2051.2s (0:34:11)")
    suite_s: float | None
    rehearsal_s: float | None


def ci_run() -> CiRun:
    """A fresh clone's ``.ci/run`` (its own set-up included), timed; the suite's and the rehearsal's
    times from what pytest and tests/rehearsal/run.py print."""
    where, clone = _clone("wildmerge-perf-ci-")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    t0 = time.perf_counter()
    proc = subprocess.run([str(clone / ".ci" / "run")], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = Timed(time.perf_counter() - t0, 0.0, proc.returncode, proc.stdout)
    (where / "ci.log").write_text(proc.stdout)
    print(f".ci/run: exit {proc.returncode}, {fmt_s(run.wall)}; its output: {where / 'ci.log'}", file=sys.stderr)
    shutil.rmtree(clone, ignore_errors=True)
    summary = re.findall(r"^=+ (.*\bpassed\b.* in ([\d.]+)s.*?) =+$", proc.stdout, re.M)
    rehearsal = re.findall(r"^rehearsal: (\d+) s wall in all", proc.stdout, re.M)
    return CiRun(run, summary[-1][0] if summary else "(no pytest summary)", float(summary[-1][1]) if summary else None,
                 float(rehearsal[-1]) if rehearsal else None)


# --- the table -----------------------------------------------------------------------------


def _clone_row(clone: tuple[Timed, Timed]) -> str:
    setup, run = clone
    return (f"| fresh clone: `make run` including the `.venv` set-up | **{fmt_s(setup.wall + run.wall)}** "
            f"(set-up {fmt_s(setup.wall)}, run {fmt_s(run.wall)}) | ≤ {fmt_s(GOALS['fresh'])} |")


def _other_rows(dry: tuple[float, float] | None, clone: tuple[Timed, Timed] | None, tests: Timed | None,
                rehearsal: Timed | None) -> list[str]:
    """The table's rows that do not come from the demo runs (``clone``: only without them)."""
    rows = []
    if clone:
        rows.append(_clone_row(clone))
    if dry:
        rows.append(f"| `snakemake -n` on `config/paper.yaml` | **{dry[0]:.1f} s** (spread {dry[1]:.1f} s) | "
                    f"≤ {GOALS['dry_run']:.0f} s |")
    if tests:
        rows.append(f"| `make test` (lint, suite, rehearsal: what CI runs) | **{fmt_s(tests.wall)}**"
                    f"{'' if tests.returncode == 0 else ' (failed)'} | ≤ 45 min |")
    if rehearsal:
        rows.append(f"| `make rehearsal` (the paper study in miniature) | **{fmt_s(rehearsal.wall)}**"
                    f"{'' if rehearsal.returncode == 0 else ' (failed)'} | |")
    return rows


def table(mach: dict[str, str], runs: list[RunStats], floors: dict[str, float], cores: int,
          dry: tuple[float, float] | None, clone: tuple[Timed, Timed] | None, tests: Timed | None,
          rehearsal: Timed | None = None, ci: CiRun | None = None) -> str:
    lines = [
        (f"Measured {mach['date']} on {mach['cpu']}, {mach['cores']} cores, {mach['memory']} RAM, {mach['os']}, "
         f"Python {mach['python']} ({mach['versions']}); commit {mach['commit']}; load average at the start "
         f"{mach['load']}. Printed by `perf/perf_table.py`."),
        "",
        "| what | measured | goal |",
        "| --- | --- | --- |",
    ]
    if ci:
        lines.append(f"| fresh clone: `.ci/run` (set-up, lint, the suite, the rehearsal: what CI runs) | "
                     f"**{fmt_s(ci.run.wall)}**{'' if ci.run.returncode == 0 else ' (failed)'}: the suite "
                     f"{fmt_s(ci.suite_s) if ci.suite_s is not None else '?'} ({ci.suite}), the rehearsal "
                     f"{fmt_s(ci.rehearsal_s) if ci.rehearsal_s is not None else '?'} | ≤ 45 min |")
    if not runs:
        return "\n".join(lines + _other_rows(dry, clone, tests, rehearsal))
    walls = sorted(r.timed.wall for r in runs)
    med_run = sorted(runs, key=lambda r: r.timed.wall)[len(runs) // 2]
    spread = f"{fmt_s(walls[0])} – {fmt_s(walls[-1])}, " if len(walls) > 1 else ""
    lines.append(
        f"| `make run` with `.venv` ready: demo from scratch, {med_run.jobs} jobs, `--cores {cores}` | "
        f"**{fmt_s(statistics.median(walls))}** median of {len(walls)} ({spread}"
        f"{statistics.median(r.timed.cpu for r in runs):.0f} s CPU) | ≤ {fmt_s(GOALS['run'])} |")
    if clone:
        lines.append(_clone_row(clone))
    pm = med_run.per_model
    if pm.get("cpu"):
        floor = "; ".join(f"{k} {v:.1f} s" for k, v in floors.items())
        lines.append(
            f"| one merged model: its merge_evaluate job (median of {len(pm['cpu'])}) | "
            f"**{statistics.median(pm['cpu']):.1f} s CPU**, {statistics.median(pm['wall']):.1f} s wall "
            f"(of which {statistics.median(pm['merge_s']):.1f} s merging) | "
            f"below one fresh process's imports: {floor} CPU |")
    lines += _other_rows(dry, clone=None, tests=tests, rehearsal=rehearsal)
    lines += ["", (f"Where the time of the median run went ({fmt_s(med_run.timed.wall)} wall, "
                   f"{med_run.timed.cpu:.0f} s CPU on {cores} cores):"), "",
              "| stage | jobs | CPU | wall, summed over jobs | work done |", "| --- | --- | --- | --- | --- |"]
    w = med_run.work
    work_text = {
        "demo training": f"{w['steps']:.0f} optimiser steps of 64 examples ({w['train_s']:.0f} s inside the jobs)",
        "merged models (merged and scored in one job)": (
            f"{w['merged_models']:.0f} models merged ({w['merged_bytes'] / 1e6:.1f} MB written, "
            f"{w['merge_s']:.0f} s inside mergekit) and scored ({w['merged_items']:.0f} items)"),
        "checkpoint evaluations": f"{w['checkpoint_models']:.0f} models scored ({w['checkpoint_items']:.0f} items)",
        "expert geometry": "one streaming pass over the experts",
    }
    known = 0.0
    for stage, s in med_run.stages.items():
        known += s["cpu"]
        lines.append(f"| {stage} | {s['jobs']:.0f} | {s['cpu']:.0f} s | {s['wall']:.0f} s | {work_text.get(stage, '')} |")
    lines.append(f"| everything else (pre-flight, aggregation, Snakemake, the warm worker's imports) | | "
                 f"{max(0.0, med_run.timed.cpu - known):.0f} s | | |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--runs", type=int, default=3, help="demo runs with the venv ready (default 3)")
    ap.add_argument("--cores", type=int, default=2, help="make run CORES= (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="import-floor and dry-run repeats (default 3)")
    ap.add_argument("--no-dry-run", action="store_true", help="skip snakemake -n on config/paper.yaml")
    ap.add_argument("--fresh-clone", action="store_true", help="also time a fresh clone's make run (installs a .venv)")
    ap.add_argument("--tests", action="store_true", help="also time make test (the full suite: long)")
    ap.add_argument("--rehearsal", action="store_true", help="also time make rehearsal (the paper study in miniature: long)")
    ap.add_argument("--ci", action="store_true", help="also time a fresh clone's .ci/run (what CI runs: long)")
    ap.add_argument("--args", default="", help="extra snakemake arguments for the demo runs (e.g. a target, to try "
                                                "the script quickly); the table is then not the README's")
    ap.add_argument("--keep", action="store_true", help="keep the runs' directories (printed)")
    args = ap.parse_args()
    if not PYTHON.exists():
        print("no .venv: run `make setup` first", file=sys.stderr)
        return 1

    mach = machine()
    busy = max(os.getloadavg()) > 0.5 * (os.cpu_count() or 1)
    print(f"load average {mach['load']}" + (" -- the machine is busy: timings will be high" if busy else ""),
          file=sys.stderr)
    floors = import_floor(args.repeats) if args.runs else {}
    if floors:
        print("import floor (CPU s): " + ", ".join(f"{k} {v:.2f}" for k, v in floors.items()), file=sys.stderr)
    runs = []
    for i in range(args.runs):
        work, stats = demo_run(args.cores, args.args, args.keep)
        runs.append(stats)
        print(f"make run {i + 1}/{args.runs}: {fmt_s(stats.timed.wall)} wall, {stats.timed.cpu:.0f} s CPU, "
              f"{stats.jobs} jobs" + (f" ({work})" if args.keep else ""), file=sys.stderr)
    dry = None if args.no_dry_run else dry_run(args.repeats)
    clone = fresh_clone(args.cores) if args.fresh_clone else None
    tests = timed(["make", "-s", "test"], REPO, capture=False) if args.tests else None
    rehearsal = timed(["make", "-s", "rehearsal"], REPO, capture=False) if args.rehearsal else None
    ci = ci_run() if args.ci else None
    print(table(mach, runs, floors, args.cores, dry, clone, tests, rehearsal, ci))
    return 0


if __name__ == "__main__":
    sys.exit(main())
