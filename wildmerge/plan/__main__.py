"""``python -m wildmerge.plan --configfile config/paper.yaml [--gpu h100] [--json FILE]``: what a
study costs before (and while) it runs. Runs no job and downloads no weights; offline it uses only
what is on disk (the lock file, fetched config.json and data, finished jobs' benchmark files)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wildmerge.plan.report import (
    Plan,
    human_bytes,
    load_calibration,
    save_calibration,
)
from wildmerge.plan.throughput import MACHINES, Machine, parse_overrides


def load_config(files: list[str], budget: str | None) -> dict[str, Any]:
    from snakemake.utils import update_config

    from wildmerge.study.configcheck import load_strict

    config: dict[str, Any] = {}
    for f in files:
        update_config(config, load_strict(f) or {})
    if budget is not None:
        from wildmerge.evaluation.budget import check_budget

        value = None if budget == "none" else (float(budget) if "." in budget else {"items": int(budget)})
        check_budget(value, "--budget")
        config.setdefault("evaluation", {})["budget"] = value
    return config


def _h(seconds: float) -> str:
    """Hours, or seconds below a tenth of an hour (the demo)."""
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds:,.1f} s"


def render(plan: Plan, totals: dict[str, Any], title: str, calibration: dict[str, Any] | None,
           checks: list[tuple[Any, float]]) -> str:
    m = plan.machine
    unit = "CPU" if m.kind == "cpu" else "GPU"
    out = [f"# {title}", ""]
    out.append(f"Machine: {m.kind} (one {unit} per job); budget: {plan.study.budget}; checkpoint sizes from: "
               + ", ".join(f"{k} ({v})" for k, v in sorted(plan.size_sources.items())))
    out += ["", "## Jobs and time per rule", "", "| rule | jobs | per base | time | share |", "|---|---|---|---|---|"]
    total_s = sum(r["seconds"] for r in totals["per_rule"].values()) or 1.0
    from wildmerge.plan.counts import job_counts

    counts = job_counts(jp.job for jp in totals["_plans"])
    for rule, r in sorted(totals["per_rule"].items(), key=lambda kv: -kv[1]["seconds"]):
        bases = ", ".join(f"{b}: {n}" for b, n in sorted(counts.get(rule, {}).items()) if b) or "-"
        gpu = " (GPU)" if r["gpu"] else ""
        out.append(f"| {rule}{gpu} | {int(r['jobs']):,} | {bases} | {_h(r['seconds'])} | "
                   f"{100 * r['seconds'] / total_s:.1f} % |")
    out += ["", "## Totals", ""]
    out.append(f"- jobs: {totals['jobs']:,}")
    label = "GPU-hours" if unit == "GPU" else "CPU time"
    out.append(f"- {label} (merge/evaluation jobs, one {unit} each): **{_h(3600 * totals['gpu_hours'])}**"
               + "".join(f"; {k} {_h(3600 * v)}" for k, v in totals["gpu_split_hours"].items()))
    out.append(f"- other jobs (demo, fetch, pre-flight, geometry, aggregation; no GPU): {_h(3600 * totals['cpu_job_hours'])}")
    out.append("- per base: " + ", ".join(f"{b} {_h(3600 * h)}" for b, h in sorted(totals["per_base_hours"].items())))
    out.append("- per stage: " + ", ".join(f"{s} {_h(3600 * h)} ({100 * h * 3600 / total_s:.0f} %)"
                                           for s, h in sorted(totals["per_stage_hours"].items(), key=lambda kv: -kv[1])))
    out.append(f"- downloaded (checkpoints): {human_bytes(totals['download_bytes'])}"
               f" = peak of the shared cache ($HF_HOME)")
    out.append(f"- read by merges (base + n experts each): {human_bytes(totals['merge_read_bytes'])};"
               f" written: {human_bytes(totals['merge_written_bytes'])}")
    if totals["svds"] is not None:
        out.append(f"- SVDs: {totals['svds']:,}")
    out.append(f"- evaluation forward tokens: {totals['forward_tokens']:,.3g}")
    out.append(f"- peak node-local scratch (merge.models_dir) per GPU job: "
               f"{human_bytes(totals['scratch_peak_per_job_bytes'])} (one merged model; with merge.keep_models: "
               f"{human_bytes(totals['scratch_keep_models_bytes'])})")
    out += ["", "## Per base: layout and SVDs per merge", "",
            "| base | layout (source) | params | checkpoint | SVDs per merge (count x rows x cols) |", "|---|---|---|---|---|"]
    from wildmerge.plan.counts import svds

    for b, lay in plan.layouts.items():
        if lay is None:
            out.append(f"| {b} | unknown | | | |")
            continue
        methods = sorted({mm.method for mm in plan.study.methods.values()})
        n = max((s.n for s in plan.study.bases[b].subsets), default=2)
        per = "; ".join(f"{meth} (n={n}): " + ", ".join(f"{k}x{r}x{c}" for k, r, c in svds(meth, n, lay))
                        for meth in methods if svds(meth, n, lay))
        out.append(f"| {b} | h={lay.hidden}, I={lay.intermediate}, L={lay.layers}, heads={lay.heads}/{lay.kv_heads}, "
                   f"V={lay.vocab}{', tied' if lay.tied else ''} ({lay.source}) | {lay.params / 1e9:.2f} B | "
                   f"{human_bytes(plan.ck_bytes[(b, 'base')])} | {per or '-'} |")
    out += ["", "## Evaluation per model (first base)", "",
            "| benchmark | items | requests | forward passes | tokens | source |", "|---|---|---|---|---|---|"]
    first = next(iter(plan.study.bases))
    names = sorted(set(plan.study.benchmark_names).union(*plan.study.suites.values()))
    for name in names:
        s = plan.bench(first, name)
        out.append(f"| {name} | {s.items:,.0f} | {s.requests:,.0f} | {s.forwards:,.0f} | {s.tokens:,.0f} | {s.source} |")
    out += ["", "## Constants (override with --set KEY=VALUE)", "", "| constant | value | source |", "|---|---|---|"]
    for k, v, s in m.constants():
        out.append(f"| {k} | {v:.4g} | {s} |")
    if plan.startup:
        out.append("| start-up per job | " + ", ".join(f"{r} {v:.2f} s" for r, v in sorted(plan.startup.items()))
                   + " | calibrated |")
    if checks:
        pred = sum(jp.seconds for jp, _ in checks)
        meas = sum(t for _, t in checks)
        out += ["", f"## Finished jobs: predicted vs measured ({len(checks)} jobs)", "",
                f"predicted {_h(pred)}, measured {_h(meas)} ({100 * (pred / meas - 1) if meas else 0:+.0f} %)"]
    if calibration:
        out.append(f"(calibration written: {calibration.get('_path')})")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars while measuring tokens
    p = argparse.ArgumentParser(prog="python -m wildmerge.plan", description=__doc__)
    p.add_argument("--configfile", "--configfiles", nargs="+", default=["config.yaml"])
    p.add_argument("--gpu", default="h100", choices=sorted(MACHINES), help="GPU kind (cpu: a CPU-only machine)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a constant (see the table)")
    p.add_argument("--budget", help="override evaluation.budget: 0.25, 500 (items) or none")
    p.add_argument("--json", metavar="FILE", help="also write the plan as JSON")
    p.add_argument("--online", action="store_true", help="ask the hub for file sizes missing from the lock file")
    p.add_argument("--no-measure", action="store_true", help="use the benchmark table even where data is fetched")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the efficiencies to the finished jobs and save them (<results>/plan/calibration.json)")
    p.add_argument("--cpu-seconds", action="store_true",
                   help="measure jobs in CPU seconds (local runs; with --gpu cpu), not wall seconds")
    p.add_argument("--warm-log", default=".snakemake/log/wildmerge-warm-jobs.jsonl")
    p.add_argument("--remaining", action="store_true", help="plan only what is still to run")
    args = p.parse_args(argv)
    try:
        config = load_config(args.configfile, args.budget)
        from wildmerge.study.plan import Study

        study = Study(config)
        machine = Machine.of(args.gpu, parse_overrides(args.set))
    except Exception as err:  # noqa: BLE001 - config and argument errors: one line
        print(f"invalid: {err}", file=sys.stderr)
        return 2
    cal = load_calibration(study.results)
    if cal and cal.get("gpu") != args.gpu:
        cal = None
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    plan = Plan(study, machine, online=args.online, measure=not args.no_measure, log=log)
    checks: list[Any] = []
    if args.calibrate:
        cal, checks = plan.calibrate(cpu=args.cpu_seconds, warm_log=args.warm_log)
        cal["_path"] = str(save_calibration(study.results, cal))
        plan.apply_calibration(cal)
        checks = [(plan.plan_job(jp.job), t) for jp, t in checks]
    elif cal:
        plan.apply_calibration(cal)
    if plan.measure and plan.token_cache.entries:
        plan.token_cache.save()
    plans = plan.remaining() if args.remaining else plan.plans
    totals = plan.totals(plans)
    totals["_plans"] = plans
    title = f"Plan of {', '.join(args.configfile)}" + (" (remaining)" if args.remaining else "")
    sys.stdout.write(render(plan, totals, title, cal, checks))
    if args.json:
        out = {k: v for k, v in totals.items() if not k.startswith("_")}
        out["machine"] = {"kind": plan.machine.kind,
                          "constants": [{"key": k, "value": v, "source": s} for k, v, s in plan.machine.constants()]}
        out["startup"] = plan.startup
        out["jobs_planned"] = [{"rule": jp.job.rule, "base": jp.job.base, "model": jp.job.model, "n": jp.job.n,
                                "method": jp.job.method, "seconds": jp.seconds, "parts": jp.parts} for jp in plans]
        if checks:
            out["finished"] = [{"rule": jp.job.rule, "base": jp.job.base, "model": jp.job.model,
                                "predicted_s": jp.seconds, "measured_s": t} for jp, t in checks]
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
