"""Validation of the score files aggregation reads: a file edited, truncated or copied from
another model must stop the aggregation with its name and the command that redoes it, and so
must one benchmark's files computed from different versions of its task."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from wildmerge.provenance import stable_hash

__all__ = ["ScoreFileError", "check_task_versions", "read_score_file", "redo_command"]

#: Up to this many files, a message's redo command names them; beyond, all of the benchmark's.
REDO_FILES = 12

#: What every score file holds (written by wildmerge.evaluation.lm_eval_run.evaluate_model).
SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["base", "model_id", "role", "n", "benchmark", "metric", "value"],
    "properties": {
        "base": {"type": "string"},
        "model_id": {"type": "string"},
        "role": {"enum": ["base", "expert", "merged"]},
        "method": {"type": "string"},
        "n": {"type": "integer", "minimum": 0},
        "subset_id": {"type": "string"},
        "members": {"type": "array", "items": {"type": "string"}},
        "benchmark": {"type": "string"},
        "metric": {"type": "string", "minLength": 1},
        "value": {"type": "number"},
        "stderr": {"type": ["number", "null"]},
        "model_sha256": {"type": "string"},
    },
}


class ScoreFileError(ValueError):
    """A score file that cannot be aggregated; the message names it and how to redo it."""


def redo_command(path: str | Path | Iterable[str | Path]) -> str:
    """The command that re-scores (model, benchmark) pairs: without its score file, the next run
    scores it again (its evaluation job's record, not the score file, is the job's output)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return f"rm {' '.join(str(Path(p)) for p in paths)} && snakemake"


def task_version(record: Mapping[str, Any]) -> str | None:
    """The version of the task definition a score was computed with: the hashes lm-eval's task
    config (and a group's subtasks') had in its job (``task_hash``, ``subtask_hashes``), or None
    for a file without them."""
    if record.get("task_hash") is None:
        return None
    return stable_hash({"task": record["task_hash"], "subtasks": record.get("subtask_hashes") or {}}, 12)


def check_task_versions(records: Iterable[tuple[str | Path, Mapping[str, Any]]],
                        redo: Callable[[list[Path]], str] | None = None) -> None:
    """Stop (ScoreFileError) when one benchmark's score files were computed with different
    versions of its task definition (a task edited, or lm-eval's tasks updated, after some of
    them): a table would mix them. The message names the benchmark, the versions, and the
    command that scores the files of the older versions again (the newest version: the one
    whose newest file was written last; ``redo``: that command for a list of files, where
    removing the files is not it)."""
    versions: dict[str, dict[str, list[Path]]] = {}
    for path, record in records:
        version = task_version(record)
        if version is not None:
            bench = str(record.get("benchmark") or Path(path).stem)
            versions.setdefault(bench, {}).setdefault(version, []).append(Path(path))
    problems = []
    for bench, by_version in sorted(versions.items()):
        if len(by_version) < 2:
            continue

        def written(v: str) -> float:
            return max(os.stat(p).st_mtime for p in by_version[v])

        newest = max(by_version, key=written)
        older = sorted(p for v, ps in by_version.items() if v != newest for p in ps)
        if redo is not None:
            command = redo(older)
        elif len(older) > REDO_FILES:  # every model's file of this benchmark (score folders: <base>/<model>/)
            command = redo_command([older[0].parent.parent.parent / "*" / "*" / f"{bench}.json"])
        else:
            command = redo_command(older)
        counts = ", ".join(f"{v} ({len(ps)} file{'s' if len(ps) > 1 else ''}, e.g. {sorted(ps)[0]})"
                           for v, ps in sorted(by_version.items(), key=lambda kv: -written(kv[0])))
        problems.append(
            f"benchmark {bench}: its score files were computed with {len(by_version)} versions of its task "
            f"definition (task_hash; newest first): {counts}; a table would mix them. Score the older ones "
            f"again with the current task: `{command}` (with your usual --configfile/--profile)"
        )
    if problems:
        raise ScoreFileError("\n".join(problems))


def read_score_file(path: str | Path) -> dict[str, Any]:
    """The record of ``<results>/scores/<base>/<model>/<benchmark>.json``, checked against
    :data:`SCORE_SCHEMA` and against the base, model and benchmark its path names."""
    from jsonschema import Draft202012Validator

    path = Path(path)

    def fail(why: str) -> ScoreFileError:
        return ScoreFileError(
            f"{path}: {why}; redo it with `{redo_command(path)}` (with your usual --configfile/--profile)"
        )

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise fail(f"unreadable ({err})") from None
    except ValueError as err:
        raise fail(f"not valid JSON ({err}): edited or truncated after its job finished") from None
    errors = list(Draft202012Validator(SCORE_SCHEMA).iter_errors(record))
    if errors:
        e = errors[0]
        where = ".".join(map(str, e.absolute_path)) or "(top level)"
        raise fail(f"not a score file: {where}: {e.message[:120]}")
    if not math.isfinite(record["value"]):
        raise fail(f"value is {record['value']} (not a finite score)")
    expected = {"base": path.parent.parent.name, "model_id": path.parent.name, "benchmark": path.stem}
    for key, want in expected.items():
        if record[key] != want:
            raise fail(f"{key} is {record[key]!r} but the file's path says {want!r} (copied from another model?)")
    return record
