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


def pytest_collection_modifyitems(config, items) -> None:
    """Mark as `slow` every test that runs the workflow (its module imports the Snakemake
    helpers, or it uses the demo run), so `make test-quick` (-m "not slow") is unit tests only."""
    slow = pytest.mark.slow
    for item in items:
        module = getattr(item, "module", None)
        runs_workflow = module is not None and any(
            getattr(module, name, None) is not None for name in ("smk", "dry_run_jobs", "dry_run_job_wildcards")
        )
        if runs_workflow or "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(slow)
