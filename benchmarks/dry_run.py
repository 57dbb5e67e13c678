"""Time and peak memory of a dry run of the paper study's DAG (``snakemake -n``).

Runs ``snakemake -n --quiet --configfile config/paper.yaml`` from the repository root with
``--directory`` a fresh temporary directory (so the repo's own ``.snakemake`` and results
are untouched) ``--repeats`` times, and prints the median wall time and the peak resident
memory (``/usr/bin/time -v`` when available, else ``getrusage(RUSAGE_CHILDREN)``).
Building the DAG of the paper study (4 bases x 12 experts, all subsets x 7 methods x
16 benchmarks) must stay interactive. Goal: median wall time <= 10 s.

    .venv/bin/python benchmarks/dry_run.py [--repeats 3] [--configfile config/paper.yaml]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--repeats", type=int, default=3, help="dry runs; the median wall time is reported (default 3)")
    ap.add_argument("--configfile", default="config/paper.yaml", help="relative to the repo root (default config/paper.yaml)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary --directory (printed)")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    use_time = gnu_time_works()
    walls: list[float] = []
    rss_kb: list[int] = []
    for rep in range(args.repeats):
        work = Path(tempfile.mkdtemp(prefix="wildmerge-dryrun-"))
        cmd = [str(VENV_BIN / "snakemake"), "-n", "--quiet", "--snakefile", str(REPO / "Snakefile"),
               "--configfile", args.configfile, "--directory", str(work)]
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
            print(f"snakemake -n failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}",
                  file=sys.stderr)
            return 1
        if use_time:
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
            rss_kb.append(int(m.group(1)) if m else 0)
            timefile.unlink()
        else:  # max over all children so far: exact for the first run, a bound after
            rss_kb.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
        walls.append(wall)
        print(f"  run {rep + 1}: {wall:6.2f} s, peak RSS {rss_kb[-1] / 1024:7.1f} MiB", flush=True)
        if args.keep:
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    med = statistics.median(walls)
    print(f"\nsnakemake -n --configfile {args.configfile}: median {med:.2f} s over {args.repeats} "
          f"(min {min(walls):.2f}, max {max(walls):.2f}), peak RSS {max(rss_kb) / 1024:.1f} MiB "
          f"({'/usr/bin/time -v' if use_time else 'getrusage'})")
    print(f"goal: <= {GOAL_S:.0f} s: {'met' if med <= GOAL_S else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
