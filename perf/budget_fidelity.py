"""Fidelity of the evaluation budget (issue 13), on a demo study with >= 1,000 items per task.

Runs the demo zoo (tiny base, 8 experts, 2 subsets each of n = 2, 4 and all 8, the 7 methods)
on its own larger tasks: ``fid_compare`` (1,000 items) and the group ``fid_mix`` of
``fid_copy`` and ``fid_count`` (1,000 items each: the stratified case), with per-item outcomes,
then for each budget (10 %, 25 %, 50 %) draws the sample the workflow draws
(``wildmerge.evaluation.budget.sample_ids``: same seed, same strata) and recomputes the Table 1/3 cells on
the sampled items. A budgeted evaluation's outcomes are the full evaluation's outcomes of the
sampled items (``tests/test_items.py`` checks this on real lm-eval runs), so this is the
budgeted study's result without evaluating it again. Prints, per budget:

* the share of forward passes saved (loglikelihood requests: one per choice of each item);
* max |delta| of the Table 1/3 cells (% beating base, mean gain) against the full evaluation;
* method-ranking flips per (base, n) (methods ordered by mean gain);
* whether every full-evaluation cell lies inside the budgeted run's 95% interval (item
  sampling: subsets fixed; and item x subset sampling);
* the width ratio unpaired / paired of the item intervals of the mean gain.

    .venv/bin/python perf/budget_fidelity.py [--workdir DIR] [--cores 2] [--skip-run]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wildmerge.aggregate.scores import read_scores  # noqa: E402
from wildmerge.evaluation.budget import sample_ids  # noqa: E402
from wildmerge.demo.skills import SKILLS, eval_examples, eval_item  # noqa: E402
from wildmerge.demo.tasks import task_config  # noqa: E402
from wildmerge.evaluation.items import read_items  # noqa: E402
from wildmerge.aggregate.item_tables import paired_tables  # noqa: E402

N_ITEMS = 1000
SEED = 1234
TABLES = {"table1": ["ta", "ties", "model_stock"], "table3": ["tsv", "iso_c", "ta_sb", "ties_sb"]}


def make_tasks(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    for skill in ("compare", "copy", "count"):
        name = f"fid_{skill}"
        rng = random.Random(f"fidelity:{skill}")
        items = [eval_item(SKILLS[skill], ex, rng) for ex in eval_examples(SKILLS[skill], N_ITEMS, rng)]
        data = out / f"{name}.jsonl"
        data.write_text("".join(json.dumps(it, sort_keys=True) + "\n" for it in items))
        (out / f"{name}.yaml").write_text(yaml.safe_dump(task_config(name, data), sort_keys=False))
    group = {"group": "fid_mix", "task": ["fid_copy", "fid_count"],
             "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
             "metadata": {"version": 1.0}}
    (out / "fid_mix.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
    return ["fid_compare", "fid_mix"]


def study_config(work: Path, benchmarks: list[str], sizes: list, per_size: int) -> Path:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg.update(study="fidelity", results="results/fidelity")
    cfg["subsets"].update(sizes=sizes, per_size=per_size)
    cfg["methods"] = {m: spec for m, spec in cfg["methods"].items() if any(m in ms for ms in TABLES.values())}
    cfg["evaluation"].update(include_path=str(work / "tasks"), benchmarks=benchmarks, seed=SEED, per_item=True)
    cfg["tables"] = TABLES
    path = work / "fidelity.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_study(work: Path, cores: int, sizes: list, per_size: int) -> float:
    benches = make_tasks(work / "tasks")
    cfg = study_config(work, benches, sizes, per_size)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
                    "--configfile", str(cfg), "--cores", str(cores), "--quiet", "rules", "--rerun-incomplete"], check=True, env=env)
    return time.time() - t0


def load(work: Path) -> tuple[pd.DataFrame, dict, dict[str, int], dict[str, int]]:
    res = work / "results" / "fidelity"
    scores = read_scores(res / "scores.csv")
    files = {(p.parent.parent.name, p.parent.name, p.stem): p for p in sorted((res / "items").glob("*/*/*.parquet"))}
    one = next(iter({m for _, m, _ in files}))
    sizes: dict[str, int] = {}
    choices: dict[str, int] = {}  # item id -> choices (loglikelihood requests)
    for (_, m, _), f in files.items():
        if m != one:
            continue
        df = read_items(f)
        sizes.update(df.groupby("task").size().to_dict())
        choices.update(dict(zip(df["item_id"], df["logliks"].map(len))))
    return scores, files, sizes, choices


def bench_tasks(files: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for (_, _, b), f in files.items():
        if b not in out:
            out[b] = sorted(read_items(f, ["task"])["task"].unique())
    return out


def cells(scores: pd.DataFrame, files: dict, item_ids: dict | None, n_boot: int, subsets: bool) -> pd.DataFrame:
    frames = []
    for table, methods in TABLES.items():
        c, _ = paired_tables(scores, files, methods, "base", n_boot=n_boot, item_ids=item_ids, resample_subsets=subsets)
        frames.append(c.assign(table=table))
    return pd.concat(frames, ignore_index=True).set_index(["table", "base", "method", "n"])


def flips(full: pd.DataFrame, budget: pd.DataFrame) -> tuple[int, int]:
    """(base, n) pairs (n >= 2, every table's methods together) whose method order by mean
    gain differs between the full and budgeted evaluation, out of how many."""
    f, b = full.reset_index(), budget.reset_index()
    flipped = total = 0
    for (base, n), grp in f[f.n >= 2].groupby(["base", "n"]):
        if grp.method.nunique() < 2:
            continue
        total += 1
        order_full = list(grp.sort_values("mean_gain", ascending=False).method)
        bg = b[(b.base == base) & (b.n == n)]
        if list(bg.sort_values("mean_gain", ascending=False).method) != order_full:
            flipped += 1
    return flipped, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/wildmerge-fidelity"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--skip-run", action="store_true", help="reuse a finished study in --workdir")
    ap.add_argument("--sizes", nargs="+", default=["2", "4", "all"], help="subsets.sizes (the demo's by default)")
    ap.add_argument("--per-size", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=None, help="keep only these methods (default: all 7)")
    args = ap.parse_args()
    if args.methods:
        for name in TABLES:
            TABLES[name] = [m for m in TABLES[name] if m in args.methods]
    subset_sizes = [s if s == "all" else int(s) for s in args.sizes]
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if not args.skip_run:
        print(f"full study: {run_study(work, args.cores, subset_sizes, args.per_size):.0f} s wall")
    scores, files, sizes, choices = load(work)
    tasks = bench_tasks(files)
    models = len({(b, m) for b, m, _ in files})
    print(f"{models} models; items per task: {sizes}; benchmarks: {tasks}")
    print(f"methods: {TABLES}; subsets.sizes {subset_sizes}, per_size {args.per_size}")
    full = cells(scores, files, None, args.n_boot, subsets=False)
    total_requests = sum(choices.values())
    for budget in args.budgets:
        ids = {}
        for bench, ts in tasks.items():
            sample = sample_ids({t: sizes[t] for t in ts}, budget, SEED)
            ids[bench] = [f"{t}/{i}" for t, v in sample.items() for i in v]
        requests = sum(choices[i] for v in ids.values() for i in v)
        items_only = cells(scores, files, ids, args.n_boot, subsets=False)
        both = cells(scores, files, ids, args.n_boot, subsets=True)
        d_pct = (items_only.pct_better - full.pct_better).abs().max()
        d_gain = (items_only.mean_gain - full.mean_gain).abs().max()
        in_items = ((full.mean_gain >= items_only.mean_gain_lo - 1e-9) & (full.mean_gain <= items_only.mean_gain_hi + 1e-9))
        in_items_pct = ((full.pct_better >= items_only.pct_better_lo - 1e-9) & (full.pct_better <= items_only.pct_better_hi + 1e-9))
        in_both = ((full.mean_gain >= both.mean_gain_lo - 1e-9) & (full.mean_gain <= both.mean_gain_hi + 1e-9))
        in_both_pct = ((full.pct_better >= both.pct_better_lo - 1e-9) & (full.pct_better <= both.pct_better_hi + 1e-9))
        flipped, pairs = flips(full, items_only)
        ratio = items_only.width_ratio.replace([np.inf], np.nan).dropna()
        print(f"\nbudget {budget:.0%}: {sum(len(v) for v in ids.values())} of {sum(sizes.values())} items per model")
        print(f"  forward passes saved: {1 - requests / total_requests:.1%} ({requests} of {total_requests} requests per model)")
        print(f"  max |delta| vs full over {len(full)} Table 1/3 cells: % beating base {d_pct:.1f} points, mean gain {d_gain:.3f} points")
        print(f"  method-ranking flips: {flipped} of {pairs} (base, n)")
        print(f"  full value inside the budgeted 95% interval, item sampling: mean gain {int(in_items.sum())}/{len(full)}, "
              f"% better {int(in_items_pct.sum())}/{len(full)}; items x subsets: mean gain {int(in_both.sum())}/{len(full)}, "
              f"% better {int(in_both_pct.sum())}/{len(full)}")
        print(f"  item-interval width unpaired / paired: median {ratio.median():.2f} (min {ratio.min():.2f}, max {ratio.max():.2f})")
        w = (items_only.mean_gain_hi - items_only.mean_gain_lo)
        print(f"  paired item-interval width of the mean gain: median {w.median():.2f} points (max {w.max():.2f})")


if __name__ == "__main__":
    main()
