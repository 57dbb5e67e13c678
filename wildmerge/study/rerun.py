"""Rerun state, read from disk at DAG build: which scores are current, which evaluation records
exist and which this run writes, which manifests are gone, which local checkpoints changed. What
the rules ask to plan only what changed. The plan, the paths and the score keys (a function of
the config alone) are wildmerge.study.plan's, which reads nothing.

A local checkpoint (a directory in the config) is tracked by content: its pre-flight record holds
the sha256 of its files and their fingerprint (size, mtime_ns, inode: wildmerge.provenance). At
DAG build (:meth:`Reruns.check_local_checkpoints`) each one's fingerprint is compared with the
record's, and only a changed one is hashed again: the same content (a copy, a `touch`) re-records
the fingerprint, so the next DAG build is cheap again; other content sets the record aside (its
pre-flight runs again) and every score computed from the old content is pending
(:meth:`Reruns.pending_benchmarks` compares the content each score file records).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from wildmerge.hub.lock import read_lock, recorded_commits
from wildmerge.provenance import atomic_write_json, checkpoint_content, fingerprint, same_content, stable_hash
from wildmerge.smk import alternatives_regex
from wildmerge.study.model import Checkpoint
from wildmerge.study.plan import Study

if TYPE_CHECKING:  # pandas (via the budget) is imported by the jobs only, not at DAG build
    from wildmerge.evaluation.job import Targets


log = logging.getLogger("wildmerge")

#: An evaluation record's name: a hash (Reruns.evaluation_record).
RECORD = "[0-9a-f]{16}"


def pending_content_file(record: str | Path) -> Path:
    """Where the DAG build keeps a local checkpoint's content (fingerprint and hashes) while its
    pre-flight record is set aside (the checkpoint changed; its pre-flight removes the file)."""
    return Path(f"{record}.pending")


def _read(path: str | Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


class Reruns:
    """The state of a study's results on disk: pending benchmarks per model, evaluation records.

    ``check_content``: compare each local checkpoint's files with its pre-flight record (hashing
    it again where its fingerprint changed, setting a record of other content aside). Only the
    DAG build of the main Snakemake process does; elsewhere (a cluster job, an evaluation job) a
    checkpoint's content is its pre-flight record's, as the job that reads it records it."""

    def __init__(self, study: Study, check_content: bool = False):
        self.study = study
        self.check_content = check_content
        self._records: dict[tuple[str, str], str | None] = {}  # evaluation_record, per model
        self._content: dict[tuple[str, str], Mapping[str, Any] | None] = {}  # checkpoint_content

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

    # ---- local checkpoints, tracked by content ------------------------------------------
    @functools.cached_property
    def local_checkpoints(self) -> dict[tuple[str, str], Checkpoint]:
        """(base, ``base``/``expert-<name>``) -> checkpoint, of each local one (a directory)."""
        out = {}
        for b in self.study.bases.values():
            named = [("base", b.model)] + [(f"expert-{e}", c) for e, c in {**b.experts, **b.group_experts}.items()]
            out.update({(b.name, mid): c for mid, c in named if c.kind == "local"})
        return out

    def check_local_checkpoints(self) -> None:
        """Compare every local checkpoint with its pre-flight record (:meth:`checkpoint_content`):
        stat calls only, unless one changed. Nothing to do in a study without local ones."""
        for base, mid in self.local_checkpoints:
            self.checkpoint_content(base, mid)

    def checkpoint_content(self, base: str, mid: str) -> Mapping[str, Any] | None:
        """What a local checkpoint's folder holds now (``sha256``, ``files``: as its pre-flight
        records them), or None when unknown (no pre-flight yet). Once per checkpoint and DAG build."""
        key = (base, mid)
        if key not in self._content:
            self._content[key] = self._find_content(base, mid)
        return self._content[key]

    def _find_content(self, base: str, mid: str) -> Mapping[str, Any] | None:
        path = Path(self.study.preflight_record(base, mid))
        record = _read(path)
        if not self.check_content:
            return record
        ck = self.local_checkpoints[(base, mid)]
        try:
            fp = fingerprint(ck.path)
        except OSError:  # gone: the config checks or the pre-flight say so
            return record
        if record is not None and record.get("fingerprint") == fp:
            return record
        pending_path = pending_content_file(path)
        pending = _read(pending_path)
        if pending is not None and pending.get("fingerprint") == fp:
            now: dict[str, Any] = pending  # set aside by an earlier DAG build, its pre-flight still to run
        elif record is None and pending is None:
            return None  # no pre-flight yet: nothing was computed from it
        else:
            name = self._label(base, mid)
            log.warning("%s (%s): its files changed since its pre-flight; hashing them", name, ck.path)
            try:
                now = {"fingerprint": fp, **checkpoint_content(ck.path)}
            except (OSError, ValueError):  # no weights any more: the pre-flight says so
                return record
        if record is None:
            if now is not pending:
                atomic_write_json(pending_path, now)
            return now
        if same_content(record, now):  # a copy or a `touch`: the same content, a new fingerprint
            record = {**record, "fingerprint": fp, "files": record.get("files", now["files"])}
            self._re_record(path, record)
            return record
        log.warning(
            "%s (%s) changed since its pre-flight (sha256 %s... -> %s...): its pre-flight runs again, "
            "with every merge and score computed from it",
            self._label(base, mid), ck.path, str(record.get("sha256"))[:12], now["sha256"][:12],
        )
        self._set_aside(path, now)
        if mid == "base":  # its experts were checked against the base it was
            for e in {**self.study.bases[base].experts, **self.study.bases[base].group_experts}:
                self._set_expert_aside(base, f"expert-{e}")
        return now

    def _label(self, base: str, mid: str) -> str:
        return f"base of '{base}'" if mid == "base" else f"expert '{mid.removeprefix('expert-')}' of '{base}'"

    @staticmethod
    def _re_record(path: Path, record: Mapping[str, Any]) -> None:
        """Rewrite a pre-flight record with its mtime kept: for Snakemake it is not new."""
        st = path.stat()
        atomic_write_json(path, record)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    @staticmethod
    def _set_aside(path: Path, content: Mapping[str, Any]) -> None:
        """Remove a pre-flight record (its job runs again), keeping ``content`` for the DAG builds
        until then (:func:`pending_content_file`)."""
        atomic_write_json(pending_content_file(path), content)
        path.unlink(missing_ok=True)

    def _set_expert_aside(self, base: str, mid: str) -> None:
        path = Path(self.study.preflight_record(base, mid))
        if not path.exists():
            return
        content = self.checkpoint_content(base, mid) if (base, mid) in self.local_checkpoints else None
        if content is not None:  # its own content, unchanged: its scores stay current
            self._content[(base, mid)] = content
            self._set_aside(path, {k: content[k] for k in ("fingerprint", "sha256", "files") if k in content})
        else:
            path.unlink(missing_ok=True)

    def _content_changed(self, record: Mapping[str, Any], base: str, model: str) -> bool:
        """Whether a score file was computed from a local checkpoint (the model, or a merge's base
        or member) whose content is no longer the one it records."""
        if model.startswith("m-"):
            inputs = (record.get("merge") or {}).get("inputs") or {}
            used = [("base", inputs.get("base"))] + [(f"expert-{e}", r) for e, r in (inputs.get("experts") or {}).items()]
        else:
            used = [(model, record.get("checkpoint"))]
        for mid, recorded in used:
            if (base, mid) in self.local_checkpoints and isinstance(recorded, Mapping):
                now = self.checkpoint_content(base, mid)
                if now is not None and not same_content(recorded, now):
                    return True
        return False

    def pending_benchmarks(self, base: str, model: str) -> tuple[str, ...]:
        """Benchmarks (in name order) whose score file of this model is missing or was
        computed with other score-relevant settings, hub commits or local checkpoint content;
        () when every score is current."""
        out = []
        for name in sorted(self.study.benchmark_names):
            try:
                with open(self.study.score_file(base, model, name)) as f:
                    record = json.load(f)
                current = record.get("score_key") == self.study.score_key(base, model, name)
                # a hub checkpoint or dataset it used moved in the lock (`wildmerge.hub.models update`)
                if current and self._moved_in_lock(record, name):
                    current = False
                # a local checkpoint it was computed from holds other content now
                if current and self.local_checkpoints and self._content_changed(record, base, model):
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
