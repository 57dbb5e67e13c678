"""Incremental reruns (issue 10): a small real study, then one config change at a time,
asserted from Snakemake's own dry-run job list and from the score files on disk."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from workflow_helpers import dry_run_job_wildcards, dry_run_jobs, pending_benchmarks, smk, write_config

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


@pytest.mark.parametrize(
    "name,edit",
    [
        ("seed", lambda c: c["evaluation"].update(seed=7)),
        ("dtype", lambda c: c["evaluation"].update(dtype="bfloat16")),
        ("limit", lambda c: c["evaluation"].update(limit=10)),
    ],
)
def test_score_settings_rerun_every_evaluation(small_study, name, edit):
    cfg = changed(small_study, name, edit)
    jobs = dry_run_jobs(small_study, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1
    assert jobs.pop("merge_evaluate") == 1  # the temporary merged model is made again to be scored
    assert set(jobs) == AGGREGATION
    pending = pending_benchmarks(small_study, cfg)  # what each job scores: every benchmark
    assert len(pending) == MODELS and set(pending.values()) == {tuple(sorted(BENCHES))}


def test_another_include_path_reruns_every_evaluation(small_study, tmp_path):
    tasks = tmp_path / "tasks"  # the same task YAMLs, in a folder of one's own
    shutil.copytree(small_study / "resources/demo/tasks", tasks)
    cfg = changed(small_study, "include_path", lambda c: c["evaluation"].update(include_path=str(tasks)))
    jobs = dry_run_jobs(small_study, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1 and jobs.pop("merge_evaluate") == 1
    # not the generated demo tasks: each benchmark's data record (local tasks: no hub data), their index
    assert jobs.pop("fetch_benchmark_data") == len(BENCHES) and jobs.pop("benchmark_data_index") == 1
    assert set(jobs) == AGGREGATION
    pending = pending_benchmarks(small_study, cfg)
    assert len(pending) == MODELS and set(pending.values()) == {tuple(sorted(BENCHES))}


def test_a_benchmarks_metric_reruns_that_benchmark_on_every_model(small_study):
    cfg = changed(small_study, "metric", lambda c: c["evaluation"].update(
        benchmarks=[BENCHES[0], {"name": BENCHES[1], "metric": "acc_norm"}]))
    jobs = dry_run_jobs(small_study, config=cfg)
    assert jobs.pop("evaluate") == MODELS - 1 and jobs.pop("merge_evaluate") == 1
    assert set(jobs) == AGGREGATION
    pending = pending_benchmarks(small_study, cfg)  # each job scores that benchmark only
    assert len(pending) == MODELS and set(pending.values()) == {(BENCHES[1],)}


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


def merge_ids(cfg: dict) -> set[str]:
    """The study's merged models (Study: content-hash ids)."""
    from wildmerge.study.plan import Study

    return {m for b in Study(copy.deepcopy(cfg)).bases.values() for m in b.merges}


def merge_jobs(ids: set[str]) -> set[str]:
    return {f"base=tiny-llama, model={m}" for m in ids}


def test_merge_dtype_reruns_the_merged_models_jobs_only(small_study):
    cfg = changed(small_study, "merge_dtype", lambda c: c["merge"].update(dtype="bfloat16"))
    jobs = dry_run_job_wildcards(small_study, config=cfg)
    assert jobs.pop("merge_evaluate") == merge_jobs(merge_ids(SMALL))  # the same merge, scored again
    assert set(jobs) == AGGREGATION  # no checkpoint evaluated again
    (merge,) = merge_ids(SMALL)
    assert pending_benchmarks(small_study, cfg) == {("tiny-llama", merge): tuple(sorted(BENCHES))}


def test_a_checkpoints_source_reruns_its_preflight_evaluation_and_merges(small_study, tmp_path):
    copied = tmp_path / "compare"  # the same weights, from another source
    shutil.copytree(small_study / "resources/demo/experts/compare", copied)
    edit = lambda c: c["bases"]["tiny-llama"]["experts"].update(compare=str(copied))  # noqa: E731
    cfg = changed(small_study, "source", edit)
    new = copy.deepcopy(SMALL)
    edit(new)
    jobs = dry_run_job_wildcards(small_study, config=cfg)
    assert jobs.pop("preflight") == {"base=tiny-llama, checkpoint=expert-compare"}
    assert jobs.pop("evaluate") == {"base=tiny-llama, model=expert-compare"}
    # its merge is another merge (ids hash the members' sources): merged and scored in one job
    assert jobs.pop("merge_evaluate") == merge_jobs(merge_ids(new)) != merge_jobs(merge_ids(SMALL))
    assert jobs.pop("geometry") == {"base=tiny-llama"}  # the experts' task vectors
    assert set(jobs) == AGGREGATION


def test_adding_a_method_plans_only_its_merges(small_study):
    edit = lambda c: c["methods"].update(ta={"method": "task_arithmetic", "params": {"lambda": 1.0}})  # noqa: E731
    new = copy.deepcopy(SMALL)
    edit(new)
    added = merge_ids(new) - merge_ids(SMALL)
    assert len(added) == 1 and merge_ids(SMALL) < merge_ids(new)
    jobs = dry_run_job_wildcards(small_study, config=changed(small_study, "method", edit))
    assert jobs.pop("merge_evaluate") == merge_jobs(added)
    assert set(jobs) == AGGREGATION


def test_adding_a_checkpoint_then_subsets_plans_only_the_new_merges(small_study, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    three = copy.deepcopy(SMALL)
    three["bases"]["tiny-llama"]["experts"]["facts"] = "demo:facts"
    added = merge_ids(three) - merge_ids(SMALL)
    assert len(added) == 1  # the one n=2 subset drawn from three experts now holds the new one
    jobs = dry_run_job_wildcards(work, config=write_config(work / "three.yaml", three))
    assert jobs.pop("demo_expert") == {"expert=facts"}  # the new checkpoint: trained (demo), checked, scored
    assert jobs.pop("preflight") == {"base=tiny-llama, checkpoint=expert-facts"}
    assert jobs.pop("evaluate") == {"base=tiny-llama, model=expert-facts"}
    assert jobs.pop("merge_evaluate") == merge_jobs(added)
    assert jobs.pop("geometry") == {"base=tiny-llama"}  # the experts' task vectors and cosines
    assert set(jobs) == AGGREGATION
    before = score_files(work)
    smk(work, "--cores", "2", config=work / "three.yaml")
    after = score_files(work)
    assert {p: after[p] for p in before} == before  # nothing scored before is scored again
    assert dry_run_jobs(work, config=work / "three.yaml") == {}

    more = copy.deepcopy(three)
    more["subsets"].update(sizes=[2, "all"], per_size=3)  # every pair, and all three
    added = merge_ids(more) - merge_ids(three) - merge_ids(SMALL)
    assert len(added) == 2 and merge_ids(three) < merge_ids(more)  # the subsets drawn before stay
    jobs = dry_run_job_wildcards(work, config=write_config(work / "more.yaml", more))
    assert jobs.pop("merge_evaluate") == merge_jobs(added)
    assert set(jobs) == AGGREGATION


def test_a_deleted_manifest_reruns_its_merge_alone_then_the_aggregation(small_study, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(small_study, work, symlinks=True)
    (manifest,) = (work / "results/small/manifests/tiny-llama").glob("m-*.json")
    manifest.unlink()
    jobs = dry_run_job_wildcards(work, config=changed(work, "same", lambda c: None))
    assert jobs.pop("merge") == {f"base=tiny-llama, merge={manifest.stem}"}  # not scored again
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
    shrunk = changed(work, "shrunk", lambda c: c["evaluation"].update(budget=0.25))
    jobs = dry_run_jobs(work, config=shrunk)  # shrunk: every evaluation again, ...
    assert jobs.pop("evaluate") == MODELS - 1 and jobs.pop("merge_evaluate") == 1 and set(jobs) == AGGREGATION
    smk(work, "--cores", "2", config=shrunk)
    recs = [json.loads(p.read_text()) for p in files]
    assert all(r["budget"]["n_items"] == 5 and r["budget"]["scored"] == 0 for r in recs)  # ... scoring no item
    assert dry_run_jobs(work, config=shrunk) == {}


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


#: What differs from run to run by nature: times and durations; a checkpoint's fingerprint (its
#: files' mtime and inode); the hash of the demo trainer's own log, which holds its training time.
RUN_SPECIFIC = ("finished", "seconds", "fingerprint", "wildmerge_demo.json")


def without_timings(obj):
    """``obj`` without what differs from run to run by nature (RUN_SPECIFIC, ``*_seconds``)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items()
                if not (k in RUN_SPECIFIC or k.endswith("_seconds"))}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def test_warm_worker_and_fresh_processes_give_identical_results(small_study, monkeypatch):
    """small_study ran its demo-training, evaluation and merge jobs in the warm worker (a local
    run's default: forked from one process that preloaded torch, transformers, mergekit and
    lm-eval, warm.PRELOAD); the same study with WILDMERGE_WARM=0 (each job its own process)
    writes the same score files, but for their timings, the same per-item outcomes and the same
    scores.csv, norms.csv and tables."""
    import json
    from collections import Counter

    import pandas as pd

    from wildmerge import warm
    from wildmerge.evaluation.items import read_items, read_items_meta

    server = (small_study / ".snakemake/log/wildmerge-warm.log").read_text()
    preloaded = [line.removeprefix("wildmerge.warm: preloaded ").rsplit(" in ", 1)[0].split()
                 for line in server.splitlines() if line.startswith("wildmerge.warm: preloaded ")]
    assert preloaded == [list(stage) for stage in warm.PRELOAD], server[-3000:]  # every stage, none failed
    ran = [json.loads(line) for line in (small_study / ".snakemake/log/wildmerge-warm-jobs.jsonl").read_text().splitlines()]
    assert all(r["exit"] == 0 for r in ran)
    assert Counter(r["rule"] for r in ran) == {"demo_base": 1, "demo_expert": 2, "preflight": MODELS - 1, "evaluate": MODELS - 1,
                                               "merge_evaluate": 1, "geometry": 1}

    # a path as long as small_study's: the merged model's card and mergekit config name their
    # inputs' absolute paths, so its size in the manifest (output.bytes) follows the path's length
    cold = small_study.with_name("cold".ljust(len(small_study.name), "_"))
    cold.mkdir()
    monkeypatch.setenv("WILDMERGE_WARM", "0")
    smk(cold, "--cores", "2", config=write_config(cold / "small.yaml", SMALL))
    assert not (cold / ".snakemake/log/wildmerge-warm-jobs.jsonl").exists()  # no warm worker: no job ran in one

    def files(work: Path, pattern: str) -> list[Path]:
        return sorted(p.relative_to(work) for p in (work / "results/small").glob(pattern))

    scores = files(small_study, "scores/*/*/*.json")
    assert scores == files(cold, "scores/*/*/*.json") and len(scores) == MODELS * len(BENCHES)
    for rel in scores:
        warm_rec, cold_rec = (json.loads((work / rel).read_text()) for work in (small_study, cold))
        for rec in (warm_rec, cold_rec):  # the items file's hash covers its metadata, which holds the
            rec["items"].pop("sha256")  # same timings: its outcomes and metadata are compared below
        assert json.dumps(without_timings(warm_rec), indent=2, sort_keys=True) == json.dumps(
            without_timings(cold_rec), indent=2, sort_keys=True), rel
    items = files(small_study, "items/*/*/*.parquet")
    assert items == files(cold, "items/*/*/*.parquet") and len(items) == MODELS * len(BENCHES)
    for rel in items:
        pd.testing.assert_frame_equal(read_items(small_study / rel), read_items(cold / rel), check_exact=True)
        assert without_timings(read_items_meta(small_study / rel)) == without_timings(read_items_meta(cold / rel)), rel
    aggregated = files(small_study, "*.csv") + files(small_study, "tables/*.csv")
    assert aggregated == files(cold, "*.csv") + files(cold, "tables/*.csv") and len(aggregated) > 2
    for rel in aggregated:
        assert (small_study / rel).read_bytes() == (cold / rel).read_bytes(), rel
