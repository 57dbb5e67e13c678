"""The evaluation jobs, one function per rule, around one scoring core (:func:`score_model`):

* ``evaluate``: the base or an expert, its pending benchmarks into the study's score files;
* ``merge_evaluate``: a merged model, made (or a kept one reused) in the job, scored, then
  deleted unless merge.keep_models;
* ``evaluate_suite``: a model on a homogeneous group's suite, into one folder of score files.

The job scripts (scripts/<rule>.py) read the Snakemake job and the study and call these.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wildmerge.evaluation.budget import pool_path
from wildmerge.evaluation.lm_eval_run import evaluate_model, write_record
from wildmerge.evaluation.settings import EvalSettings


@dataclass(frozen=True)
class Targets:
    """What one evaluation job scores, and where each benchmark's files go."""

    benchmarks: list[dict[str, Any]]  # specs (name, num_fewshot, metric, prompt options), in order
    scores: dict[str, str]  # benchmark -> score file
    items: dict[str, str] = field(default_factory=dict)  # benchmark -> per-item file ({}: none)
    score_keys: dict[str, str] = field(default_factory=dict)  # benchmark -> score key (study files)
    outcome_keys: dict[str, str] = field(default_factory=dict)  # the keys without the budget

    @property
    def names(self) -> list[str]:
        return [b["name"] for b in self.benchmarks]

    @classmethod
    def folder(cls, folder: str | Path, benchmarks: Sequence[Mapping[str, Any]], per_item: bool) -> Targets:
        """Every benchmark into ``<folder>/<name>.json`` (and ``.parquet``): a suite's scores."""
        names = [b["name"] for b in benchmarks]
        return cls(
            benchmarks=[dict(b) for b in benchmarks],
            scores={n: f"{folder}/{n}.json" for n in names},
            items={n: f"{folder}/{n}.parquet" for n in names} if per_item else {},
        )

    def pools(self) -> dict[str, str]:
        """Per benchmark, the file keeping every item outcome scored so far (wildmerge.evaluation.budget)."""
        out = {}
        for n in self.names:
            if n in self.outcome_keys:
                item = self.items.get(n) or f"{Path(self.scores[n]).parent}/{n}.parquet"
                out[n] = str(pool_path(item, self.outcome_keys[n]))
        return out


def score_model(
    model_dir: str | Path, targets: Targets, settings: EvalSettings, identity: Mapping[str, Any],
    info: Mapping[str, Any], datasets: Sequence[Mapping[str, Any]], log: logging.Logger,
) -> dict[str, float]:
    """The scoring core: ``targets`` scored with ``settings``; each score file's provenance is the
    model's ``identity``, its hash and input record (``info``: pre-flight record or manifest)
    and the benchmark datasets' commits. With nothing to score the model is not even loaded."""
    merged = identity["role"] == "merged"
    provenance = {**identity, "model_sha256": info["output"]["sha256"] if merged else info["sha256"]}
    if datasets:
        provenance["datasets"] = list(datasets)  # benchmark -> hub dataset commits
    provenance["merge" if merged else "checkpoint"] = dict(info)
    log.info("%s/%s: scoring %s", identity["base"], identity["model_id"], targets.names or "nothing (every score is current)")
    if not targets.names:
        return {}
    values = evaluate_model(
        model_dir, targets.benchmarks, targets.scores, settings, provenance=provenance,
        per_benchmark={n: {"score_key": k} for n, k in targets.score_keys.items()},
        items_files=targets.items, pools=targets.pools(),
    )
    for name, value in values.items():
        log.info("%s %s: %.4f", identity["model_id"], name, value)
    return values


def evaluate_checkpoint(
    model_dir: str | Path, targets: Targets, settings: EvalSettings, identity: Mapping[str, Any],
    info: Mapping[str, Any], datasets: Sequence[Mapping[str, Any]], record: str | Path, log: logging.Logger,
) -> None:
    """Rule ``evaluate``: the base or an expert scored on its pending benchmarks, then the record."""
    score_model(model_dir, targets, settings, identity, info, datasets, log)
    write_record(record, targets.scores, targets.items, targets.score_keys)


def merge_evaluate(
    merge: Mapping[str, Any], info_files: Sequence[str], model_dir: str | Path, manifest: str | Path,
    *, keep: bool, device: str, options: Mapping[str, Any] | None = None, marker: str | Path,
    targets: Targets, settings: EvalSettings,
    identity: Mapping[str, Any], datasets: Sequence[Mapping[str, Any]], record: str | Path, log: logging.Logger,
) -> None:
    """Rule ``merge_evaluate``: a merged model made (``merge``: spec, checkpoint folders, dtype;
    merge.device and merge.options are ``device`` and ``options``) or a kept one reused, scored,
    the record written; then deleted unless ``keep``, scored or not (a retry merges it again)."""
    from wildmerge.merging.merged_model import merged_model_to_score

    try:
        info = merged_model_to_score(merge, info_files, model_dir, manifest, needed=bool(targets.names),
                                     device=device, options=options, marker=marker, log=log)
        score_model(model_dir, targets, settings, identity, info, datasets, log)
        write_record(record, targets.scores, targets.items, targets.score_keys)
    finally:
        if not keep:
            shutil.rmtree(model_dir, ignore_errors=True)


def evaluate_suite(
    model_dir: str | Path, targets: Targets, settings: EvalSettings, identity: Mapping[str, Any],
    info: Mapping[str, Any], datasets: Sequence[Mapping[str, Any]], log: logging.Logger,
) -> None:
    """Rule ``evaluate_suite``: a model on a homogeneous group's suite, one folder of score files."""
    score_model(model_dir, targets, settings, identity, info, datasets, log)
