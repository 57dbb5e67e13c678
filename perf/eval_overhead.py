"""Overhead of wildmerge's evaluation job over the bare ``lm_eval`` CLI, same model and tasks.

Builds (reused when already there) the 8 demo lm-eval tasks (``wildmerge.demo.make_tasks``)
and a random-init tiny demo Llama (``wildmerge.demo.train.model_config()`` + the demo
tokenizer; nothing is trained), then times, interleaved, the median of ``--repeats`` of:

* ``wildmerge`` -- a fresh Python process calling ``wildmerge.evaluation.lm_eval_run.evaluate_model`` on
  all 8 tasks and writing the per-task score JSONs, as the evaluate job does (config.yaml's
  evaluation settings: batch size 64, cpu, float32, seed 1234);
* ``lm_eval``   -- ``lm_eval run --model hf --model_args pretrained=DIR,dtype=float32 --tasks
  demo_arith,... --include_path TASKS --batch_size 64 --device cpu --seed 1234``.

Goal: wildmerge / lm_eval <= 1.05 (wall-clock). It also checks that both report the same
accuracies (acc and acc_norm per task; exit 1 if not) and that the wildmerge job loads the
model once (``PreTrainedModel.from_pretrained`` calls counted in the process, and its
"loaded ... in" log lines). Both processes get ``--threads`` torch threads (default 1, as
the evaluate rule's ``threads: 1``). Only ratios from one run are comparable.

    .venv/bin/python perf/eval_overhead.py [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
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
GOAL = 1.05
BATCH_SIZE = 64
SEED = 1234
DTYPE = "float32"

WM_EVAL = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
a = json.loads(sys.argv[1])
import torch
torch.set_num_threads(a["threads"])
import transformers
loads = []
_orig = transformers.PreTrainedModel.from_pretrained.__func__
def _counting(cls, *args, **kwargs):
    loads.append(cls.__name__)
    return _orig(cls, *args, **kwargs)
transformers.PreTrainedModel.from_pretrained = classmethod(_counting)
from wildmerge.evaluation.lm_eval_run import evaluate_model
from wildmerge.evaluation.settings import EvalSettings
settings = EvalSettings(dtype=a["dtype"], seed=a["seed"], batch_size=a["batch_size"], device="cpu",
                        include_path=a["include_path"])
values = evaluate_model(a["model"], [{"name": t} for t in a["tasks"]], a["out_files"], settings)
print("BENCH " + json.dumps({"loads": loads, "values": values}))
"""


def build(work: Path, seed: int) -> tuple[Path, Path, list[str]]:
    """Demo tasks + a random-init demo model under ``work`` (skipped when present)."""
    from wildmerge.demo import TASKS, make_tasks

    tasks_dir, model_dir = work / "tasks", work / "model"
    if not (tasks_dir / "done").exists():
        make_tasks(tasks_dir, n_eval=100, seed=0)
        (tasks_dir / "done").write_text("")
    if not (model_dir / "done").exists():
        import torch
        from transformers import LlamaForCausalLM

        from wildmerge.demo.tokenizer import build_tokenizer
        from wildmerge.demo.train import model_config

        torch.manual_seed(seed)
        model = LlamaForCausalLM(model_config())
        model.save_pretrained(str(model_dir))
        build_tokenizer().save_pretrained(str(model_dir))
        (model_dir / "done").write_text("")
    return tasks_dir, model_dir, list(TASKS)


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall s, cpu s, stdout+stderr); raise on failure."""
    c0, t0 = cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=REPO)
    wall, cpu = time.perf_counter() - t0, cpu_children() - c0
    log.write_text(proc.stdout)
    if proc.returncode:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}), log {log}:\n{proc.stdout[-3000:]}")
    return wall, cpu, proc.stdout


def lm_eval_scores(out_dir: Path, tasks: list[str]) -> dict[str, dict[str, float]]:
    files = sorted(out_dir.rglob("results*.json"))
    if not files:
        raise RuntimeError(f"lm_eval wrote no results under {out_dir}")
    res = json.loads(files[-1].read_text())["results"]
    return {t: {k.split(",")[0]: v for k, v in res[t].items() if k.split(",")[0] in ("acc", "acc_norm")} for t in tasks}


def wildmerge_scores(out_files: dict[str, Path]) -> dict[str, dict[str, float]]:
    scores = {}
    for task, path in out_files.items():
        metrics = json.loads(path.read_text())["metrics"]
        scores[task] = {k.split(",")[0]: v for k, v in metrics.items() if k.split(",")[0] in ("acc", "acc_norm")}
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--repeats", type=int, default=3, help="repetitions per variant; the median is reported (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1 = the evaluate rule's)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random-init model")
    ap.add_argument("--workdir", type=Path, help="model, tasks and outputs (default: a reusable dir in $TMPDIR)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.gettempdir()) / f"wildmerge-bench-eval-s{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    tasks_dir, model_dir, tasks = build(work, args.seed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out_root, logs = work / "out", work / "logs"
    shutil.rmtree(out_root, ignore_errors=True)
    logs.mkdir(exist_ok=True)

    lm_eval_cmd = [str(VENV_BIN / "lm_eval"), "run", "--model", "hf",
                   "--model_args", f"pretrained={model_dir},dtype={DTYPE}", "--tasks", ",".join(tasks),
                   "--include_path", str(tasks_dir), "--batch_size", str(BATCH_SIZE), "--device", "cpu",
                   "--seed", str(SEED), "--output_path", str(out_root / "lm_eval")]
    out_files = {t: out_root / "wildmerge" / f"{t}.json" for t in tasks}
    wm_args = {"model": str(model_dir), "tasks": tasks, "out_files": {t: str(p) for t, p in out_files.items()},
               "include_path": str(tasks_dir), "batch_size": BATCH_SIZE, "dtype": DTYPE, "seed": SEED,
               "threads": args.threads}
    wm_cmd = [sys.executable, "-c", WM_EVAL, json.dumps(wm_args)]
    print(f"model {model_dir} (random-init demo Llama), {len(tasks)} demo tasks, batch size {BATCH_SIZE}, "
          f"{args.threads} torch thread(s), median of {args.repeats}", flush=True)

    wall: dict[str, list[float]] = {"wildmerge": [], "lm_eval": []}
    cpu: dict[str, list[float]] = {"wildmerge": [], "lm_eval": []}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    loads: list[int] = []
    log_loads: list[int] = []
    for rep in range(args.repeats):
        order = ["wildmerge", "lm_eval"] if rep % 2 == 0 else ["lm_eval", "wildmerge"]
        for variant in order:
            shutil.rmtree(out_root, ignore_errors=True)
            try:
                if variant == "wildmerge":
                    w, c, out = run(wm_cmd, env, logs / "wildmerge.log")
                    line = next(x for x in out.splitlines() if x.startswith("BENCH "))
                    loads.append(len(json.loads(line[6:])["loads"]))
                    log_loads.append(len(re.findall(r"loaded \S+ in [\d.]+s", out)))
                    scores.setdefault(variant, wildmerge_scores(out_files))
                else:
                    w, c, _ = run(lm_eval_cmd, env, logs / "lm_eval.log")
                    scores.setdefault(variant, lm_eval_scores(out_root / "lm_eval", tasks))
            except (RuntimeError, StopIteration, KeyError) as error:
                print(f"FAILED {variant} (repeat {rep + 1}): {error!r}", file=sys.stderr)
                return 1
            wall[variant].append(w)
            cpu[variant].append(c)
            print(f"  repeat {rep + 1} {variant:9s} {w:6.2f} s wall {c:6.2f} s cpu", flush=True)
    shutil.rmtree(out_root, ignore_errors=True)

    wm, le = statistics.median(wall["wildmerge"]), statistics.median(wall["lm_eval"])
    wmc, lec = statistics.median(cpu["wildmerge"]), statistics.median(cpu["lm_eval"])
    print(f"\n{'':10s} {'wildmerge':>10s} {'lm_eval':>10s} {'wm/lm_eval':>10s}")
    print(f"{'wall s':10s} {wm:10.2f} {le:10.2f} {wm / le:10.3f}")
    print(f"{'cpu s':10s} {wmc:10.2f} {lec:10.2f} {wmc / lec:10.3f}")
    print(f"goal: wildmerge/lm_eval <= {GOAL} (wall): {'met' if wm / le <= GOAL else 'NOT met'}")
    print(f"model loads in the wildmerge job: {loads} (from_pretrained calls per run), "
          f"{log_loads} ('loaded ... in' log lines); goal 1: {'met' if set(loads) == {1} else 'NOT met'}")

    print(f"\n{'task':16s} {'acc wm':>8s} {'acc lm':>8s} {'norm wm':>8s} {'norm lm':>8s}")
    same = True
    for t in tasks:
        a, b = scores["wildmerge"][t], scores["lm_eval"][t]
        print(f"{t:16s} {a.get('acc', float('nan')):8.4f} {b.get('acc', float('nan')):8.4f} "
              f"{a.get('acc_norm', float('nan')):8.4f} {b.get('acc_norm', float('nan')):8.4f}")
        same &= a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-12 for k in a)
    print(f"accuracies equal: {same}")
    print("all runs, wall s: " + json.dumps({k: [round(x, 2) for x in v] for k, v in wall.items()}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
