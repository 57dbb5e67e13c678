"""Validation of the score files aggregation reads: a file edited, truncated or copied from
another model must stop the aggregation with its name and the command that redoes it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["ScoreFileError", "read_score_file", "redo_command"]

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


def redo_command(path: str | Path) -> str:
    """The command that re-scores one (model, benchmark): without its score file, the next run
    scores it again (its evaluation job's record, not the score file, is the job's output)."""
    return f"rm {Path(path)} && snakemake"


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
