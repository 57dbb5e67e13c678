"""Shared fixtures: the demo study run end to end once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from workflow_helpers import smk  # noqa: E402


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The default study (config.yaml) run end to end, as `make run` does."""
    work = tmp_path_factory.mktemp("demo")
    smk(work, "--cores", "2")
    return work
