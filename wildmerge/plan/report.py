"""The plan: every job's work and time, totals per base and rule, disk, and planned runtimes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from wildmerge.plan.calibrate import fit, measured_jobs, scored_benchmarks
from wildmerge.plan.counts import (
    GPU_RULES,
    METHOD_PASSES,
    STAGE_OF,
    Layout,
    PlannedJob,
    SizeResolver,
    layout,
    study_jobs,
    svd_flops,
    svds,
)
from wildmerge.plan.throughput import Machine
from wildmerge.plan.tokens import (
    BenchStats,
    TokenCache,
    apply_budget,
    data_identity,
    measure_items,
    stats_of_items,
    table_stats,
    tokenizer_identity,
)
from wildmerge.study.plan import Study

CALIBRATION_FILE = "plan/calibration.json"
#: host memory of a job beside its model copies (Python, torch, lm-eval, CUDA context)
HOST_OVERHEAD_BYTES = 4 << 30


@dataclass
class JobPlan:
    job: PlannedJob
    work: dict[str, float]  # units per kind (KINDS)
    scratch: int = 0  # bytes on merge.models_dir during the job
    memory: int = 0  # host memory estimate
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)  # seconds per kind


class Plan:
    """A study's planned work, priced on one GPU kind (:class:`Machine`)."""

    def __init__(self, study: Study, machine: Machine, *, online: bool = False, measure: bool = False,
                 calibration: Mapping[str, Any] | None = None, log: Any = None) -> None:
        self.study, self.machine, self.log = study, machine, log
        self.sizes = SizeResolver(study, online=online)
        self.layouts: dict[str, Layout | None] = {}
        self.ck_bytes: dict[tuple[str, str], int] = {}
        self.size_sources: dict[str, int] = {}
        self.token_cache = TokenCache(study.results)
        self.tokens: dict[tuple[str, str], BenchStats] = {}
        self.measure = measure
        self.startup: dict[str, float] = {}
        self.calibrated = False
        if calibration:
            self.apply_calibration(calibration)
        for b in study.bases.values():
            lay = layout(b.model)
            self.layouts[b.name] = lay
            for mid in ["base", *[f"expert-{e}" for e in [*b.experts, *b.group_experts]]]:
                s = self.sizes.size(study.checkpoint(b.name, mid), lay)
                self.ck_bytes[(b.name, mid)] = s.nbytes
                label = s.source.split(" (")[0]
                self.size_sources[label] = self.size_sources.get(label, 0) + 1
        self.jobs = study_jobs(study)
        self.plans = [self.plan_job(j) for j in self.jobs]

    # ---- evaluation -------------------------------------------------------------------
    def bench(self, base: str, name: str) -> BenchStats:
        """One benchmark's work for one model of ``base`` (measured, cached, or the table's)."""
        if (base, name) in self.tokens:
            return self.tokens[(base, name)]
        ev = self.study.config["evaluation"]
        spec = next((b for b in self.study.benchmarks if b["name"] == name), {"name": name})
        include = ev.get("include_path")
        include = "resources/demo/tasks" if include == "demo" else include
        tok_dir = self.study.bases[base].model.path
        if self.measure and self.study.bases[base].model.kind == "demo":
            # before any run: the demo's own tasks and tokenizer, made here as its jobs make them
            include, tok_dir = self.demo_inputs(include, tok_dir)
        tok_id = tokenizer_identity(tok_dir)
        data = data_identity(name, include)
        stats = None
        if tok_id is not None and data is not None:
            key = TokenCache.key(name, spec.get("num_fewshot"), tok_id, data)
            items = self.token_cache.get(key)
            if items is None and self.measure:
                try:
                    if Path(f"resources/data/{name}.json").is_file():
                        from wildmerge.hub.datasets import use_fetched_data

                        use_fetched_data([f"resources/data/{name}.json"])
                    items = measure_items(name, include, tok_dir, spec.get("num_fewshot"), int(ev["seed"]))
                    self.token_cache.put(key, items)
                except Exception as err:  # noqa: BLE001 - the table is used instead, and says so
                    if self.log:
                        self.log(f"benchmark {name}: not measured ({type(err).__name__}: {err}); the table is used")
            if items is not None:
                stats = stats_of_items(items, self.study.budget, int(ev["seed"]),
                                       f"measured: its {sum(map(len, items.values()))} items, the base's tokenizer")
        if stats is None:
            stats = apply_budget(table_stats(name), self.study.budget)
        self.tokens[(base, name)] = stats
        return stats

    def demo_inputs(self, include: str | None, tok_dir: str) -> tuple[str | None, str]:
        """The demo's tasks and tokenizer, generated into a temporary folder where no job made them yet."""
        import tempfile

        if not hasattr(self, "_demo_tmp"):
            self._demo_tmp = tempfile.TemporaryDirectory(prefix="wildmerge-plan-")
        tmp = Path(self._demo_tmp.name)
        if include == "resources/demo/tasks" and not Path(include).is_dir():
            if not (tmp / "tasks").is_dir():
                from wildmerge.demo.tasks import make_tasks

                demo = self.study.config.get("demo") or {}
                make_tasks(tmp / "tasks", int(demo.get("n_eval", 100)), int(demo.get("seed", 0)))
            include = str(tmp / "tasks")
        if tokenizer_identity(tok_dir) is None:
            if not (tmp / "tokenizer").is_dir():
                from wildmerge.demo.tokenizer import save_tokenizer

                save_tokenizer(tmp / "tokenizer")
            tok_dir = str(tmp / "tokenizer")
        return include, tok_dir

    def forward_flops(self, base: str, benchmarks: tuple[str, ...]) -> float:
        lay = self.layouts[base]
        if lay is None:
            return 0.0
        total = 0.0
        for name in benchmarks:
            s = self.bench(base, name)
            # the LM head on the continuation's positions only (ContinuationHFLM): one per pass
            head = s.forwards * lay.head_flops
            total += s.tokens * (lay.forward_flops(0.0) - lay.head_flops) + head
            total += 2.0 * lay.layers * lay.heads * lay.head_dim * s.tokens_sq
        return total

    # ---- jobs -------------------------------------------------------------------------
    def merged_bytes(self, base: str) -> int:
        lay = self.layouts[base]
        return lay.nbytes(self.study.config["merge"]["dtype"]) if lay else self.ck_bytes[(base, "base")]

    def eval_bytes(self, base: str, model: str) -> int:
        return self.merged_bytes(base) if model.startswith("m-") else self.ck_bytes.get((base, model), 0)

    def merge_work(self, j: PlannedJob) -> tuple[dict[str, float], int]:
        lay = self.layouts[j.base]
        members = [self.ck_bytes[(j.base, m)] for m in j.members]
        read = self.ck_bytes[(j.base, "base")] + sum(members)
        params = lay.params if lay else read // 2
        passes = METHOD_PASSES.get(j.method, 2)
        flops = sum(k * svd_flops(r, c) for k, r, c in svds(j.method, j.n, lay)) if lay else 0.0
        out = self.merged_bytes(j.base)
        return {"read": read, "tensor": (j.n + 1) * params * 4 * passes, "svd": flops, "write": out}, out

    def plan_job(self, j: PlannedJob) -> JobPlan:
        work: dict[str, float] = {"startup": 1.0}
        scratch = memory = 0
        if j.rule == "fetch_hub_model":
            key = next(k for k in self.ck_bytes if self.study.checkpoint(k[0], k[1]).path == j.model)
            work["download"] = self.ck_bytes[key]
        elif j.rule == "preflight":
            size = self.ck_bytes[(j.base, j.model)]
            work["read"] = size  # hashed, read tensor by tensor
            lay = self.layouts[j.base]
            work["tensor"] = (lay.params if lay else size) * 4  # finite check in float32
        elif j.rule == "geometry":
            b = self.study.bases[j.base]
            sizes = [self.ck_bytes[(j.base, "base")]] + [self.ck_bytes[(j.base, f"expert-{e}")] for e in b.experts]
            work["read"] = sum(sizes)
            lay = self.layouts[j.base]
            work["tensor"] = (lay.params if lay else sizes[0]) * 4 * len(sizes)
        elif j.rule in ("merge", "merge_evaluate"):
            mw, scratch = self.merge_work(j)
            work.update(mw)
            memory = 2 * scratch
        if j.rule in ("evaluate", "merge_evaluate", "evaluate_suite"):
            size = self.eval_bytes(j.base, j.model)
            work["read"] = work.get("read", 0.0) + size
            work["forward"] = self.forward_flops(j.base, j.benchmarks)
            lay = self.layouts[j.base]
            loaded = lay.nbytes(self.study.config["evaluation"]["dtype"]) if lay else size
            memory = max(memory, 2 * loaded)
            if j.rule == "evaluate_suite" and j.model.startswith("m-"):
                scratch = self.merged_bytes(j.base)
        jp = JobPlan(j, work, scratch, memory + HOST_OVERHEAD_BYTES)
        self.price(jp)
        return jp

    def price(self, jp: JobPlan) -> None:
        parts = {}
        for kind, units in jp.work.items():
            if kind == "startup":
                parts[kind] = self.startup.get(jp.job.rule, self.machine.seconds_per_unit("startup")) * units
            else:
                parts[kind] = units * self.machine.seconds_per_unit(kind)
        jp.parts, jp.seconds = parts, sum(parts.values())

    # ---- calibration ------------------------------------------------------------------
    def apply_calibration(self, cal: Mapping[str, Any]) -> None:
        self.machine = self.machine.with_efficiency(dict(cal.get("efficiency") or {}),
                                                    f"calibrated from {cal.get('jobs', 0)} finished jobs")
        self.startup = dict(cal.get("startup") or {})
        self.calibrated = True
        if hasattr(self, "plans"):
            for jp in self.plans:
                self.price(jp)

    def calibrate(self, cpu: bool, warm_log: str | None) -> tuple[dict[str, Any], list[tuple[JobPlan, float]]]:
        """Fit the efficiencies and start-ups to the finished jobs; (calibration, (job, measured))."""
        by_key = {jp.job.key: jp for jp in self.plans}
        rows, pairs = [], []
        for m in measured_jobs(self.study.results, cpu, warm_log):
            jp = by_key.get((m.rule, m.base, m.model, m.record if m.rule == "evaluate_suite" else ""))
            if jp is None or m.rule.startswith("demo_"):
                continue
            scored = scored_benchmarks(self.study.results, m)
            if scored is not None and jp.job.rule in ("evaluate", "merge_evaluate"):
                jp = self.plan_job(dataclasses.replace(jp.job, benchmarks=tuple(scored)))
            base_parts = {k: u * self.machine.seconds_per_unit(k) for k, u in jp.work.items() if k != "startup"}
            rows.append((jp.job.rule, base_parts, m.seconds))
            pairs.append((jp, m.seconds))
        prior = self.machine.seconds_per_unit("startup")
        f = fit(rows, prior)
        eff = {k: self.machine.eff[k].value / mult for k, mult in f.multipliers.items() if mult > 0}
        cal = {"gpu": self.machine.kind, "cpu_seconds": cpu, "jobs": f.jobs, "efficiency": eff, "startup": f.startup}
        return cal, pairs

    # ---- totals -----------------------------------------------------------------------
    def totals(self, plans: list[JobPlan] | None = None) -> dict[str, Any]:
        plans = self.plans if plans is None else plans
        per_rule: dict[str, dict[str, float]] = {}
        per_base: dict[str, float] = {}
        per_stage: dict[str, float] = {}
        for jp in plans:
            r = per_rule.setdefault(jp.job.rule, {"jobs": 0, "seconds": 0.0, "gpu": jp.job.rule in GPU_RULES})
            r["jobs"] += 1
            r["seconds"] += jp.seconds
            per_base[jp.job.base or "(study-wide)"] = per_base.get(jp.job.base or "(study-wide)", 0.0) + jp.seconds
            stage = STAGE_OF.get(jp.job.rule, "other")
            per_stage[stage] = per_stage.get(stage, 0.0) + jp.seconds
        merge_eval = [jp for jp in plans if jp.job.rule in ("merge", "merge_evaluate")]
        gpu_s = sum(jp.seconds for jp in plans if jp.job.rule in GPU_RULES)
        split = {"merging": sum(jp.parts.get(k, 0.0) for jp in merge_eval for k in ("tensor", "svd", "write"))
                 + sum(jp.parts.get("read", 0.0) - self.eval_read_s(jp) for jp in merge_eval)}
        split["evaluation"] = sum(jp.parts.get("forward", 0.0) + self.eval_read_s(jp)
                                  for jp in plans if jp.job.rule in GPU_RULES)
        split["start-up"] = sum(jp.parts.get("startup", 0.0) for jp in plans if jp.job.rule in GPU_RULES)
        return {
            "jobs": len(plans),
            "gpu_hours": gpu_s / 3600,
            "cpu_job_hours": sum(jp.seconds for jp in plans if jp.job.rule not in GPU_RULES) / 3600,
            "gpu_split_hours": {k: v / 3600 for k, v in split.items()},
            "per_rule": per_rule,
            "per_base_hours": {k: v / 3600 for k, v in per_base.items()},
            "per_stage_hours": {k: v / 3600 for k, v in per_stage.items()},
            "download_bytes": sum(jp.work.get("download", 0.0) for jp in plans),
            "merge_read_bytes": sum(jp.work.get("read", 0.0) - self.eval_bytes(jp.job.base, jp.job.model)
                                    * (jp.job.rule == "merge_evaluate") for jp in merge_eval),
            "merge_written_bytes": sum(jp.work.get("write", 0.0) for jp in merge_eval),
            "svds": sum(k for jp in merge_eval for k, _, _ in svds(jp.job.method, jp.job.n, self.layouts[jp.job.base]))
            if all(self.layouts.values()) else None,
            "forward_tokens": sum(self.bench(jp.job.base, b).tokens for jp in plans
                                  if jp.job.rule in ("evaluate", "merge_evaluate", "evaluate_suite")
                                  for b in jp.job.benchmarks),
            "scratch_peak_per_job_bytes": max((jp.scratch for jp in plans), default=0),
            "scratch_keep_models_bytes": sum(self.merged_bytes(jp.job.base) for jp in merge_eval),
            "shared_cache_bytes": sum(jp.work.get("download", 0.0) for jp in plans),
        }

    def eval_read_s(self, jp: JobPlan) -> float:
        if jp.job.rule not in ("evaluate", "merge_evaluate", "evaluate_suite"):
            return 0.0
        return self.eval_bytes(jp.job.base, jp.job.model) * self.machine.seconds_per_unit("read")

    def remaining(self) -> list[JobPlan]:
        """The jobs still to run, the evaluations with only their pending benchmarks."""
        from wildmerge.study.rerun import Reruns

        reruns = Reruns(self.study)
        out = []
        for jp in self.plans:
            j = jp.job
            if j.rule in ("evaluate", "merge_evaluate"):
                pending = reruns.pending_benchmarks(j.base, j.model)
                if not pending:
                    continue
                if pending != j.benchmarks:
                    jp = self.plan_job(dataclasses.replace(j, benchmarks=pending))
            elif j.rule == "preflight" and Path(self.study.preflight_record(j.base, j.model)).is_file():
                continue
            elif j.rule == "fetch_hub_model" and Path(j.model).is_dir():
                continue
            elif j.rule == "geometry" and Path(self.study.result(f"geometry/{j.base}/cosine.csv")).is_file():
                continue
            elif j.rule == "merge" and Path(self.study.manifest_file(j.base, j.model)).is_file():
                continue
            elif j.rule == "evaluate_suite" and Path(self.study.suite_score_dir(j.base, j.suite, j.model)).is_dir():
                continue
            elif j.rule == "fetch_benchmark_data" and Path(f"resources/data/{j.model}.json").is_file():
                continue
            elif j.rule.startswith("demo_") and Path("resources/demo").joinpath(
                    {"demo_base": "base", "demo_tasks": "tasks"}.get(j.rule, f"experts/{j.model}")).is_dir():
                continue
            out.append(jp)
        # the aggregation runs again when anything above it does, or when it never ran
        upstream = any(STAGE_OF.get(jp.job.rule) != "aggregate" for jp in out)
        if not upstream and Path(self.study.result("scores.csv")).is_file():
            out = [jp for jp in out if STAGE_OF.get(jp.job.rule) != "aggregate"]
        return out


def load_calibration(results: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(results) / CALIBRATION_FILE).read_text())
    except (OSError, ValueError):
        return None


def save_calibration(results: str, cal: Mapping[str, Any]) -> Path:
    path = Path(results) / CALIBRATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cal, indent=1, sort_keys=True))
    return path


def human_bytes(n: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"
