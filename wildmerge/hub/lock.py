"""The hub lock file: every hub checkpoint resolved once to a commit and its file list.

One JSON object per line (``source``, ``requested``, ``commit``, ``files`` with size and LFS
sha256), keyed by source plus requested revision. Written under an exclusive ``fcntl`` lock so
parallel fetch jobs can add their lines to one file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LockedFile:
    size: int
    sha256: str | None = None  # LFS files only


@dataclass(frozen=True)
class LockEntry:
    source: str
    requested: str | None
    commit: str
    files: dict[str, LockedFile] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return lock_key(self.source, self.requested)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files.values())

    def to_json(self) -> str:
        rec: dict[str, Any] = asdict(self)
        return json.dumps(rec, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> LockEntry:
        rec = json.loads(line)
        files = {name: LockedFile(**f) for name, f in rec.get("files", {}).items()}
        return cls(rec["source"], rec.get("requested"), rec["commit"], files)


def lock_key(source: str, requested: str | None) -> str:
    return f"{source}@{requested or 'main'}"


DATASET_PREFIX = "dataset:"  # lock entries of benchmark datasets


def dataset_source(path: str, name: str | None) -> str:
    return f"{DATASET_PREFIX}{path}" + (f":{name}" if name else "")


def recorded_commits(provenance: Mapping[str, Any], benchmark: str) -> dict[str, str]:
    """Lock key -> commit of every hub checkpoint a score file's provenance records (the model,
    or a merge's base and experts) and of the datasets of its own benchmark."""
    found: dict[str, str] = {}

    def walk(x: Any) -> None:
        if isinstance(x, Mapping):
            if {"source", "commit", "files"} <= x.keys():  # a LockEntry, as checkpoint records hold
                found[lock_key(x["source"], x.get("requested"))] = x["commit"]
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk({k: v for k, v in provenance.items() if k != "datasets"})
    for rec in provenance.get("datasets") or []:
        if isinstance(rec, Mapping) and rec.get("benchmark") == benchmark:
            for d in rec.get("datasets") or []:
                found[lock_key(dataset_source(d["dataset"], d.get("name")), d.get("requested"))] = d["commit"]
    return found


def read_lock(path: Path) -> dict[str, LockEntry]:
    """All entries of the lock file at ``path`` (empty when it does not exist)."""
    if not path.exists():
        return {}
    entries: dict[str, LockEntry] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = LockEntry.from_json(line)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{n}: not a wildmerge hub lock line ({err}); delete the line to re-resolve") from err
        entries[entry.key] = entry
    return entries


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".flock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write(path: Path, entries: dict[str, LockEntry]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(e.to_json() + "\n" for _, e in sorted(entries.items())))
    os.replace(tmp, path)


def get_or_add(path: Path, source: str, requested: str | None, resolve: Any) -> LockEntry:
    """The locked entry for ``source@requested``; on first use ``resolve()`` it and record it."""
    key = lock_key(source, requested)
    with _locked(path):
        entries = read_lock(path)
        if key in entries:
            return entries[key]
        entry: LockEntry = resolve()
        entries[key] = entry
        _write(path, entries)
        return entry


def replace(path: Path, new: list[LockEntry]) -> list[LockEntry]:
    """Write ``new`` entries over the old ones; return those whose commit changed."""
    with _locked(path):
        entries = read_lock(path)
        changed = [e for e in new if entries.get(e.key) is None or entries[e.key].commit != e.commit]
        entries.update({e.key: e for e in new})
        _write(path, entries)
    return changed
