"""Planned SLURM resources (``resources.planned`` in the config): the ``runtime`` and ``mem_mb`` of
each ``merge_evaluate`` and ``evaluate`` job from its own planned work -- its merge size and
method, and the benchmarks it will score -- times a safety factor, with a floor.

The plan is priced on ``resources.planned.gpu`` and calibrated from the jobs that have finished
(their benchmark files: wall seconds), so runtimes follow what the cluster measured; built once
once per DAG build (of the main Snakemake process), with the calibration of the jobs finished before it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from wildmerge.plan.report import Plan
from wildmerge.plan.throughput import Machine
from wildmerge.study.plan import Study


class PlannedResources:
    def __init__(self, study: Study, settings: Mapping[str, Any], reruns: Any = None) -> None:
        self.study, self.settings, self.reruns = study, dict(settings), reruns
        self._plan: Plan | None = None
        self.plan  # noqa: B018 - built now: every job of this run is planned from the same state

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            plan = Plan(self.study, Machine.of(str(self.settings["gpu"])), measure=False)
            cal, _ = plan.calibrate(cpu=False, warm_log=None)
            if cal["jobs"]:
                plan.apply_calibration(cal)
            self._plan = plan
            self._jobs = {(jp.job.rule, jp.job.base, jp.job.model): jp for jp in plan.plans
                          if jp.job.rule in ("evaluate", "merge_evaluate")}
        return self._plan

    def job(self, rule: str, base: str, model: str):
        plan = self.plan
        jp = self._jobs[(rule, base, model)]
        if self.reruns is not None:  # the benchmarks this job will score
            pending = tuple(self.reruns.pending_benchmarks(base, model)) or jp.job.benchmarks
            if pending != jp.job.benchmarks:
                jp = plan.plan_job(dataclasses.replace(jp.job, benchmarks=pending))
        return jp

    def seconds(self, rule: str, base: str, model: str) -> float:
        return self.job(rule, base, model).seconds

    def runtime(self, rule: str, base: str, model: str, attempt: int = 1) -> int:
        """Minutes: planned seconds x safety (x attempt: a retry gets more), at least floor_min."""
        s = self.seconds(rule, base, model) * float(self.settings["safety"]) * max(1, int(attempt)) / 60.0
        return int(max(math.ceil(float(self.settings["floor_min"])), math.ceil(s)))

    def mem_mb(self, rule: str, base: str, model: str, floor: int | None = None) -> int:
        """MB: the job's host memory estimate (its model copies + 4 GiB) x mem_safety, at least ``floor``."""
        mb = math.ceil(self.job(rule, base, model).memory * float(self.settings["mem_safety"]) / (1 << 20))
        return int(max(mb, floor or 0))
