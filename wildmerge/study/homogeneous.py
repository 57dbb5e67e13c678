"""Homogeneous vs. heterogeneous merges (paper Appendix E), the planning half: each named expert
group merged alone and all groups together, and the models scored on each group's suite
(the table of their scores: wildmerge.aggregate.homogeneous).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from wildmerge.study.model import Base, Checkpoint, ConfigError, Merge, MethodSpec, parse_checkpoint
from wildmerge.study.subsets import Subset, merge_id


@dataclass(frozen=True)
class SuiteEval:
    """One model scored on one group's benchmark suite (homogeneous vs. heterogeneous merges)."""

    base: str
    suite: str  # the expert group whose benchmarks are used
    model_id: str  # "base", "expert-<name>" or a merge id
    kind: str  # "base" | "expert" | "group" (merge of the suite's group) | "all" (every group)
    method: str = ""


@dataclass
class HomogeneousGroups:
    """What one base's ``homogeneous:`` section adds to the study."""

    suites: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (base, group) -> benchmarks
    evals: list[SuiteEval] = field(default_factory=list)
    experts: dict[str, Checkpoint] = field(default_factory=dict)  # group experts outside the main pool
    merges: list[Merge] = field(default_factory=list)  # merges the main study does not have


def homogeneous_evals(
    bname: str, spec: Mapping[str, Any], base: Base, methods: Mapping[str, MethodSpec]
) -> HomogeneousGroups:
    """Appendix E: merge each named expert group alone and all groups together, and score
    every merge (and the base, and each group's experts) on the groups' benchmark suites."""
    key = f"homogeneous.{bname}"
    chosen = list(spec.get("methods") or methods)
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise ConfigError(f"{key}.methods: {unknown} are not under methods ({list(methods)})")
    out = HomogeneousGroups()
    members: dict[str, list[str]] = {}
    for group, gspec in spec["groups"].items():
        members[group] = []
        for name, src in gspec["experts"].items():
            ck = parse_checkpoint(name, src, f"{key}.groups.{group}.experts.{name}")
            known = base.experts.get(name) or out.experts.get(name) or base.group_experts.get(name)
            if known is not None and known.identity != ck.identity:
                raise ConfigError(
                    f"{key}.groups.{group}.experts.{name}: the name '{name}' is already used for "
                    f"{known.identity}; give this checkpoint another name"
                )
            if name not in base.experts:
                out.experts[name] = ck
            members[group].append(name)
        out.suites[(bname, group)] = list(gspec["benchmarks"])

    def subset(names: list[str]) -> Subset:
        names = sorted(set(names))
        ident = tuple((base.experts.get(e) or out.experts.get(e) or base.group_experts[e]).identity for e in names)
        return Subset(base=bname, n=len(names), members=tuple(names), identities=ident)

    merges: dict[str, Merge] = {}
    everything = subset([e for g in members.values() for e in g])
    for group, names in members.items():
        out.evals.append(SuiteEval(bname, group, "base", "base"))
        out.evals += [SuiteEval(bname, group, f"expert-{e}", "expert") for e in sorted(names)]
        for kind, sub in (("group", subset(names)), ("all", everything)):
            for mname in chosen:
                m = methods[mname]
                mid = merge_id(base.model.identity, sub, m.method, m.params)
                if mid not in base.merges:
                    merges[mid] = Merge(bname, mid, sub, mname, m.method, m.params)
                out.evals.append(SuiteEval(bname, group, mid, kind, mname))
    out.merges = list(merges.values())
    return out
