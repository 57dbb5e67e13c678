"""Helpers for the thin scripts run by Snakemake's ``script:`` directive."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Iterable


def setup_logging(snakemake: Any) -> logging.Logger:
    """Log to the rule's log file (and stderr), INFO level, timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(str(snakemake.log[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    log = logging.getLogger(f"wildmerge.{snakemake.rule}")

    def log_failure(exc_type, exc, tb) -> None:  # the job's error belongs in its log file too
        log.error("%s failed: %s", snakemake.rule, exc, exc_info=(exc_type, exc, tb))

    sys.excepthook = log_failure
    return log


def export_pythonpath(path: str) -> None:
    """Prepend ``path`` to PYTHONPATH so every job imports this checkout's package."""
    parts = [path] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != path]
    os.environ["PYTHONPATH"] = os.pathsep.join(parts)


def limit_threads(snakemake: Any) -> int:
    """Let torch use only the job's ``threads`` (parallel jobs must not oversubscribe cores), and
    log which torch build the job runs and whether it sees a GPU (README: which torch the jobs get)."""
    import torch

    n = max(1, int(getattr(snakemake, "threads", 1) or 1))
    torch.set_num_threads(n)
    logging.getLogger(f"wildmerge.{getattr(snakemake, 'rule', 'job')}").info(
        "torch %s, CUDA available: %s, %d thread(s)", torch.__version__, torch.cuda.is_available(), n
    )
    return n


def alternatives_regex(values: Iterable[str]) -> str:
    """A regex matching exactly ``values``, as a trie (``a(?:b|c)``): a wildcard constraint over
    thousands of ids stays linear in the id's length (a flat ``a|b|...`` alternation is tried
    one alternative at a time, for every file Snakemake matches against the rule)."""
    trie: dict[str, Any] = {}
    for v in sorted(set(values)):
        node = trie
        for ch in v:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, Any]) -> str:
        end = "" in node
        branches = [re.escape(ch) + emit(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not end else "(?:" + "|".join(branches) + ")"
        return body + ("?" if end else "")

    return emit(trie)
