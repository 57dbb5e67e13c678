"""The study's model: checkpoints, merges, bases and the model-id grammar, parsed from the config.

A model id is ``base``, ``expert-<name>`` or a merge id ``m-<12 hex>`` (wildmerge.study.subsets).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from wildmerge.hub.ids import hub_dirname
from wildmerge.study.subsets import Subset

DEMO_PREFIX = "demo:"
DEMO_ROOT = Path("resources/demo")
HUB_ROOT = Path("resources/hub")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def canonical(obj: Any) -> Any:
    """``obj`` with every mapping's keys sorted (recursively): the form given to Snakemake as
    params, so reordering keys in the config plans no job."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


class ConfigError(ValueError):
    """A config value the study cannot run with; the message names the key."""


@dataclass(frozen=True)
class Checkpoint:
    """Where one model's weights come from."""

    name: str
    source: str  # "demo:<name>", a local directory, or a hub id
    revision: str | None = None
    trust_remote_code: bool = False
    key: str = field(default="", compare=False, repr=False)  # config key named in errors; not in params

    @property
    def kind(self) -> str:
        if self.source.startswith(DEMO_PREFIX):
            return "demo"
        if os.path.isdir(self.source) or self.source.startswith(("/", "./", "../")):
            return "local"
        if HUB_ID.match(self.source):
            return "hub"
        return "local"

    @property
    def identity(self) -> str:
        """Stable identity used in content hashes (source plus revision)."""
        return self.source + (f"@{self.revision}" if self.revision else "")

    @property
    def path(self) -> str:
        """Local directory the workflow reads the weights from."""
        kind = self.kind
        if kind == "demo":
            name = self.source[len(DEMO_PREFIX):]
            return str(DEMO_ROOT / "base") if name == "base" else str(DEMO_ROOT / "experts" / name)
        if kind == "hub":
            return str(HUB_ROOT / hub_dirname(self.source, self.revision))
        return self.source


@dataclass(frozen=True)
class MethodSpec:
    """A config method (``methods.<name>``): a mergekit method and its parameters."""

    method: str
    params: Mapping[str, Any]

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> MethodSpec:
        """From the schema-validated config (``params`` defaults to {} there)."""
        return cls(str(spec["method"]), dict(spec["params"]))


@dataclass(frozen=True)
class Sweep:
    """A hyperparameter sweep (``ablations.<name>``, paper Appendix C)."""

    name: str
    method: str
    params: Mapping[str, Any]  # held fixed
    grid: Mapping[str, list[Any]]  # swept: the first is the x axis, the second the hue
    sizes: list[Any]  # merge sizes n, or "all"

    @classmethod
    def parse(cls, name: str, spec: Mapping[str, Any]) -> Sweep:
        return cls(name, str(spec["method"]), dict(spec["params"]), dict(spec["grid"]), list(spec.get("sizes") or ["all"]))


@dataclass(frozen=True)
class Merge:
    base: str
    merge_id: str
    subset: Subset
    method: str  # config method name, e.g. "ta"
    mergekit_method: str
    params: Mapping[str, Any]


@dataclass
class Base:
    name: str
    model: Checkpoint
    experts: dict[str, Checkpoint]
    subsets: list[Subset] = field(default_factory=list)
    merges: dict[str, Merge] = field(default_factory=dict)
    # merges only the ablations need (sweep points equal to a main method share its merge)
    ablation_merges: dict[str, Merge] = field(default_factory=dict)
    # homogeneous-merge experiments (Appendix E): their experts outside the main pool, merges
    group_experts: dict[str, Checkpoint] = field(default_factory=dict)
    homogeneous_merges: dict[str, Merge] = field(default_factory=dict)

    @property
    def model_ids(self) -> list[str]:
        return ["base"] + [f"expert-{e}" for e in sorted(self.experts)] + sorted(self.merges)


def parse_checkpoint(name: str, spec: Any, key: str) -> Checkpoint:
    if isinstance(spec, str):
        return Checkpoint(name=name, source=spec, key=key)
    if isinstance(spec, Mapping) and "source" in spec:
        return Checkpoint(
            name=name,
            source=str(spec["source"]),
            revision=spec.get("revision"),
            trust_remote_code=bool(spec.get("trust_remote_code", False)),
            key=key,
        )
    raise ConfigError(f"{key}: expected a source string or a mapping with 'source', got {spec!r}")


def merge_sizes(raw: list[Any], pool: int, base: str, key: str = "subsets.sizes") -> list[int]:
    sizes: set[int] = set()
    for s in raw:
        n = pool if s == "all" else int(s)
        if n > pool:
            raise ConfigError(
                f"{key}: n={n} is larger than the {pool} experts of base '{base}'; "
                f"drop it or use 'all'"
            )
        if n >= 2:
            sizes.add(n)
    return sorted(sizes)
