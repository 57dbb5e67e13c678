"""Hyperparameter sweeps (paper Appendix C), the planning half: a sweep's grid points and the
merges they need, expanded at DAG build (the table of their scores: wildmerge.aggregate.ablations).

A sweep merges the same subsets (by default all experts at once) with one method at every
point of a parameter grid; each merge is scored like any other model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any, Mapping

from wildmerge.study.model import Base, ConfigError, Merge, Sweep, merge_sizes
from wildmerge.study.subsets import draw_subsets, merge_id


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
    sweep: Sweep, bases: Mapping[str, Base], per_size: int, seed: int
) -> tuple[list[AblationPoint], list[Merge]]:
    """Expand one sweep (Appendix C): every grid point on the subsets of the given sizes.

    Sizes default to ``all`` (the whole pool, as in the paper); other sizes reuse the
    study's subsets of that n (or draw ``per_size`` of them with the same ``seed``).
    Returns the sweep's points and the merges it needs beyond each base's main ones
    (a point equal to a main method shares its merge), each once.
    """
    name, key, grid, fixed = sweep.name, f"ablations.{sweep.name}", dict(sweep.grid), dict(sweep.params)
    clash = sorted(set(grid) & set(fixed))
    if clash:
        raise ConfigError(f"{key}: {clash} both fixed under params and swept under grid")
    points = [dict(zip(grid, values)) for values in product(*grid.values())]
    out: list[AblationPoint] = []
    merges: dict[tuple[str, str], Merge] = {}
    for bname, base in bases.items():
        pool = {e: c.identity for e, c in base.experts.items()}
        for n in merge_sizes(sweep.sizes, len(pool), bname, key=f"{key}.sizes"):
            subsets = [s for s in base.subsets if s.n == n] or draw_subsets(
                bname, pool, n, min(per_size, math.comb(len(pool), n)), seed
            )
            for s in subsets:
                for point in points:
                    params = {**fixed, **point}
                    mid = merge_id(base.model.identity, s, sweep.method, params)
                    if mid not in base.merges:
                        merges[(bname, mid)] = Merge(bname, mid, s, name, sweep.method, params)
                    out.append(AblationPoint(name, bname, mid, n, s.subset_id, point, params))
    return out, list(merges.values())
