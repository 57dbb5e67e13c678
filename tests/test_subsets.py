"""Subset sampling: seeded, distinct, shared by methods, stable when a checkpoint is added."""

import math

import pytest

from wildmerge.study.plan import ConfigError, Study
from wildmerge.study.subsets import draw_subsets, merge_id

POOL = {f"e{i:02d}": f"org/model-{i}" for i in range(12)}


def test_draw_is_seeded_distinct_and_sized():
    a = draw_subsets("b", POOL, 4, 15, seed=0)
    b = draw_subsets("b", POOL, 4, 15, seed=0)
    c = draw_subsets("b", POOL, 4, 15, seed=1)
    assert [s.members for s in a] == [s.members for s in b]
    assert {s.members for s in a} != {s.members for s in c}
    assert len({s.members for s in a}) == 15
    assert all(len(s.members) == 4 and list(s.members) == sorted(s.members) for s in a)


def test_full_pool_is_one_subset_and_too_many_subsets_fail():
    full = draw_subsets("b", POOL, 12, 15, seed=0)
    assert len(full) == 1 and full[0].members == tuple(sorted(POOL))
    with pytest.raises(ValueError, match=r"k=70 .* n=11 .*only 12 exist"):
        draw_subsets("b", POOL, 11, 70, seed=0)


@pytest.mark.parametrize("n", [2, 4, 6, 8, 10])
def test_adding_a_checkpoint_changes_only_subsets_that_include_it(n):
    before = {s.subset_id: s for s in draw_subsets("b", POOL, n, 15, seed=0)}
    grown = dict(POOL, e99="org/new-model")
    after = {s.subset_id: s for s in draw_subsets("b", grown, n, 15, seed=0)}
    added = set(after) - set(before)
    assert all("e99" in after[i].members for i in added)
    kept = set(after) & set(before)
    assert all(after[i].members == before[i].members for i in kept)
    assert len(after) == 15


def test_large_pool_without_enumeration_is_distinct_and_stable():
    pool = {f"x{i:03d}": f"org/m{i}" for i in range(60)}
    assert math.comb(60, 30) > 10**6
    subs = draw_subsets("b", pool, 30, 5, seed=3)
    assert len({s.members for s in subs}) == 5
    grown = dict(pool, znew="org/new")
    after = draw_subsets("b", grown, 30, 5, seed=3)
    old = {s.members for s in subs}
    assert all(s.members in old or "znew" in s.members for s in after)


def test_merge_id_hashes_base_members_method_and_params():
    s = draw_subsets("b", POOL, 2, 1, seed=0)[0]
    ids = {
        merge_id("base", s, "task_arithmetic", {"lambda": 1.0}),
        merge_id("base", s, "task_arithmetic", {"lambda": 0.5}),
        merge_id("base", s, "ties", {"lambda": 1.0}),
        merge_id("other", s, "task_arithmetic", {"lambda": 1.0}),
    }
    assert len(ids) == 4
    assert merge_id("base", s, "ties", {"a": 1, "b": 2}) == merge_id("base", s, "ties", {"b": 2, "a": 1})


def _config(experts, sizes=(2, 4, "all"), per_size=3):
    return {
        "bases": {"tiny": {"model": "demo:base", "experts": {e: f"demo:{e}" for e in experts}}},
        "subsets": {"sizes": list(sizes), "per_size": per_size, "seed": 0},
        "methods": {
            "ta": {"method": "task_arithmetic", "params": {"lambda": 1.0}},
            "ties": {"method": "ties", "params": {"lambda": 0.1, "density": 0.1}},
        },
        "evaluation": {"benchmarks": ["t1", "t2"]},
    }


def test_study_uses_the_same_subsets_for_every_method():
    study = Study(_config([f"e{i}" for i in range(8)]))
    base = study.bases["tiny"]
    assert len(base.subsets) == 3 + 3 + 1
    by_method: dict[str, set] = {}
    for m in base.merges.values():
        by_method.setdefault(m.method, set()).add(m.subset.subset_id)
    assert by_method["ta"] == by_method["ties"] == {s.subset_id for s in base.subsets}
    assert len(base.model_ids) == 1 + 8 + 14


def test_study_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"subsets.sizes: n=9 .* 8 experts"):
        Study(_config([f"e{i}" for i in range(8)], sizes=(2, 9)))
    with pytest.raises(ConfigError, match=r"subsets.per_size: .*k=40"):
        Study(_config([f"e{i}" for i in range(8)], sizes=(7,), per_size=40))


def test_changed_method_parameter_changes_only_that_methods_merge_ids():
    cfg = _config([f"e{i}" for i in range(8)])
    a = Study(cfg).bases["tiny"].merges
    cfg["methods"]["ties"]["params"]["density"] = 0.2
    b = Study(cfg).bases["tiny"].merges
    changed = set(a) ^ set(b)
    assert changed and all((a.get(m) or b.get(m)).method == "ties" for m in changed)
