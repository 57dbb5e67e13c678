"""The first steps of every evaluation job (rules evaluate, merge_evaluate, evaluate_suite)."""

from __future__ import annotations

import logging
import os
from typing import Any


def start_job(smk: Any) -> tuple[logging.Logger, list[dict[str, Any]]]:
    """Take the hub offline with the job's fetched datasets pinned, then log to the rule's log
    and limit torch to the job's threads. Returns the log and the dataset records (provenance).

    Import nothing from lm-eval or ``datasets`` before calling this: their offline switches are
    read at import (``use_fetched_data``). Forked from the warm worker, they are imported
    already, and ``use_fetched_data`` sets the switches on the loaded modules.
    """
    from wildmerge.hub.datasets import use_fetched_data

    datasets = use_fetched_data([str(smk.input.data)] if "data" in smk.input.keys() else [])

    from wildmerge.smk import limit_threads, setup_logging

    log = setup_logging(smk)
    limit_threads(smk)
    return log, datasets


def warm_prepare(smk: Any) -> tuple[str, list[str]] | None:
    """What the warm worker loads for this job before forking it (wildmerge.warm.run_warm's
    ``prepare``): the datasets of the job's data index, which this and later jobs then inherit
    instead of each loading ~100 of them twice (its check, then lm-eval's tasks)."""
    if "data" not in smk.input.keys():
        return None
    return "wildmerge.hub.datasets:preload_fetched", [os.path.abspath(str(smk.input.data))]
