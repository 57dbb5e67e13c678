"""Results follow their inputs' content (issue 26): a local checkpoint's files and a local task's
definition are compared by content at DAG build. A small study of tiny local checkpoints and two
local tasks runs once; each test changes a copy of it and asserts Snakemake's planned jobs and
the files on disk."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from workflow_helpers import dry_run_plan, dry_run_jobs, smk, write_config

BENCHES = ["demo_arith", "demo_compare"]
RES = "results/content"
AGGREGATION = {"collect", "tables", "item_tables", "figures", "all"}
# The first evaluation after a study's first run also makes the benchmark data index again, under
# the name its records give it once they exist (wildmerge.hub.datasets.data_index_name): not a
# content matter, so left out of the comparisons here.
OTHER = AGGREGATION | {"benchmark_data_index"}
HASHING = "its files changed since its pre-flight; hashing them"
CONFIG = {
    "study": "content",
    "results": RES,
    "bases": {"tiny": {"model": "ckpt/base", "experts": {e: f"ckpt/{e}" for e in "abc"}}},
    "subsets": {"sizes": [2], "per_size": 3, "seed": 0},  # {a,b}, {a,c}, {b,c}
    "methods": {"ta": {"method": "task_arithmetic", "params": {"lambda": 1.0, "normalize": True}}},
    "merge": {"dtype": "float32", "device": "cpu", "keep_models": False},
    "evaluation": {"include_path": "tasks", "benchmarks": list(BENCHES), "batch_size": 16,
                   "device": "cpu", "dtype": "float32", "seed": 1234},
    "tables": {"table1": ["ta"]},
}


def _tasks(folder: Path) -> None:
    """The demo's task YAMLs and data (20 items each), reading their data relative to the
    working directory (lm-eval's reading of relative data_files), so a copied study is whole."""
    from wildmerge.demo.tasks import make_tasks

    make_tasks(folder, n_eval=20)
    for y in folder.glob("*.yaml"):
        y.write_text(y.read_text().replace(f"{folder.resolve()}/", "tasks/"))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from wildmerge.demo.tiny_models import build

    work = tmp_path_factory.mktemp("content")
    for seed, name in enumerate(["base", "a", "b", "c"]):  # other weights, the same layout
        build("llama-3.1-8b", work / "ckpt" / name, seed=seed)
    build("llama-3.1-8b", work / "other", seed=9)  # weights to swap in
    _tasks(work / "tasks")
    smk(work, "--cores", "2", config=write_config(work / "study.yaml", CONFIG))
    assert len(files(work, "scores")) == 7 * len(BENCHES)  # base, 3 experts, 3 merges
    return work


def files(work: Path, folder: str) -> dict[Path, tuple[int, int]]:
    """Every JSON file under ``<results>/<folder>`` -> (inode, mtime_ns)."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted((work / RES / folder).rglob("*.json"))}


def changed(before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]) -> set[str]:
    """The files rewritten, as '<model>/<benchmark>'."""
    return {f"{p.parent.name}/{p.stem}" for p in before if after.get(p) != before[p]}


def copy(study: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(study, tmp_path / "work", symlinks=True))


def plan(work: Path) -> tuple[dict[str, set[str]], str]:
    """The dry run's jobs (rule -> wildcards) and what it printed."""
    return dry_run_plan(work, config=work / "study.yaml")


def work_jobs(jobs: dict[str, set[str]]) -> dict[str, set[str]]:
    """The planned jobs besides the aggregation (which every change of a score reruns)."""
    assert AGGREGATION <= set(jobs), jobs
    return {r: w for r, w in jobs.items() if r not in OTHER}


def merges_with(work: Path, expert: str) -> set[str]:
    """The study's merges whose subset holds ``expert``."""
    from wildmerge.study.plan import Study

    cwd = os.getcwd()
    os.chdir(work)
    try:
        merges = Study(CONFIG).bases["tiny"].merges.values()
    finally:
        os.chdir(cwd)
    return {m.merge_id for m in merges if expert in m.subset.members}


def pending(work: Path) -> dict[str, tuple[str, ...]]:
    """model -> its pending benchmarks, as an evaluation job finds them (Reruns.pending_benchmarks)."""
    from wildmerge.study.plan import Study
    from wildmerge.study.rerun import Reruns

    cwd = os.getcwd()
    os.chdir(work)
    try:
        reruns = Reruns(Study(CONFIG))
        return {m: p for b, m in reruns.study.evaluated_models() if (p := reruns.pending_benchmarks(b, m))}
    finally:
        os.chdir(cwd)


def record(work: Path, model: str) -> dict:
    return json.loads((work / RES / f"checkpoints/tiny/{model}.json").read_text())


# --------------------------------------------------------------------------- local checkpoints


def test_a_copy_or_touch_of_a_checkpoint_reruns_nothing_and_is_hashed_once(study, tmp_path):
    work = copy(study, tmp_path)  # every file copied: new inodes, the same content
    records = files(work, "checkpoints")
    jobs, log = plan(work)
    assert jobs == {}
    assert log.count(HASHING) == 4  # base and 3 experts, each hashed once ...
    assert files(work, "checkpoints").keys() == records.keys()
    assert all(p.stat().st_mtime_ns == records[p][1] for p in records)  # ... re-recorded, mtime kept
    weights = work / "ckpt/b/model.safetensors"
    assert record(work, "expert-b")["fingerprint"]["model.safetensors"][2] == weights.stat().st_ino
    jobs, log = plan(work)
    assert jobs == {} and HASHING not in log  # the next DAG build is stat calls only

    os.utime(weights)  # touch
    jobs, log = plan(work)
    assert jobs == {} and log.count(HASHING) == 1
    shutil.copy2(weights, work / "weights.tmp")  # replaced by a copy of itself: a new inode
    os.replace(work / "weights.tmp", weights)
    assert dry_run_jobs(work, config=work / "study.yaml") == {}


def test_new_weights_rerun_its_preflight_merges_scores_and_geometry_only(study, tmp_path):
    work = copy(study, tmp_path)
    dry_run_jobs(work, config=work / "study.yaml")  # the copy's fingerprints re-recorded
    old = record(work, "expert-b")["sha256"]
    shutil.copy2(work / "other/model.safetensors", work / "ckpt/b/model.safetensors")  # in place
    merges = merges_with(work, "b")
    assert len(merges) == 2
    expected = {
        "preflight": {"base=tiny, checkpoint=expert-b"},
        "evaluate": {"base=tiny, model=expert-b"},
        "merge_evaluate": {f"base=tiny, model={m}" for m in merges},
        "geometry": {"base=tiny"},
    }
    jobs, log = plan(work)
    assert work_jobs(jobs) == expected, jobs
    assert "expert 'b' of 'tiny' (ckpt/b) changed since its pre-flight" in log
    # the stale record is set aside (its content kept for the next DAG build: not hashed again)
    assert not (work / RES / "checkpoints/tiny/expert-b.json").exists()
    assert (work / RES / "checkpoints/tiny/expert-b.json.pending").exists()
    jobs, log = plan(work)
    assert work_jobs(jobs) == expected and HASHING not in log

    scores, geometry = files(work, "scores"), (work / RES / "geometry/tiny/cosine.csv").stat().st_mtime_ns
    smk(work, "--cores", "2", config=work / "study.yaml")
    assert changed(scores, files(work, "scores")) == {f"{m}/{b}" for m in {"expert-b", *merges} for b in BENCHES}
    assert (work / RES / "geometry/tiny/cosine.csv").stat().st_mtime_ns != geometry
    new = record(work, "expert-b")
    assert new["sha256"] != old and not (work / RES / "checkpoints/tiny/expert-b.json.pending").exists()
    for m in merges:  # the merges' scores record the new content
        score = json.loads((work / RES / f"scores/tiny/{m}/{BENCHES[0]}.json").read_text())
        assert score["merge"]["inputs"]["experts"]["b"]["sha256"] == new["sha256"]
    assert dry_run_jobs(work, config=work / "study.yaml") == {}


def test_new_base_weights_rerun_every_merge_and_the_preflights_against_it(study, tmp_path):
    work = copy(study, tmp_path)
    shutil.copy2(work / "other/model.safetensors", work / "ckpt/base/model.safetensors")
    jobs, log = plan(work)
    assert work_jobs(jobs) == {
        # the experts were checked against the old base
        "preflight": {f"base=tiny, checkpoint={m}" for m in ("base", "expert-a", "expert-b", "expert-c")},
        "evaluate": {"base=tiny, model=base"},  # the experts' own scores stay current
        "merge_evaluate": {f"base=tiny, model={m}" for m in merges_with(work, "a") | merges_with(work, "b")},
        "geometry": {"base=tiny"},
    }
    assert log.count(HASHING) == 4  # the copy: each checkpoint hashed once


def test_nan_weights_stop_the_preflight_naming_the_checkpoint(study, tmp_path):
    from test_bad_input import _poison

    work = copy(study, tmp_path)
    tensor = _poison(work / "ckpt/b")
    scores = files(work, "scores")
    proc = smk(work, "--cores", "1", config=work / "study.yaml", check=False)
    assert proc.returncode != 0
    log = (work / RES / "logs/preflight/tiny/expert-b.log").read_text()
    assert f"expert 'b' (ckpt/b, config key bases.tiny.experts.b) has non-finite weights in 1 tensor(s): {tensor}" in log
    assert changed(scores, files(work, "scores")) == set()  # nothing scored from the NaN weights
    assert not (work / RES / "checkpoints/tiny/expert-b.json").exists()
    jobs, out = plan(work)  # still to do (its record set aside, not hashed again)
    assert "preflight" in jobs and HASHING not in out


# --------------------------------------------------------------------------- local tasks


def test_an_edited_task_reruns_that_benchmark_on_every_model(study, tmp_path):
    work = copy(study, tmp_path)
    dry_run_jobs(work, config=work / "study.yaml")  # the copy's fingerprints re-recorded
    yaml_file = work / "tasks/demo_compare.yaml"
    text = yaml_file.read_text()
    flow = yaml.safe_dump(yaml.safe_load(text), sort_keys=True, default_flow_style=True)
    yaml_file.write_text("# a comment; the keys in another order, flow style\n" + flow)
    assert dry_run_jobs(work, config=work / "study.yaml") == {}  # comments and formatting: nothing

    yaml_file.write_text(text.replace("target_delimiter: ' '", "target_delimiter: ': '"))
    assert pending(work) == {m: ("demo_compare",) for m in ("base", "expert-a", "expert-b", "expert-c", *merges_with(work, "a"), *merges_with(work, "b"))}
    jobs = dry_run_jobs(work, config=work / "study.yaml")
    assert jobs.pop("evaluate") == 4 and jobs.pop("merge_evaluate") == 3
    assert set(jobs) - {"benchmark_data_index"} == AGGREGATION
    scores = files(work, "scores")
    smk(work, "--cores", "2", config=work / "study.yaml")
    assert {c.split("/")[1] for c in changed(scores, files(work, "scores"))} == {"demo_compare"}
    assert len(changed(scores, files(work, "scores"))) == 7
    assert dry_run_jobs(work, config=work / "study.yaml") == {}

    data = work / "tasks/demo_arith.jsonl"  # a data file the other task reads
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[1:] + lines[:1]) + "\n")
    assert set(pending(work).values()) == {("demo_arith",)} and len(pending(work)) == 7
