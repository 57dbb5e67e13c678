"""Deterministic job failures, remembered so that Snakemake's retries do not redo them.

A job that fails for a reason a rerun cannot change (a checkpoint with NaN weights, a merge
that overflows) writes a marker next to its log. A retry of the same job (same inputs, none
newer than the marker) fails at once with the recorded message instead of redoing the
work; changing an input (or the config, which changes the job) runs it again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from wildmerge.provenance import atomic_write_json

__all__ = ["DeterministicFailure", "clear", "marker_for", "record", "refuse_if_recorded"]


class DeterministicFailure(RuntimeError):
    """A recorded failure, raised again on a retry without redoing the job."""


def marker_for(log: str | Path) -> Path:
    """The marker of a job's deterministic failure: ``<its log>.failed.json``, next to the log."""
    return Path(f"{log}.failed.json")


def _mtime(path: Path) -> float:
    if path.is_dir():
        return max([path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")])
    return path.stat().st_mtime if path.exists() else 0.0


def refuse_if_recorded(marker: str | Path, inputs: Iterable[str | Path]) -> None:
    marker = Path(marker)
    if not marker.is_file():
        return
    if any(_mtime(Path(p)) > marker.stat().st_mtime for p in inputs):
        marker.unlink()  # an input changed since: try again
        return
    message = json.loads(marker.read_text())["message"]
    raise DeterministicFailure(
        f"{message}\n(not retried: this failure is deterministic, recorded in {marker}; "
        f"fix the cause and rerun -- the marker is ignored once an input changes)"
    )


def record(marker: str | Path, message: str) -> None:
    atomic_write_json(marker, {"message": message})


def clear(marker: str | Path) -> None:
    Path(marker).unlink(missing_ok=True)
