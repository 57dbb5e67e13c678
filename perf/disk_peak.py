"""Peak disk use of the demo study versus the size of one merged model.

Runs the demo (config.yaml) in a fresh work directory while sampling, every 50 ms, the
bytes under the merged-models directory and under the whole work directory. Merged
weights are temporary (deleted once scored), so the peak of the models directory should
stay near (number of parallel jobs) x (one merged model), however many merges the study has.

    .venv/bin/python perf/disk_peak.py [--cores 2] [--keep WORKDIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_bytes(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:  # deleted while we looked
                        pass
        except (FileNotFoundError, NotADirectoryError):
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, help="run here (default: a fresh temporary directory)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="wildmerge-disk-"))
    work.mkdir(parents=True, exist_ok=True)
    models = work / "results" / "demo" / "models"
    peak = {"models": 0, "work": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["models"] = max(peak["models"], tree_bytes(models))
            peak["work"] = max(peak["work"], tree_bytes(work))
            time.sleep(0.05)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(REPO / "config.yaml"), "--cores", str(args.cores), "--quiet", "all"]
    t = threading.Thread(target=sample, daemon=True)
    t0 = time.time()
    t.start()
    proc = subprocess.run(cmd, env=env)
    done.set()
    t.join()
    if proc.returncode:
        print(f"snakemake failed (exit {proc.returncode}); workdir {work}", file=sys.stderr)
        return proc.returncode
    manifests = sorted((work / "results" / "demo" / "manifests").rglob("*.json"))
    sizes = [json.loads(p.read_text())["output"]["bytes"] for p in manifests]
    one = max(sizes)
    print(f"demo run: {time.time() - t0:.0f} s, {len(sizes)} merged models, workdir {work}")
    print(f"one merged model:               {one / 1e6:8.2f} MB")
    print(f"all merged models, if kept:     {sum(sizes) / 1e6:8.2f} MB")
    print(f"peak of merged-models dir:      {peak['models'] / 1e6:8.2f} MB "
          f"= {peak['models'] / one:.2f} x one merged model (jobs in parallel: {args.cores})")
    print(f"peak of whole work dir:         {peak['work'] / 1e6:8.2f} MB "
          f"= {peak['work'] / one:.2f} x one merged model")
    print(f"merged models left on disk:     {tree_bytes(models) / 1e6:8.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
