"""Hyperparameter sweeps (paper Appendix C): one tidy table per sweep.

A sweep merges the same subsets (by default all experts at once) with one method at every
point of a parameter grid; each merge is scored like any other model. Here the score files
and merge manifests become one row per (base, subset, grid point): the average accuracy
over benchmarks, the base model's, the gain, and the merged task vector's L2 norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from wildmerge.provenance import read_json
from wildmerge.study import Base, ConfigError, Merge, merge_sizes
from wildmerge.subsets import draw_subsets, merge_id

if TYPE_CHECKING:  # pandas is imported by the job only, not at DAG build
    import pandas as pd


@dataclass(frozen=True)
class AblationPoint:
    """One merge of a hyperparameter sweep: a grid point applied to one subset."""

    ablation: str
    base: str
    merge_id: str
    n: int
    subset_id: str
    point: Mapping[str, Any]  # the swept parameters' values
    params: Mapping[str, Any]  # all parameters of the merge


def ablation_points(
    name: str, spec: Mapping[str, Any], bases: Mapping[str, Base], per_size: int, seed: int
) -> tuple[list[AblationPoint], list[Merge]]:
    """Expand one sweep (Appendix C): every grid point on the subsets of the given sizes.

    Sizes default to ``all`` (the whole pool, as in the paper); other sizes reuse the
    study's subsets of that n (or draw ``per_size`` of them with the same ``seed``).
    Returns the sweep's points and the merges it needs beyond each base's main ones
    (a point equal to a main method shares its merge), each once.
    """
    key = f"ablations.{name}"
    grid = dict(spec["grid"])
    fixed = dict(spec.get("params") or {})
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise ConfigError(f"{key}: {clash} both fixed under params and swept under grid")
    points = [dict(zip(grid, values)) for values in product(*grid.values())]
    out: list[AblationPoint] = []
    merges: dict[tuple[str, str], Merge] = {}
    for bname, base in bases.items():
        pool = {e: c.identity for e, c in base.experts.items()}
        for n in merge_sizes(spec.get("sizes") or ["all"], len(pool), bname, key=f"{key}.sizes"):
            subsets = [s for s in base.subsets if s.n == n] or draw_subsets(
                bname, pool, n, min(per_size, math.comb(len(pool), n)), seed
            )
            for s in subsets:
                for point in points:
                    params = {**fixed, **point}
                    mid = merge_id(base.model.identity, s, spec["method"], params)
                    if mid not in base.merges:
                        merges[(bname, mid)] = Merge(bname, mid, s, name, spec["method"], params)
                    out.append(AblationPoint(name, bname, mid, n, s.subset_id, point, params))
    return out, list(merges.values())


def ablation_table(
    name: str,
    points: Sequence[Mapping[str, Any]],
    score_files: Iterable[str],
    manifests: Iterable[str],
) -> pd.DataFrame:
    """Rows per sweep point and subset.

    ``points``: dicts with base, merge_id, n, subset_id and ``point`` (swept parameter ->
    value), as :class:`AblationPoint`. ``score_files`` cover every point's
    merge and each base model; ``manifests`` every point's merge (for the L2 norm).
    """
    import pandas as pd

    from wildmerge.collect import collect_scores
    from wildmerge.scores import model_averages

    scores = collect_scores(score_files)
    avgs = model_averages(scores).set_index(["base", "model_id"])["accuracy"]
    norms = {(m["base"], m["merge_id"]): float(m["task_vector_l2"]) for m in map(read_json, manifests)}
    keys = list(dict.fromkeys(k for p in points for k in p["point"]))
    rows = []
    for p in points:
        base, mid = p["base"], p["merge_id"]
        rows.append(
            {
                "ablation": name,
                "base": base,
                "n": int(p["n"]),
                "subset_id": p["subset_id"],
                "merge_id": mid,
                **{k: p["point"].get(k) for k in keys},
                "accuracy": float(avgs[(base, mid)]),
                "base_accuracy": float(avgs[(base, "base")]),
                "gain": float(avgs[(base, mid)] - avgs[(base, "base")]),
                "l2_norm": norms[(base, mid)],
            }
        )
    return pd.DataFrame(rows)
