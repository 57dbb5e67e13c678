"""The set-up's pins: every one names a build the public registry (PyPI) has, and
requirements.txt, envs/constraints.txt and envs/wildmerge.yaml agree (README: Set-up)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO / "requirements.txt"
CONSTRAINTS = REPO / "envs" / "constraints.txt"
CONDA_ENV = REPO / "envs" / "wildmerge.yaml"
# requirements.txt's workflow and development tools: not needed inside a job's conda env
NOT_IN_CONDA_ENV = {"snakemake", "snakemake-executor-plugin-slurm", "pytest", "ruff", "snakefmt"}


def _pin(line: str, where: str) -> tuple[str, str]:
    req = Requirement(line)
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, (
        f"{where}: {line!r} is not an exact pin (name==version)"
    )
    return canonicalize_name(req.name), specs[0].version


def _pins(lines: list[str], where: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, version = _pin(line, where)
        assert name not in pins, f"{where}: {name} pinned twice"
        pins[name] = version
    return pins


def _requirements() -> dict[str, str]:
    return _pins(REQUIREMENTS.read_text().splitlines(), "requirements.txt")


def _constraints() -> dict[str, str]:
    return _pins(CONSTRAINTS.read_text().splitlines(), "envs/constraints.txt")


def _conda_env() -> dict[str, str]:
    deps = yaml.safe_load(CONDA_ENV.read_text())["dependencies"]
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "envs/wildmerge.yaml: expected one pip: section"
    return _pins(pip[0], "envs/wildmerge.yaml")


@pytest.mark.parametrize("read", [_requirements, _constraints, _conda_env], ids=["requirements", "constraints", "conda"])
def test_every_pin_names_a_public_build(read) -> None:
    """A local version label (2.13.0+cpu) names a build of one index (e.g. PyTorch's), not PyPI's."""
    local = {name: v for name, v in read().items() if Version(v).local is not None}
    assert not local, f"pins with a local version label (not on PyPI): {local}"


def test_requirements_pins_are_the_constraints() -> None:
    req, cons = _requirements(), _constraints()
    missing = sorted(set(req) - set(cons))
    differ = {n: (v, cons[n]) for n, v in req.items() if n in cons and Version(cons[n]) != Version(v)}
    assert not missing, f"requirements.txt pins missing from envs/constraints.txt: {missing}"
    assert not differ, f"requirements.txt vs envs/constraints.txt: {differ}"


def test_conda_env_follows_the_same_pins() -> None:
    env, req, cons = _conda_env(), _requirements(), _constraints()
    unknown = sorted(set(env) - set(cons))
    differ = {n: (v, cons[n]) for n, v in env.items() if n in cons and Version(cons[n]) != Version(v)}
    missing = sorted(set(req) - NOT_IN_CONDA_ENV - set(env))
    assert not unknown, f"envs/wildmerge.yaml pins packages envs/constraints.txt lacks: {unknown}"
    assert not differ, f"envs/wildmerge.yaml vs envs/constraints.txt: {differ}"
    assert not missing, f"requirements.txt pins missing from envs/wildmerge.yaml: {missing}"


def test_pin_parsing_sees_a_local_label_and_a_mismatch() -> None:
    assert Version(_pin("torch==2.13.0+cpu", "x")[1]).local == "cpu"
    assert _pins(["lm_eval==0.4.13  # comment", "", "# only a comment"], "x") == {"lm-eval": "0.4.13"}
    with pytest.raises(AssertionError, match="not an exact pin"):
        _pin("torch>=2.13", "x")


def test_licence_file_matches_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "LICENSE" in project["license-files"]
