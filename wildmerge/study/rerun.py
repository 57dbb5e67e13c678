"""Rerun state, read from disk at DAG build: which scores are current, which evaluation records
exist and which this run writes, which manifests are gone. What the rules ask to plan only what
changed. The plan, the paths and the score keys (a function of the config alone) are
wildmerge.study.plan's, which reads nothing."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from wildmerge.hub.lock import read_lock, recorded_commits
from wildmerge.provenance import stable_hash
from wildmerge.smk import alternatives_regex
from wildmerge.study.plan import Study

if TYPE_CHECKING:  # pandas (via the budget) is imported by the jobs only, not at DAG build
    from wildmerge.evaluation.job import Targets


#: An evaluation record's name: a hash (Reruns.evaluation_record).
RECORD = "[0-9a-f]{16}"


class Reruns:
    """The state of a study's results on disk: pending benchmarks per model, evaluation records."""

    def __init__(self, study: Study):
        self.study = study
        self._records: dict[tuple[str, str], str | None] = {}  # evaluation_record, per model

    @functools.cached_property
    def locked_commits(self) -> dict[str, str]:
        """Lock key -> commit of the study's hub lock (``<results>/hub.lock``); {} before any fetch."""
        try:
            return {k: e.commit for k, e in read_lock(Path(self.study.results) / "hub.lock").items()}
        except ValueError:
            return {}  # a damaged lock is reported, naming the line, by the fetch jobs

    def _moved_in_lock(self, record: Mapping[str, Any], bench: str) -> list[str]:
        """The hub commits (``key -> commit``) the score was computed from that are no longer
        the locked ones."""
        lock = self.locked_commits
        if not lock:
            return []
        return sorted(f"{k} -> {lock[k]}" for k, c in recorded_commits(record, bench).items() if lock.get(k, c) != c)

    def pending_benchmarks(self, base: str, model: str) -> tuple[str, ...]:
        """Benchmarks (in name order) whose score file of this model is missing or was
        computed with other score-relevant settings; () when every score is current."""
        out = []
        for name in sorted(self.study.benchmark_names):
            try:
                with open(self.study.score_file(base, model, name)) as f:
                    record = json.load(f)
                current = record.get("score_key") == self.study.score_key(base, model, name)
                # a hub checkpoint or dataset it used moved in the lock (`wildmerge.hub.models update`)
                if current and self._moved_in_lock(record, name):
                    current = False
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                current = False
            if current and self.study.per_item:  # its per-item file comes from the same job
                current = os.path.exists(self.study.item_file(base, model, name))
            if not current:
                out.append(name)
        return tuple(out)

    @functools.cached_property
    def _pending(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(base, model) -> its pending benchmarks, for every model with any."""
        out = {}
        for base, model in self.study.evaluated_models():
            names = self.pending_benchmarks(base, model)
            if names:
                out[(base, model)] = names
        return out

    def is_pending(self, base: str, model: str) -> bool:
        """Whether any benchmark of this model has to be scored (pending_benchmarks)."""
        return (base, model) in self._pending

    def evaluation_record(self, base: str, model: str) -> str | None:
        """The one Snakemake output of a model's evaluation job: a record the job writes last.
        The job writes the score (and per-item) files of the benchmarks it finds pending itself,
        each atomically; they are not outputs, so the paper study's DAG tracks ~2k files, not
        ~76k.

        With pending benchmarks: a new name, a hash of the records already there (the job
        removes those), so Snakemake runs the job. Otherwise the record that is there (an input
        of the aggregation, made by no rule: pending_records), or None without one. Read from
        the folder once per model (the rules ask more than once)."""
        if (base, model) in self._records:
            return self._records[(base, model)]
        self._records[(base, model)] = self._find_record(base, model)
        return self._records[(base, model)]

    def _find_record(self, base: str, model: str) -> str | None:
        folder = self.study.record_dir(base, model)
        try:
            before = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        except OSError:
            before = []
        if self.is_pending(base, model):
            return self.study.record_file(base, model, stable_hash({"base": base, "model": model, "records": before}, 16))
        if before:
            return f"{folder}/{max(before, key=lambda f: os.stat(f'{folder}/{f}').st_mtime_ns)}"
        return None

    def pending_records(self) -> list[str] | None:
        """Names (hashes) of the records the evaluation jobs of this run write, or None when every
        evaluated model is pending: what the evaluation rule's output is constrained to, so that
        the record of a model whose scores are current is a plain file, not a job's output."""
        pending = [pair for pair in self.study.evaluated_models() if self.is_pending(*pair)]
        if len(pending) == len(self.study.evaluated_models()):
            return None
        return [Path(self.evaluation_record(b, m)).stem for b, m in pending]

    def record_pattern(self) -> str:
        """The evaluation rules' constraint on the record wildcard: exactly the records this run
        writes (any record name when every model is pending; none when no model is)."""
        pending = self.pending_records()
        return RECORD if pending is None else alternatives_regex(pending) or "(?!)"

    def missing_manifests(self, pairs: list[tuple[str, str]]) -> list[str]:
        """Manifests of the merges among ``pairs`` whose scores are current but whose manifest
        is gone: the aggregation's inputs, so those merges run again (the others are read)."""
        out = []
        for b, m in pairs:
            path = self.study.manifest_file(b, m)
            if m.startswith("m-") and not self.is_pending(b, m) and not os.path.exists(path):
                out.append(path)
        return out

    def evaluation_records(self, pairs: list[tuple[str, str]]) -> list[str]:
        """The evaluation records of ``pairs`` (of those that have one: evaluation_record)."""
        return [r for b, m in pairs if (r := self.evaluation_record(b, m))]

    def targets(self, base: str, model: str) -> Targets:
        """What an evaluation job of this model scores: its pending benchmarks, into the study's
        score (and per-item) files, with their keys."""
        from wildmerge.evaluation.job import Targets

        study, names = self.study, self.pending_benchmarks(base, model)
        return Targets(
            benchmarks=[study.benchmark_spec(n) for n in names],
            scores={n: study.score_file(base, model, n) for n in names},
            items={n: study.item_file(base, model, n) for n in names} if study.per_item else {},
            score_keys={n: study.score_key(base, model, n) for n in names},
            outcome_keys={n: study.outcome_key(base, model, n) for n in names},
        )
