"""Helpers for the thin scripts run by Snakemake's ``script:`` directive."""

from __future__ import annotations

import logging
import sys
from typing import Any


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
    return logging.getLogger(f"wildmerge.{snakemake.rule}")
