"""Shared fixtures, once per session: the demo study run end to end, and the one-node SLURM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A one-node SLURM on localhost (tests/slurm/cluster.sh: slurmctld, slurmd, munge, a fake GPU
    gres) for the session's SLURM tests; the environment that reaches it (SLURM_CONF)."""
    if os.geteuid() != 0:
        reason = "starting slurmctld/slurmd needs root"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason}; CI is set, where the SLURM profile must be tested, not skipped: run the tests as root")
        pytest.skip(reason)
    cluster = Path(__file__).parent / "slurm" / "cluster.sh"
    state = tmp_path_factory.mktemp("slurm") / "cluster"
    # a node with 16 GB (slurmd's config_overrides: whatever the machine has), so two jobs at the
    # profile's default mem_mb fit side by side, also as array tasks (the executor adds a few MB)
    up = subprocess.run(["bash", str(cluster), "up", str(state)], capture_output=True, text=True, timeout=1200,
                        env={**os.environ, "SLURM_TEST_MEM_MB": "16000"})
    if up.returncode != 0:
        subprocess.run(["bash", str(cluster), "down", str(state)], capture_output=True, timeout=120)
        pytest.fail(f"local SLURM did not come up:\n{up.stdout}\n{up.stderr[-6000:]}")
    try:
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        down = subprocess.run(["bash", str(cluster), "down", str(state)], capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr


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
