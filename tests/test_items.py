"""Per-item outcomes (issue 13): one Parquet file per (model, benchmark), ids stable across
models, consistent with the score file written by the same evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from wildmerge.demo import tiny_models


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    from wildmerge.demo.tasks import make_tasks
    from wildmerge.evaluation.lm_eval_run import evaluate_model
    from wildmerge.evaluation.settings import EvalSettings

    work = tmp_path_factory.mktemp("items")
    tasks = make_tasks(work / "tasks", n_eval=20)
    assert tasks
    for seed in (0, 1):
        model = tiny_models.build("llama-3.1-8b", work / f"model{seed}", seed=seed)
        out = work / f"m{seed}"
        for bench in ("demo_count", "demo"):  # a task, and a group of tasks (lm-eval: not both in one call)
            evaluate_model(
                model, [{"name": bench}], {bench: out / f"{bench}.json"},
                EvalSettings(dtype="float32", seed=1234, batch_size=8, device="cpu", include_path=str(work / "tasks")),
                provenance={"model_id": f"m{seed}"}, items_files={bench: out / f"{bench}.parquet"},
            )
    return work


def test_items_file_matches_score_file(scored):
    from wildmerge.evaluation.items import read_items, read_items_meta

    for bench in ("demo_count", "demo"):
        score = json.loads((scored / "m0" / f"{bench}.json").read_text())
        items = read_items(scored / "m0" / f"{bench}.parquet")
        assert score["items"]["n_items"] == len(items) and score["items"]["file"] == f"{bench}.parquet"
        assert items["correct"].isin([0.0, 1.0]).all()
        assert (items["logliks"].map(len) >= 2).all()  # multiple choice: one log-likelihood per choice
        by_task = items.groupby("task")["correct"].mean()
        # the score is lm-eval's aggregate of the same outcomes (the demo group: unweighted mean of tasks)
        assert score["value"] == pytest.approx(by_task.mean(), abs=1e-6)
        assert read_items_meta(scored / "m0" / f"{bench}.parquet")["model_id"] == "m0"
    group = read_items(scored / "m0" / "demo.parquet")
    assert group["task"].nunique() == 8 and len(group) == 8 * 20


def test_item_ids_are_the_same_items_for_every_model(scored):
    from wildmerge.evaluation.items import read_items

    a, b = (read_items(scored / m / "demo.parquet") for m in ("m0", "m1"))
    assert list(a["item_id"]) == list(b["item_id"]) and list(a["doc_hash"]) == list(b["doc_hash"])
    assert not a["logliks"].equals(b["logliks"])  # two different models
    assert (scored / "m0" / "demo.parquet").stat().st_size < 50_000


def test_budget_sample_is_seeded_stratified_and_nested():
    from wildmerge.evaluation.budget import allocate, sample_ids

    sizes = {"a": 1000, "b": 300, "c": 7}
    assert allocate(sizes, 0.1) == {"a": 100, "b": 30, "c": 1}
    assert sum(allocate(sizes, 200).values()) == 200 and allocate(sizes, 10**6) == sizes
    assert allocate(sizes, {"items": 200}) == allocate(sizes, 200)  # the config's form of 200 items
    small, large = sample_ids(sizes, 0.1, 1234), sample_ids(sizes, 0.5, 1234)
    assert small == sample_ids(sizes, 0.1, 1234) and small != sample_ids(sizes, 0.1, 7)
    assert all(set(small[t]) <= set(large[t]) for t in sizes)  # growing the budget only adds items
    assert all(len(set(v)) == len(v) and max(v) < sizes[t] for t, v in large.items())
    with pytest.raises(ValueError, match="evaluation.budget"):
        allocate(sizes, 1.5)


def test_budget_scores_the_sample_and_growing_it_scores_only_new_items(scored):
    from wildmerge.evaluation.lm_eval_run import evaluate_model
    from wildmerge.evaluation.settings import EvalSettings
    from wildmerge.evaluation.items import read_items

    full = read_items(scored / "m0" / "demo.parquet").set_index("item_id")
    out = scored / "budget"
    pools = {"demo": out / ".pool" / "demo.key.parquet"}
    runs = {}
    for budget in (0.25, 0.5):
        evaluate_model(
            scored / "model0", [{"name": "demo"}], {"demo": out / f"{budget}.json"},
            EvalSettings(dtype="float32", seed=1234, batch_size=8, device="cpu", include_path=str(scored / "tasks"),
                         budget=budget),
            items_files={"demo": out / f"{budget}.parquet"}, pools=pools,
        )
        runs[budget] = json.loads((out / f"{budget}.json").read_text())
        items = read_items(out / f"{budget}.parquet").set_index("item_id")
        assert len(items) == runs[budget]["budget"]["n_items"] == 8 * round(20 * budget)
        assert items.groupby("task").size().to_dict() == runs[budget]["budget"]["per_task"]  # stratified
        # the same outcomes as the full evaluation of these items
        assert (items["correct"] == full.loc[items.index, "correct"]).all()
        assert runs[budget]["value"] == pytest.approx(items.groupby("task")["correct"].mean().mean())
    assert runs[0.25]["budget"]["scored"] == 8 * 5 and runs[0.25]["budget"]["reused"] == 0
    assert runs[0.5]["budget"]["reused"] == 8 * 5 and runs[0.5]["budget"]["scored"] == 8 * 5
    assert runs[0.5]["budget"]["requests"] < runs[0.25]["budget"]["requests"] * 1.5  # only the new items
    small, large = runs[0.25]["budget"]["sample"], runs[0.5]["budget"]["sample"]
    assert all(set(small[t]) <= set(large[t]) for t in small)


def test_budget_config_keys():
    """The budget is a score setting (score keys change) but not an outcome setting (kept
    outcomes stay usable); studies without one keep their score keys; budget with limit is an error."""
    import copy

    import yaml

    from wildmerge.study.plan import ConfigError, Study

    cfg = yaml.safe_load((Path(__file__).parent.parent / "config.yaml").read_text())
    plain = Study(cfg)
    half = copy.deepcopy(cfg)
    half["evaluation"]["budget"] = 0.5
    study = Study(half)
    key = ("tiny-llama", "base", "demo_arith")
    assert "budget" not in plain.score_settings()
    assert study.score_key(*key) != plain.score_key(*key)
    assert study.outcome_key(*key) == plain.outcome_key(*key) == plain.score_key(*key)
    half["evaluation"]["limit"] = 5
    with pytest.raises(ConfigError, match="budget and evaluation.limit"):
        Study(half)
    half["evaluation"].update(limit=None, budget=2.5)
    with pytest.raises(ConfigError, match="evaluation.budget"):
        Study(half)


@pytest.mark.parametrize(
    "budget, expected",
    [
        (1, "evaluation.budget: 1 is a bare integer, which could mean a fraction or a number of items: write a "
            "fraction with a decimal point, e.g. `0.25` (or 1.0 for every item), or a number of items per "
            "benchmark as `{items: 1}`"),
        (500, "e.g. `0.25`, or a number of items per benchmark as `{items: 500}`"),
        (500.0, "evaluation.budget: a fraction must be in (0, 1], got 500.0; for 500 items per benchmark write "
                "`{items: 500}`"),
        ({"items": 0}, "evaluation.budget: a number of items is written {items: N} with an integer N >= 1"),
        (True, "evaluation.budget: expected a fraction (0.25) or {items: N}, got True"),
    ],
)
def test_budget_is_a_fraction_or_items_never_a_bare_integer(budget, expected):
    """Issue 26: `budget: 1` silently meant one item per benchmark. A fraction has a decimal
    point; a number of items is {items: N}, keyed as N (the key `budget: N` had before)."""
    import copy

    import yaml

    from wildmerge.evaluation.budget import check_budget
    from wildmerge.evaluation.settings import EvalSettings
    from wildmerge.study.plan import ConfigError, Study

    with pytest.raises(ValueError) as err:
        check_budget(budget)
    assert expected in str(err.value)
    cfg = yaml.safe_load((Path(__file__).parent.parent / "config.yaml").read_text())
    if not isinstance(budget, (bool, dict)):  # the schema refuses the others first
        cfg["evaluation"]["budget"] = budget
        with pytest.raises(ConfigError, match=re.escape(expected)):
            Study(copy.deepcopy(cfg))
    cfg["evaluation"]["budget"] = {"items": 500}
    items = Study(copy.deepcopy(cfg))
    assert items.score_settings()["budget"] == 500 and isinstance(items.budget, int)
    cfg["evaluation"]["budget"] = 1.0
    assert Study(cfg).score_settings()["budget"] == 1.0
    params = type("Params", (), {"dtype": "float32", "seed": 1, "include_path": None, "limit": None})
    job = EvalSettings.for_job(params, {"budget": {"items": 500}, "batch_size": 8, "device": "cpu"})
    assert job.budget == 500  # what the job samples with is what the key says
