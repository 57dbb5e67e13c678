"""Time and peak memory of a dry run of the paper study's DAG (``snakemake -n``).

Runs ``snakemake -n --quiet --configfile config/paper.yaml`` from the repository root with
``--directory`` a fresh temporary directory (so the repo's own ``.snakemake`` and results
are untouched) ``--repeats`` times, and prints the median wall time and the peak resident
memory (``/usr/bin/time -v`` when available, else ``getrusage(RUSAGE_CHILDREN)``).
Building the DAG of the paper study (4 bases x 12 experts, all subsets x 7 methods x
16 benchmarks) must stay interactive. Goal: median wall time <= 10 s.

The floor: the same dry run of a synthetic Snakefile with the study's shape -- one job per
checkpoint fetch and pre-flight, one per checkpoint's evaluation and one per merged model
(merged and scored in one job), each with the real job's number of input and output files (an
evaluation job's one output, its record; a merged model's pre-flight records),
and one aggregation over all records -- and trivial rules (`shell:`, no params, logs,
validation or scripts). What the real run
takes beyond it is wildmerge's own cost; the floor itself is Snakemake's per-job and
per-file cost for a DAG this size.

    .venv/bin/python perf/dry_run.py [--repeats 3] [--configfile config/paper.yaml]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
GOAL_S = 10.0
GNU_TIME = Path("/usr/bin/time")


def gnu_time_works() -> bool:
    if not GNU_TIME.exists():
        return False
    probe = subprocess.run([str(GNU_TIME), "-v", "true"], check=False, capture_output=True, text=True)
    return probe.returncode == 0 and "Maximum resident set size" in probe.stderr


FLOOR_SNAKEFILE = """
import json
S = json.load(open(config["shape"]))
MERGES = {(b, m): members for b, m, members in S["merges"]}
BENCH = S["benchmarks"]
rule all:
    input: "scores.csv"
rule collect:
    input: [f"records/{b}/{m}.json" for b, m in S["models"]]
    output: "scores.csv"
    shell: "touch {output}"
rule fetch:
    output: directory("hub/{ck}")
    shell: "mkdir -p {output}"
rule data:
    output: "data/{x}.json"
    shell: "touch {output}"
rule data_index:
    input: [f"data/{x}.json" for x in BENCH]
    output: "data/index.json"
    shell: "touch {output}"
rule info:
    input: model="hub/{b}-{ck}", base="hub/{b}-base"
    output: "info/{b}/{ck}.json"
    shell: "touch {output}"
rule merge_evaluate:
    input: info=lambda w: [f"info/{w.b}/base.json"] + [f"info/{w.b}/expert-{e}.json" for e in MERGES[(w.b, w.m)]], data="data/index.json"
    output: "records/{b}/{m}.json"
    wildcard_constraints: m="m-[^/]+"
    shell: "touch {output}"
rule evaluate:
    input: model="hub/{b}-{m}", info="info/{b}/{m}.json", data="data/index.json"
    output: "records/{b}/{m}.json"
    wildcard_constraints: m="base|expert-[^/]+"
    shell: "touch {output}"
"""


def scripted(floor: str) -> str:
    """The floor with Snakemake's per-job cost of a `script:` rule (the script is checked and read
    for each job at DAG build), a log and a conda env on its evaluation rules."""
    for rule, log in (("merge_evaluate", "logs/merge_evaluate/{b}/{m}.log"), ("evaluate", "logs/evaluate/{b}/{m}.log")):
        head = f"rule {rule}:"
        start = floor.index(head)
        end = floor.index("    shell:", start)
        line_end = floor.index("\n", end)
        floor = (floor[:end] + f'    log: "{log}"\n    conda: "env.yaml"\n    script: "noop.py"' + floor[line_end:])
    return floor


def floor_shape(configfile: str, out: Path) -> None:
    """The study's jobs and their file counts, from wildmerge's own Study."""
    import yaml
    from snakemake.utils import validate

    sys.path.insert(0, str(REPO))
    from wildmerge.study.plan import Study

    config = yaml.safe_load((REPO / configfile).read_text())
    validate(config, str(REPO / "schemas/config.schema.yaml"))
    study = Study(config)
    models = study.evaluated_models()
    merges = [[b, m, list(study.merge(b, m).subset.members)] for b, m in models if m.startswith("m-")]
    import json

    out.write_text(json.dumps({"models": models, "merges": merges, "benchmarks": sorted(study.benchmark_names)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--repeats", type=int, default=3, help="dry runs; the median wall time is reported (default 3)")
    ap.add_argument("--configfile", default="config/paper.yaml", help="relative to the repo root (default config/paper.yaml)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary --directory (printed)")
    ap.add_argument("--no-floor", action="store_true", help="skip the synthetic floor DAG")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    use_time = gnu_time_works()
    floor_dir = Path(tempfile.mkdtemp(prefix="wildmerge-dryrun-floor-"))
    runs: dict[str, list[str]] = {
        "wildmerge": [str(VENV_BIN / "snakemake"), "-n", "--quiet", "--snakefile", str(REPO / "Snakefile"),
                      "--configfile", args.configfile],
    }
    if not args.no_floor:
        floor_shape(args.configfile, floor_dir / "shape.json")
        (floor_dir / "Snakefile").write_text(FLOOR_SNAKEFILE)
        runs["floor"] = [str(VENV_BIN / "snakemake"), "-n", "--quiet", "--snakefile", str(floor_dir / "Snakefile"),
                         "--config", f"shape={floor_dir / 'shape.json'}"]
        (floor_dir / "Snakefile.script").write_text(scripted(FLOOR_SNAKEFILE))
        (floor_dir / "noop.py").write_text("pass\n")
        (floor_dir / "env.yaml").write_text("dependencies: [python]\n")
        runs["floor+script"] = [*runs["floor"][:4], str(floor_dir / "Snakefile.script"), *runs["floor"][5:]]
    walls: dict[str, list[float]] = {k: [] for k in runs}
    rss_kb: dict[str, list[int]] = {k: [] for k in runs}
    for rep in range(args.repeats):
        for name, base_cmd in runs.items():  # interleaved, so load changes hit both alike
            work = Path(tempfile.mkdtemp(prefix="wildmerge-dryrun-"))
            cmd = [*base_cmd, "--directory", str(work)]
            timefile = work.with_name(work.name + ".time")
            if use_time:
                cmd = [str(GNU_TIME), "-v", "-o", str(timefile), *cmd]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode:
                shutil.rmtree(work, ignore_errors=True)
                timefile.unlink(missing_ok=True)
                print(f"{name}: snakemake -n failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                      f"{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            if use_time:
                m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
                rss_kb[name].append(int(m.group(1)) if m else 0)
                timefile.unlink()
            else:  # max over all children so far: exact for the first run, a bound after
                rss_kb[name].append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
            walls[name].append(wall)
            print(f"  run {rep + 1} {name:12s}: {wall:6.2f} s, peak RSS {rss_kb[name][-1] / 1024:7.1f} MiB", flush=True)
            if args.keep:
                print(f"  kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(floor_dir, ignore_errors=True)

    med = statistics.median(walls["wildmerge"])
    print(f"\nsnakemake -n --configfile {args.configfile}: median {med:.2f} s over {args.repeats} "
          f"(min {min(walls['wildmerge']):.2f}, max {max(walls['wildmerge']):.2f}), peak RSS "
          f"{max(rss_kb['wildmerge']) / 1024:.1f} MiB ({'/usr/bin/time -v' if use_time else 'getrusage'})")
    if "floor" in walls:
        fmed = statistics.median(walls["floor"])
        print(f"floor (same jobs and files, trivial rules): median {fmed:.2f} s "
              f"(min {min(walls['floor']):.2f}, max {max(walls['floor']):.2f}); wildmerge/floor = {med / fmed:.2f}")
        smed = statistics.median(walls["floor+script"])
        print(f"floor with `script:`, `log:` and `conda:` on merges and evaluations (Snakemake's per-job cost of "
              f"those): median {smed:.2f} s; wildmerge/that = {med / smed:.2f}")
    print(f"goal: <= {GOAL_S:.0f} s: {'met' if med <= GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
