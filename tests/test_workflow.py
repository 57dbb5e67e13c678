"""The workflow itself: lint, config validation, the paper config's DAG, and the demo end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from workflow_helpers import OFFLINE, REPO, SNAKEMAKE, dry_run_job_wildcards, dry_run_jobs, smk, write_config


def test_lint_is_clean(tmp_path):
    proc = smk(tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_unknown_config_key_is_named(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["evaluation"]["batchsize"] = 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", config=bad, check=False)
    assert proc.returncode != 0
    assert "batchsize" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda c: c["subsets"].update(sizes=[2, 20]), "subsets.sizes: n=20"),
        (lambda c: c["subsets"].update(sizes=[7], per_size=9), "subsets.per_size"),
        (lambda c: c["methods"]["ta"].update(method="task_arithmatic"), "methods.ta: Unknown merge method 'task_arithmatic'"),
        (lambda c: c["methods"]["ties"]["params"].update(densty=0.1), "methods.ties: Unknown parameter(s) 'densty'"),
        (lambda c: c["methods"]["ta_sb"]["params"].update(beta=1.5), "methods.ta_sb: parameter `beta` of merge method 'ta_subspace_boosting' must be in [0, 1]"),
        (lambda c: c["evaluation"]["benchmarks"].append("demo_nonexistent"), "evaluation.benchmarks: lm-eval has no task ['demo_nonexistent']"),
        (lambda c: c["methods"].update(slerp={"method": "slerp", "params": {"t": 0.5}}), "methods.slerp: 'slerp' cannot merge n=2 experts"),
        (lambda c: c["methods"].update(della={"method": "della", "params": {"density": "dense"}}), "methods.della: Invalid value 'dense' for parameter 'density'"),
    ],
)
def test_invalid_config_fails_at_dag_build_naming_the_key(tmp_path, change, named):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    change(cfg)
    proc = smk(tmp_path, "-n", config=write_config(tmp_path / "bad.yaml", cfg), check=False)
    assert proc.returncode != 0
    assert named in proc.stdout + proc.stderr


def test_any_mergekit_method_by_name(tmp_path):
    """Beyond the paper's seven: mergekit's DARE, DELLA, Breadcrumbs, ... by name, with their
    parameters checked at DAG build (SLERP-family only where the subset sizes allow it)."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["methods"] = {
        "dare_ties": {"method": "dare_ties", "params": {"density": 0.5, "lambda": 1.0}},
        "della": {"method": "della", "params": {"density": 0.5, "epsilon": 0.1}},
        "breadcrumbs": {"method": "breadcrumbs", "params": {"density": 0.9, "gamma": 0.01}},
        "nuslerp": {"method": "nuslerp", "params": {}},
    }
    cfg.pop("tables", None)  # config.yaml's tables name the paper's methods: table1 = every method here
    cfg["subsets"]["sizes"] = [2]
    proc = smk(tmp_path, "-n", config=write_config(tmp_path / "m.yaml", cfg), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg["subsets"]["sizes"] = [2, 4]  # nuslerp takes exactly two models
    proc = smk(tmp_path, "-n", config=write_config(tmp_path / "m.yaml", cfg), check=False)
    assert proc.returncode != 0 and "methods.nuslerp: 'nuslerp' cannot merge n=4" in proc.stdout + proc.stderr


def test_configfile_replaces_the_default_config(tmp_path):
    """From the repo root, --configfile must not be merged into config.yaml (the demo)."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["bases"] = {"other": cfg["bases"]["tiny-llama"]}
    proc = subprocess.run(
        SNAKEMAKE + ["-n", "--quiet", "rules", "--configfile", str(write_config(tmp_path / "c.yaml", cfg))],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, **OFFLINE},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = {p[0]: int(p[1]) for p in map(str.split, proc.stdout.splitlines()) if len(p) == 2 and p[1].isdigit()}
    assert counts["geometry"] == 1 and counts["preflight"] == 9  # 'other' only, no 'tiny-llama'


def test_paper_config_dry_run_offline(tmp_path):
    counts = dry_run_jobs(tmp_path, config=REPO / "config" / "paper.yaml")
    # 4 bases, 48 experts; Appendix E's 12 checkpoints (Table 4) less the 2 in qwen3-4b's pool
    assert counts["fetch_hub_model"] == counts["preflight"] == 4 + 48 + 10
    # the 16 benchmarks (Table 6) and Table 5's suites (17 tasks, medmcqa and headqa_en among the 16)
    assert counts["fetch_benchmark_data"] == 16 + 15
    # per base: 5 sizes x 15 subsets + the single n=12 subset, 7 methods; plus the Appendix C
    # sweeps on all 12 experts (16 + 30 + 8 points, less those equal to a main method's merge)
    sweeps = 4 * (16 + 30 + 8 - 3)
    # one job per merged model (merged and scored together), one per checkpoint
    assert counts["merge_evaluate"] == 4 * (5 * 15 + 1) * 7 + sweeps
    assert counts["evaluate"] == 4 * (1 + 12)
    assert counts["ablations"] == 3
    # Appendix E, per Qwen3 base: Math-only (n=3), Medical-only (n=3) and All (n=6) merges with
    # the 7 methods, merged by `merge` and scored on the suites: each suite scores the base, its
    # group's 3 experts, the group's merge and the All merge per method
    assert counts["merge"] == 2 * 3 * 7
    assert counts["evaluate_suite"] == 2 * 2 * (1 + 3 + 2 * 7)
    assert counts["homogeneous"] == 1


def test_demo_outputs(demo_run):
    results = demo_run / "results" / "demo"
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    benches = cfg["evaluation"]["benchmarks"]
    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    assert set(scores.benchmark) == set(benches)
    n_models = 1 + 8 + (2 + 2 + 1) * 7
    assert scores.model_id.nunique() == n_models
    assert len(scores) == n_models * len(benches)
    assert set(scores[scores.role == "merged"].method) == set(cfg["methods"])
    for name in ["table1", "table2", "table3"]:
        assert (results / "tables" / f"{name}.md").stat().st_size > 100
        assert (results / "tables" / f"{name}.csv").stat().st_size > 100
    # issue 13: per-item outcomes of every (model, benchmark); paired tables agree with table1's gains
    assert len(list((results / "items").glob("*/*/*.parquet"))) == n_models * len(benches)
    t1 = pd.read_csv(results / "tables" / "table1.csv").set_index(["base", "method", "n"])
    items = pd.read_csv(results / "tables" / "items_vs_base.csv").set_index(["base", "method", "n"])
    common = t1.index.intersection(items.index)
    assert len(common) and ((t1.loc[common, "mean_gain"] - items.loc[common, "mean_gain"]).abs() < 1e-6).all()
    for fig in ["accuracy_vs_n", "taskwise_tiny-llama", "norm_vs_n", "cosine_tiny-llama", "layer_signs_tiny-llama"]:
        assert (results / "figures" / f"{fig}.png").stat().st_size > 10_000
    norms = pd.read_csv(results / "geometry" / "tiny-llama" / "task_vector_norms.csv", index_col=0)
    assert set(norms.index) == set(cfg["bases"]["tiny-llama"]["experts"]) and (norms["total"] > 0).all()
    # merged models are temp: gone once scored
    assert not any((results / "models").glob("*/m-*"))


def test_demo_base_above_chance_and_experts_differ(demo_run):
    scores = pd.read_csv(demo_run / "results" / "demo" / "scores.csv", keep_default_na=False)
    base = scores[scores.role == "base"].set_index("benchmark").value
    chance = {}
    for path in (demo_run / "resources" / "demo" / "tasks").glob("*.jsonl"):
        first = json.loads(path.read_text().splitlines()[0])
        chance[path.stem] = 1.0 / len(first["choices"])
    assert sum(base[t] > chance[t] + 0.15 for t in base.index) >= 3, base
    experts = scores[scores.role == "expert"].pivot(index="model_id", columns="benchmark", values="value")
    delta = experts - base
    assert (delta > 0.05).any().any() and (delta < -0.05).any().any()


def test_score_files_carry_provenance(demo_run):
    results = demo_run / "results" / "demo"
    merged = next(p for p in (results / "scores" / "tiny-llama").glob("m-*/demo_arith.json"))
    rec = json.loads(merged.read_text())
    assert rec["role"] == "merged" and len(rec["model_sha256"]) == 64
    assert rec["merge"]["inputs"]["base"]["sha256"]
    assert set(rec["merge"]["inputs"]["experts"]) == set(rec["members"])
    assert rec["merge"]["params"] is not None and rec["merge"]["mergekit_method"]
    assert {"mergekit", "lm_eval", "torch", "transformers"} <= set(rec["versions"])
    assert rec["task_hash"]["config_sha"] and rec["task_hash"]["data_sha"]
    assert rec["evaluation"]["seed"] == 1234 and rec["evaluation"]["request_cache"] is False


def test_rerun_of_finished_study_runs_nothing(demo_run):
    assert dry_run_jobs(demo_run) == {}


def test_demo_is_deterministic(demo_run, tmp_path):
    """Rebuilding a demo expert from the same seed gives bit-identical weights."""
    target = "resources/demo/experts/arith"
    shutil.copytree(demo_run / "resources", tmp_path / "resources")
    shutil.rmtree(tmp_path / target)
    smk(tmp_path, "--cores", "1", target)
    a = (demo_run / target / "model.safetensors").read_bytes()
    b = (tmp_path / target / "model.safetensors").read_bytes()
    assert a == b


def test_adding_a_checkpoint_reruns_only_what_includes_it(demo_run, tmp_path):
    """Only the new expert, the merges (and their scores) of subsets containing it, and aggregation."""
    sys.path.insert(0, str(REPO))
    from wildmerge.study.plan import Study

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    before = Study(cfg).bases["tiny-llama"].merges
    cfg["bases"]["tiny-llama"]["experts"]["copy_count"] = "demo:copy_count"
    after = Study(cfg).bases["tiny-llama"].merges
    new = set(after) - set(before)
    assert new and all("copy_count" in after[m].subset.members for m in new)

    jobs = dry_run_job_wildcards(demo_run, config=write_config(tmp_path / "grown.yaml", cfg))
    assert jobs.pop("demo_expert") == {"expert=copy_count"}
    assert jobs.pop("preflight") == {"base=tiny-llama, checkpoint=expert-copy_count"}
    assert jobs.pop("merge_evaluate") == {f"base=tiny-llama, model={m}" for m in new}
    assert jobs.pop("evaluate") == {"base=tiny-llama, model=expert-copy_count"}
    assert jobs.pop("geometry") == {"base=tiny-llama"}  # the pool's cosine matrix
    assert set(jobs) == {"collect", "tables", "item_tables", "figures", "all"}


def test_changed_method_parameter_reruns_only_that_method(demo_run, tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["methods"]["ties"]["params"]["density"] = 0.2
    jobs = dry_run_job_wildcards(demo_run, config=write_config(tmp_path / "ties.yaml", cfg))
    merges = {w.split("model=")[1] for w in jobs.pop("merge_evaluate")}
    assert len(merges) == 2 + 2 + 1
    sys.path.insert(0, str(REPO))
    from wildmerge.study.plan import Study

    study = Study(cfg).bases["tiny-llama"].merges
    assert {study[m].method for m in merges} == {"ties"}
    assert "evaluate" not in jobs and "merge" not in jobs
    assert set(jobs) == {"collect", "tables", "item_tables", "figures", "all"}


def test_report_bundles_captioned_tables_and_figures(demo_run):
    out = demo_run / "report.html"
    smk(demo_run, "--report", str(out))
    html = out.read_text()
    for name in ["table1.md", "table2.md", "table3.md", "paired.md", "items_vs_base.md", "accuracy_vs_n.png", "norm_vs_n.png",
                 "taskwise_tiny-llama.png", "layer_signs_tiny-llama.png",
                 "cosine_tiny-llama.png"]:
        assert name in html, name
    # captions (report/*.rst) are rendered in
    assert "Average accuracy over all benchmarks" in html and "Pairwise cosine" in html
    assert "wildmerge" in html and "demo" in html


def test_ablation_sweeps_on_the_demo(demo_run, tmp_path):
    """Appendix C sweeps as config: only the sweep merges not already in the study run; each
    sweep gives a CSV and two figures; L2 norms behave as the paper explains."""
    work = tmp_path / "work"
    shutil.copytree(demo_run, work, symlinks=True)
    configs = [REPO / "config.yaml", REPO / "config" / "ablations-demo.yaml"]
    sys.path.insert(0, str(REPO))
    from wildmerge.study.plan import Study

    cfg = yaml.safe_load(configs[0].read_text())
    cfg.update(yaml.safe_load(configs[1].read_text()))
    study = Study(cfg)
    new = study.bases["tiny-llama"].ablation_merges
    shared = {p.merge_id for pts in study.ablations.values() for p in pts} - set(new)
    assert shared and shared <= set(study.bases["tiny-llama"].merges)  # e.g. TA lambda=1 normalized
    jobs = dry_run_jobs(work, config=configs)
    assert jobs["merge_evaluate"] == len(new) == 6 + 4 + 3 - len(shared) and "merge" not in jobs
    assert jobs["ablations"] == 3

    smk(work, "--cores", "2", config=configs)
    res = work / "results" / "demo"
    ta = pd.read_csv(res / "ablations" / "ta_lambda.csv")
    assert len(ta) == 6 and {"lambda", "normalize", "accuracy", "base_accuracy", "gain", "l2_norm"} <= set(ta.columns)
    assert ta["accuracy"].between(0, 100).all()
    # a sum of task vectors moves further from the base than their mean, more so for larger lambda
    norm = ta.set_index(["normalize", "lambda"])["l2_norm"]
    assert norm[(False, 2.0)] > norm[(True, 2.0)] and norm[(True, 2.0)] > norm[(True, 0.5)]
    assert len(pd.read_csv(res / "ablations" / "ties_density_lambda.csv")) == 4
    assert len(pd.read_csv(res / "ablations" / "sb_beta.csv")) == 3
    for a in ["ta_lambda", "ties_density_lambda", "sb_beta"]:
        for kind in ["accuracy", "l2norm"]:
            assert (res / "figures" / f"ablation_{a}_{kind}.png").stat().st_size > 10_000
    # the sweeps never leak into the main tables
    assert set(pd.read_csv(res / "scores.csv").method.dropna()) <= set(cfg["methods"]) | {""}


def test_homogeneous_vs_heterogeneous_merges_on_the_demo(demo_run, tmp_path):
    """Appendix E as config: two expert groups, each merged alone and together, scored on the
    groups' own benchmark suites; nothing of the main study reruns."""
    work = tmp_path / "work"
    shutil.copytree(demo_run, work, symlinks=True)
    configs = [REPO / "config.yaml", REPO / "config" / "homogeneous-demo.yaml"]
    jobs = dry_run_jobs(work, config=configs)
    # per method (3): the memory group, the reasoning group, and all 6 experts together
    assert jobs["merge"] == 3 * 3
    # base on 2 suites, 3 + 3 experts on their suite, 3 x (group merge + all-merge on 2 suites)
    assert jobs["evaluate_suite"] == 2 + 6 + 3 * (2 + 2)
    assert "evaluate" not in jobs and "merge_evaluate" not in jobs and jobs["demo_expert"] == 1  # copy_count, outside the main pool

    smk(work, "--cores", "2", config=configs)
    res = work / "results" / "demo"
    table = pd.read_csv(res / "tables" / "homogeneous.csv")
    assert len(table) == 2 * 3
    assert set(table.suite) == {"memory", "reasoning"} and set(table.method) == {"ta", "ties", "iso_c"}
    assert (table.n_group == 3).all() and (table.n_all == 6).all()
    assert table[["group_merge", "all_merge", "base_model", "experts_mean"]].apply(lambda c: c.between(0, 100)).all().all()
    suite = json.loads(next((res / "homogeneous/scores/tiny-llama/memory/base").glob("*.json")).read_text())
    assert suite["benchmark"] in {"demo_facts", "demo_antonym"} and suite["role"] == "base"
    assert (res / "figures" / "homogeneous.png").stat().st_size > 10_000
    assert not any((res / "models").glob("*/m-*"))  # the homogeneous merges were temporary too
