"""Incremental reruns (issue 10): a small real study, then one config change at a time,
asserted from Snakemake's own dry-run job list and from the score files on disk."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from workflow_helpers import dry_run_job_wildcards, dry_run_jobs, smk, write_config

BENCHES = ["demo_arith", "demo_compare"]
AGGREGATION = {"collect", "tables", "item_tables", "figures", "all"}
SMALL = {
    "study": "small",
    "results": "results/small",
    "demo": {"seed": 0, "n_eval": 20},
    "bases": {"tiny-llama": {"model": "demo:base", "experts": {"arith": "demo:arith", "compare": "demo:compare"}}},
    "subsets": {"sizes": [2], "per_size": 1, "seed": 0},
    "methods": {"ties": {"method": "ties", "params": {"lambda": 1.0, "density": 0.5, "normalize": True}}},
    "merge": {"dtype": "float32", "device": "cpu", "keep_models": False},
    "evaluation": {"include_path": "demo", "benchmarks": list(BENCHES), "batch_size": 16,
                   "device": "cpu", "dtype": "float32", "seed": 1234},
    "tables": {"table1": ["ties"]},
}
MODELS = 4  # base, 2 experts, 1 merge


def score_files(work: Path) -> dict[Path, tuple[int, int]]:
    """Every score file -> (inode, mtime_ns)."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((work / "results/small/scores").rglob("*.json"))}


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("small")
    smk(work, "--cores", "2", config=write_config(work / "small.yaml", SMALL))
    assert len(score_files(work)) == MODELS * len(BENCHES)
    return work


def changed(small_study: Path, name: str, edit) -> Path:
    cfg = copy.deepcopy(SMALL)
    edit(cfg)
    return write_config(small_study / f"{name}.yaml", cfg)


@pytest.mark.parametrize(
    "name,edit",
    [
        ("batch_size", lambda c: c["evaluation"].update(batch_size=4)),
        ("eval_device", lambda c: c["evaluation"].update(device="cpu:0")),
        ("merge_device", lambda c: c["merge"].update(device="cpu:0")),
        ("models_dir", lambda c: c["merge"].update(models_dir="scratch/models")),
        ("resources", lambda c: c.update(resources={"evaluate": {"mem_mb": 1000}, "merge": {"runtime": 5}, "merge_evaluate": {"gpu": 2}})),
        ("param_order", lambda c: c["methods"]["ties"].update(
            params={"normalize": True, "density": 0.5, "lambda": 1.0})),
        ("bench_order", lambda c: c["evaluation"].update(benchmarks=BENCHES[::-1])),
        ("keep_models", lambda c: c["merge"].update(keep_models=True)),
        ("cpus", lambda c: c.update(resources={"evaluate": {"cpus_per_task": 4}, "merge": {"cpus_per_task": 4}})),
        ("merge_options", lambda c: c["merge"].update(options={"num_threads": 1, "low_cpu_memory": True, "async_write": True})),
        # the prompt options' defaults written out; fewshot_as_multiturn has no effect without a chat template
        ("prompt_defaults", lambda c: c["evaluation"].update(apply_chat_template=False, system_instruction=None,
                                                             fewshot_as_multiturn=False, gen_kwargs=None)),
    ],
)
def test_execution_only_settings_and_no_op_edits_plan_no_job(small_study, name, edit):
    assert dry_run_jobs(small_study, config=changed(small_study, name, edit)) == {}


def test_thread_counts_plan_no_job(small_study):
    threads = ["--set-threads", "merge=2", "evaluate=2", "merge_evaluate=2", "preflight=2"]
    assert dry_run_jobs(small_study, *threads, config=write_config(small_study / "same.yaml", SMALL)) == {}


def test_yaml_formatting_and_comments_plan_no_job(small_study):
    text = "# a comment\n" + yaml.safe_dump(SMALL, default_flow_style=True, sort_keys=True)
    path = small_study / "flow.yaml"
    path.write_text(text)
    assert dry_run_jobs(small_study, config=path) == {}


def test_removing_a_benchmark_reruns_only_the_aggregation(small_study):
    cfg = changed(small_study, "fewer", lambda c: c["evaluation"].update(benchmarks=BENCHES[:1]))
    assert set(dry_run_jobs(small_study, config=cfg)) == AGGREGATION


def test_score_settings_rerun_every_evaluation(small_study):
    cfg = changed(small_study, "seed", lambda c: c["evaluation"].update(seed=7))
    jobs = dry_run_jobs(small_study, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1
    assert jobs.pop("merge_evaluate") == 1  # the temporary merged model is made again to be scored
    assert set(jobs) == AGGREGATION


def test_few_shot_of_one_benchmark_reruns_only_that_benchmark(small_study, tmp_path):
    def edit(c):
        c["evaluation"]["benchmarks"] = [BENCHES[0], {"name": BENCHES[1], "num_fewshot": 1}]

    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    cfg = changed(work, "fewshot", edit)
    jobs = dry_run_jobs(work, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1  # one job per model (its model loaded once) ...
    assert jobs.pop("merge_evaluate") == 1
    assert set(jobs) == AGGREGATION
    before = score_files(work)
    smk(work, "--cores", "2", config=cfg)
    after = score_files(work)
    # ... scoring that one benchmark: the other's score files are untouched
    assert {p for p in before if after[p] != before[p]} == {p for p in before if p.stem == BENCHES[1]}
    assert dry_run_jobs(work, config=cfg) == {}


def test_chat_template_of_one_benchmark_reruns_only_that_benchmark(small_study, tmp_path):
    def edit(c):
        c["evaluation"]["benchmarks"] = [BENCHES[0], {"name": BENCHES[1], "apply_chat_template": True}]

    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    cfg = changed(work, "chat", edit)
    jobs = dry_run_jobs(work, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1
    assert jobs.pop("merge_evaluate") == 1
    assert set(jobs) == AGGREGATION
    before = score_files(work)
    smk(work, "--cores", "2", config=cfg)
    after = score_files(work)
    assert {p for p in before if after[p] != before[p]} == {p for p in before if p.stem == BENCHES[1]}
    for p in after:  # each score file records its benchmark's prompt options
        ev = json.loads(p.read_text())["evaluation"]
        assert ev["apply_chat_template"] is (p.stem == BENCHES[1]) and ev["fewshot_as_multiturn"] is True
    assert dry_run_jobs(work, config=cfg) == {}


def test_method_parameter_reruns_that_merge_only(small_study):
    cfg = changed(small_study, "density", lambda c: c["methods"]["ties"]["params"].update(density=0.3))
    jobs = dry_run_job_wildcards(small_study, config=cfg)
    (merge,) = jobs.pop("merge_evaluate")  # merged and scored in one job
    assert "evaluate" not in jobs and "merge" not in jobs
    assert set(jobs) == AGGREGATION


def test_adding_a_benchmark_scores_only_the_new_pairs(small_study, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    before = score_files(work)
    cfg = changed(work, "more", lambda c: c["evaluation"]["benchmarks"].append("demo_facts"))
    jobs = dry_run_jobs(work, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1
    assert jobs.pop("merge_evaluate") == 1
    assert set(jobs) == AGGREGATION

    smk(work, "--cores", "2", config=cfg)
    after = score_files(work)
    assert {p: after[p] for p in before} == before  # old score files neither rewritten nor deleted
    new = set(after) - set(before)
    assert {p.name for p in new} == {"demo_facts.json"} and len(new) == MODELS
    assert dry_run_jobs(work, config=cfg) == {}  # and the study is complete again
    assert "demo_facts" in (work / "results/small/scores.csv").read_text()


def items_files(work: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((work / "results/small/items").glob("*/*/*.parquet"))}  # not .pool/


def test_per_item_files_come_from_the_same_jobs_and_follow_their_score_files(small_study, tmp_path):
    """Issue 13: one per-item file per (model, benchmark), output of the score file's job; a
    missing one reruns that model's job for that benchmark only; the off switch plans nothing."""
    assert {p.with_suffix(".json").name for p in items_files(small_study)} == {f"{b}.json" for b in BENCHES}
    assert len(items_files(small_study)) == MODELS * len(BENCHES)
    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    (gone,) = [p for p in items_files(work) if p.parent.name == "base" and p.stem == BENCHES[1]]
    gone.unlink()
    cfg = changed(work, "same", lambda c: None)
    jobs = dry_run_job_wildcards(work, config=cfg)
    assert jobs.pop("evaluate") == {"base=tiny-llama, model=base"}
    off = changed(work, "off", lambda c: c["evaluation"].update(per_item=False))
    assert not [r for r in dry_run_jobs(work, config=off) if r.startswith("evaluate")]
    before = items_files(work)
    cfg = changed(work, "more", lambda c: c["evaluation"]["benchmarks"].append("demo_facts"))
    smk(work, "--cores", "2", config=cfg)
    after = items_files(work)
    assert {p: after[p] for p in before} == before
    assert {p.name for p in set(after) - set(before)} == {"demo_facts.parquet", f"{BENCHES[1]}.parquet"}


def test_budget_reruns_evaluations_reusing_kept_outcomes_and_growing_it_scores_only_new_items(small_study, tmp_path):
    """Issue 13: a budget is a score setting (every evaluation reruns), but the outcomes of the
    full run are kept (pool) and reused: no item is scored again; growing it adds only items."""
    import json

    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    half = changed(work, "half", lambda c: c["evaluation"].update(budget=0.5))
    jobs = dry_run_jobs(work, config=half)
    assert jobs.pop("evaluate") == MODELS - 1 and jobs.pop("merge_evaluate") == 1 and set(jobs) == AGGREGATION
    smk(work, "--cores", "2", config=half)
    files = sorted((work / "results/small/scores").rglob("*.json"))
    recs = [json.loads(p.read_text()) for p in files]
    assert all(r["budget"]["n_items"] == 10 and r["budget"]["reused"] == 10 for r in recs)  # n_eval 20
    assert len({r["budget"]["ids_sha256"] for r in recs if r["benchmark"] == BENCHES[0]}) == 1  # same items
    grown = changed(work, "grown", lambda c: c["evaluation"].update(budget=0.75))
    smk(work, "--cores", "2", config=grown)
    recs = [json.loads(p.read_text()) for p in files]
    assert all(r["budget"]["n_items"] == 15 and r["budget"]["scored"] == 0 for r in recs)  # all kept from the full run
    assert dry_run_jobs(work, config=grown) == {}


def test_a_kept_merged_model_is_reused_by_its_next_evaluation(small_study, tmp_path):
    """merge.keep_models: the job that scores a new benchmark merges the (temporary, gone) model
    once and keeps it; the next one reuses it (same folder, not written again)."""
    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)

    def keep_with(*extra):
        def edit(c):
            c["merge"].update(keep_models=True)
            c["evaluation"]["benchmarks"] += list(extra)
        return edit

    smk(work, "--cores", "2", config=changed(work, "keep1", keep_with("demo_facts")))
    (model,) = (work / "results/small/models/tiny-llama").iterdir()
    weights = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in model.iterdir()}
    manifest = work / f"results/small/manifests/tiny-llama/{model.name}.json"
    written = manifest.stat().st_mtime_ns
    jobs = dry_run_jobs(work, config=changed(work, "keep2", keep_with("demo_facts", "demo_copy")))
    assert jobs.pop("merge_evaluate") == 1 and "merge" not in jobs
    smk(work, "--cores", "2", config=changed(work, "keep2", keep_with("demo_facts", "demo_copy")))
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in model.iterdir()} == weights
    assert manifest.stat().st_mtime_ns == written
    logs = sorted((work / f"results/small/logs/merge_evaluate/tiny-llama/{model.name}").glob("*.log"),
                  key=lambda p: p.stat().st_mtime_ns)
    assert "reusing the merged model" in logs[-1].read_text()
    assert (work / f"results/small/scores/tiny-llama/{model.name}/demo_copy.json").exists()
