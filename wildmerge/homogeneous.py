"""Homogeneous vs. heterogeneous merges (paper Appendix E): one row per base, suite and method.

Each expert group of a base has its own benchmark suite. The merge of the group alone and the
merge of all groups together are scored on it, as are the base and the group's experts; here
the per-benchmark score files become average accuracies (points) per suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from wildmerge.provenance import read_json
from wildmerge.study import Base, Checkpoint, ConfigError, Merge, parse_checkpoint
from wildmerge.subsets import Subset, merge_id

if TYPE_CHECKING:  # pandas is imported by the job only, not at DAG build
    import pandas as pd

COLUMNS = ["base", "suite", "method", "group_merge", "all_merge", "all_minus_group",
           "base_model", "experts_mean", "best_expert", "n_group", "n_all", "n_benchmarks"]


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
    bname: str, spec: Mapping[str, Any], base: Base, methods: Mapping[str, Mapping[str, Any]]
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
                mid = merge_id(base.model.identity, sub, m["method"], m["params"])
                if mid not in base.merges:
                    merges[mid] = Merge(bname, mid, sub, mname, m["method"], m["params"])
                out.evals.append(SuiteEval(bname, group, mid, kind, mname))
    out.merges = list(merges.values())
    return out


def suite_accuracies(evals: Sequence[Mapping[str, Any]], folders: Sequence[str | Path]) -> pd.DataFrame:
    """Average accuracy (points) of every (base, suite, model) from its suite score folder
    (``folders[i]`` holds the per-benchmark JSONs of ``evals[i]``)."""
    import pandas as pd

    rows = []
    for e, folder in zip(evals, map(Path, folders), strict=True):
        values = [read_json(f)["value"] for f in sorted(folder.glob("*.json"))]
        if not values:
            raise FileNotFoundError(f"{folder}: no score files")
        rows.append({**e, "accuracy": 100.0 * sum(values) / len(values), "n_benchmarks": len(values)})
    return pd.DataFrame(rows)


def homogeneous_table(acc: pd.DataFrame, group_sizes: Mapping[tuple[str, str], int]) -> pd.DataFrame:
    """Per base, suite and method: group-only merge vs. all-groups merge, with references."""
    import pandas as pd

    out = []
    for (base, suite), part in acc.groupby(["base", "suite"], sort=False):
        experts = part[part.kind == "expert"].accuracy
        ref = {
            "base_model": float(part[part.kind == "base"].accuracy.iloc[0]),
            "experts_mean": float(experts.mean()),
            "best_expert": float(experts.max()),
        }
        merged = part[part.kind.isin(["group", "all"])]
        for method, m in merged.groupby("method", sort=False):
            g = float(m[m.kind == "group"].accuracy.iloc[0])
            a = float(m[m.kind == "all"].accuracy.iloc[0])
            out.append({"base": base, "suite": suite, "method": method, "group_merge": g, "all_merge": a,
                        "all_minus_group": a - g, **ref, "n_group": group_sizes[(base, suite)],
                        "n_all": sum(v for (b, _), v in group_sizes.items() if b == base),
                        "n_benchmarks": int(m.n_benchmarks.iloc[0])})
    return pd.DataFrame(out, columns=COLUMNS)
