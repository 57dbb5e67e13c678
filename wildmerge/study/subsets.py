"""Seeded, stable sampling of checkpoint subsets and content-hash ids.

Subsets of size ``n`` are drawn from the expert pool of one base model so that
the draw is *stable under adding a checkpoint*: every candidate subset gets a
priority ``hash(seed, base, n, sorted members)`` and the ``k`` subsets with the
lowest priority are taken.  Adding an expert only adds candidates (all of which
contain it), so the subsets that change are exactly those that now include the
new expert.  The same subsets serve every merge method.

Where the number of candidates is too large to enumerate, each of the ``k``
draws takes the ``n`` members with the lowest ``hash(seed, base, n, draw, member)``,
which keeps the same property up to (rare) duplicate draws being replaced.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Mapping

from wildmerge.provenance import stable_hash

ENUMERATE_LIMIT = 200_000


def _priority(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16], 16)


@dataclass(frozen=True)
class Subset:
    """A sorted tuple of expert names drawn for one base model."""

    base: str
    n: int
    members: tuple[str, ...]
    identities: tuple[str, ...]  # identity (source@revision) per member, same order

    @property
    def subset_id(self) -> str:
        return "s-" + stable_hash({"base": self.base, "members": list(self.identities)})


def draw_subsets(
    base: str, pool: Mapping[str, str], n: int, k: int, seed: int
) -> list[Subset]:
    """Draw ``k`` distinct subsets of size ``n`` from ``pool`` (name -> identity).

    ``n == len(pool)`` yields the single full subset; ``k`` larger than the number
    of distinct subsets is an error naming both numbers.
    """
    names = sorted(pool)
    size = len(names)
    if n < 1 or n > size:
        raise ValueError(f"subset size n={n} is outside 1..{size} (pool of base '{base}')")
    total = math.comb(size, n)
    if n == size:
        k = 1
    if k > total:
        raise ValueError(
            f"base '{base}': cannot draw k={k} distinct subsets of size n={n} "
            f"from {size} experts (only {total} exist); lower subsets.per_size or drop n={n}"
        )
    key = [pool[m] for m in names]
    ident = dict(zip(names, key))
    if total <= ENUMERATE_LIMIT:
        ranked = sorted(
            combinations(names, n),
            key=lambda c: _priority(seed, base, n, sorted(ident[m] for m in c)),
        )
        chosen = ranked[:k]
    else:
        chosen_set: dict[tuple[str, ...], None] = {}
        draw = 0
        while len(chosen_set) < k:
            c = tuple(sorted(sorted(names, key=lambda m: _priority(seed, base, n, draw, ident[m]))[:n]))
            chosen_set.setdefault(c, None)
            draw += 1
        chosen = list(chosen_set)
    out = [
        Subset(base=base, n=n, members=tuple(sorted(c)), identities=tuple(ident[m] for m in sorted(c)))
        for c in chosen
    ]
    return sorted(out, key=lambda s: s.subset_id)


def merge_id(base_identity: str, subset: Subset, method: str, params: Mapping[str, Any]) -> str:
    """Content hash of (base, sorted members, merge method, parameters)."""
    return "m-" + stable_hash(
        {
            "base": base_identity,
            "members": sorted(subset.identities),
            "method": method,
            "params": dict(params),
        }
    )
