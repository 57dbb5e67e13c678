"""What tracks inputs by content (issue 26), without running the workflow: a checkpoint's
fingerprint and content, the DAG-time comparison with its pre-flight record (Reruns), the
definition hash of a local lm-eval task (part of its score key), and the aggregation's refusal to
mix task versions. The workflow itself: tests/test_content.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from wildmerge.aggregate.scorecheck import ScoreFileError, check_task_versions
from wildmerge.evaluation.task_index import task_definitions
from wildmerge.merging.merged_model import reusable_manifest
from wildmerge.provenance import (
    atomic_write_json,
    checkpoint_content,
    checkpoint_record,
    fingerprint,
    model_files,
    same_content,
    stable_hash,
)
from wildmerge.study import rerun
from wildmerge.study.plan import Study
from wildmerge.study.rerun import Reruns, pending_content_file

REPO = Path(__file__).resolve().parents[1]


def _checkpoint(d: Path, weights: bytes = b"w" * 64) -> Path:
    """A checkpoint's folder as the fingerprint sees it (the bytes need not be a model)."""
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(weights)
    (d / "config.json").write_text('{"model_type": "llama"}')
    (d / "tokenizer.json").write_text("{}")
    (d / "README.md").write_text("notes")
    (d / ".wildmerge_revision").write_text("abc")
    return d


# --------------------------------------------------------------------------- checkpoints


def test_fingerprint_covers_weights_config_and_tokenizer_and_changes_on_touch(tmp_path):
    d = _checkpoint(tmp_path / "ck")
    assert [p.name for p in model_files(d)] == ["config.json", "model.safetensors", "tokenizer.json"]
    fp = fingerprint(d)
    assert fp == fingerprint(d)
    (d / "README.md").write_text("other notes")
    assert fingerprint(d) == fp  # not a model file
    os.utime(d / "model.safetensors", ns=(1, 1))
    assert fingerprint(d) != fp
    content = checkpoint_content(d)
    assert set(content["files"]) == {"config.json", "tokenizer.json"}
    (d / "tokenizer.json").write_text('{"other": 1}')
    assert not same_content(content, checkpoint_content(d))  # a tokenizer is content too
    assert same_content({"sha256": content["sha256"]}, checkpoint_content(d))  # an older record: weights only


@pytest.fixture
def local_study(tmp_path, monkeypatch):
    """A study of local checkpoints (base, experts a and b) whose pre-flight records exist."""
    monkeypatch.chdir(tmp_path)
    for name in ("base", "a", "b"):
        _checkpoint(tmp_path / "ckpt" / name, weights=name.encode() * 64)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["bases"] = {"tiny": {"model": "ckpt/base", "experts": {"a": "ckpt/a", "b": "ckpt/b"}}}
    cfg["subsets"] = {"sizes": [2], "per_size": 1, "seed": 0}
    cfg["methods"] = {"ta": cfg["methods"]["ta"]}
    cfg["tables"] = {"table1": ["ta"]}
    study = Study(cfg)
    for mid, ck in [("base", "ckpt/base"), ("expert-a", "ckpt/a"), ("expert-b", "ckpt/b")]:
        atomic_write_json(study.preflight_record("tiny", mid), {**checkpoint_record(ck, ck), "preflight": {}})
    hashed: list[str] = []
    real = rerun.checkpoint_content
    monkeypatch.setattr(rerun, "checkpoint_content", lambda d: hashed.append(str(d)) or real(d))
    return study, hashed


def test_dag_build_hashes_a_local_checkpoint_only_when_its_fingerprint_changed(local_study):
    study, hashed = local_study
    record = Path(study.preflight_record("tiny", "expert-b"))
    Reruns(study, check_content=True).check_local_checkpoints()
    assert hashed == []  # stat calls only

    mtime = record.stat().st_mtime_ns
    os.utime("ckpt/b/model.safetensors", ns=(5, 5))  # a touch: the same content
    reruns = Reruns(study, check_content=True)
    reruns.check_local_checkpoints()
    assert hashed == ["ckpt/b"] and record.stat().st_mtime_ns == mtime  # re-recorded, not new
    assert json.loads(record.read_text())["fingerprint"] == fingerprint("ckpt/b")
    assert reruns.checkpoint_content("tiny", "expert-b")["sha256"] == json.loads(record.read_text())["sha256"]
    Reruns(study, check_content=True).check_local_checkpoints()
    assert hashed == ["ckpt/b"]  # cheap again

    old = json.loads(record.read_text())
    Path("ckpt/b/model.safetensors").write_bytes(b"x" * 64)  # other content
    reruns = Reruns(study, check_content=True)
    reruns.check_local_checkpoints()
    now = reruns.checkpoint_content("tiny", "expert-b")
    assert not record.exists() and now["sha256"] != old["sha256"]  # set aside: its pre-flight runs again
    assert json.loads(pending_content_file(record).read_text())["sha256"] == now["sha256"]
    assert Path(study.preflight_record("tiny", "expert-a")).exists()  # the others stay
    Reruns(study, check_content=True).check_local_checkpoints()
    assert hashed == ["ckpt/b", "ckpt/b"]  # the next DAG build reads the kept content
    # a job (no content check) reads the pre-flight record only
    assert Reruns(study).checkpoint_content("tiny", "expert-b") is None


def test_scores_computed_from_other_content_are_pending(local_study):
    study, _ = local_study
    records = {m: json.loads(Path(study.preflight_record("tiny", m)).read_text()) for m in ("base", "expert-a", "expert-b")}
    (merge,) = study.bases["tiny"].merges.values()
    manifest = {"inputs": {"base": records["base"], "experts": {"a": records["expert-a"], "b": records["expert-b"]}}}
    bench = study.benchmark_names[0]
    for model, prov in [("expert-a", {"checkpoint": records["expert-a"]}), ("expert-b", {"checkpoint": records["expert-b"]}),
                        (merge.merge_id, {"merge": manifest})]:
        for b in study.benchmark_names:
            atomic_write_json(study.score_file("tiny", model, b), {"score_key": study.score_key("tiny", model, b), **prov})
            Path(study.item_file("tiny", model, b)).parent.mkdir(parents=True, exist_ok=True)
            Path(study.item_file("tiny", model, b)).touch()
    assert Reruns(study, check_content=True).pending_benchmarks("tiny", "expert-b") == ()
    Path("ckpt/b/model.safetensors").write_bytes(b"y" * 64)
    reruns = Reruns(study, check_content=True)
    assert bench in reruns.pending_benchmarks("tiny", "expert-b")
    assert bench in reruns.pending_benchmarks("tiny", merge.merge_id)
    assert reruns.pending_benchmarks("tiny", "expert-a") == ()


def test_a_kept_merged_model_is_reused_after_its_inputs_fingerprints_change(tmp_path):
    spec = {"merge_id": "m-0", "members": ["a"]}
    records = []
    for name in ("base", "a"):
        d = _checkpoint(tmp_path / name, weights=name.encode() * 8)
        rec = checkpoint_record(d, str(d))
        records.append(rec)
        atomic_write_json(tmp_path / f"{name}.json", rec)
    out = tmp_path / "merged"
    out.mkdir()
    inputs = {"base": records[0], "experts": {"a": records[1]}}
    old_inputs = {"base": {k: v for k, v in records[0].items() if k not in ("fingerprint", "files")},
                  "experts": {"a": records[1]}}
    info = [str(tmp_path / "base.json"), str(tmp_path / "a.json")]
    for recorded in (inputs, old_inputs):  # a manifest from before fingerprints and file hashes
        atomic_write_json(tmp_path / "manifest.json", {**spec, "dtype": "float32", "inputs": recorded,
                                                       "output": {"path": str(out)}})
        atomic_write_json(tmp_path / "a.json", {**records[1], "fingerprint": {"model.safetensors": [1, 2, 3]}})
        assert reusable_manifest(tmp_path / "manifest.json", out, spec, info, "float32") is not None
    atomic_write_json(tmp_path / "a.json", {**records[1], "sha256": "other"})
    assert reusable_manifest(tmp_path / "manifest.json", out, spec, info, "float32") is None


# --------------------------------------------------------------------------- local tasks


def _task_folder(root: Path) -> Path:
    tasks = root / "tasks"
    (tasks / "sub").mkdir(parents=True)
    (tasks / "base.yaml").write_text("output_type: multiple_choice\ntarget_delimiter: ' '\ntest_split: test\n")
    for name in ("t1", "t2"):
        (tasks / f"{name}.jsonl").write_text('{"q": 1}\n')
        (tasks / f"{name}.yaml").write_text(
            f"include: base.yaml\ntask: {name}\ndataset_path: json\n"
            f"dataset_kwargs: {{data_files: {{test: tasks/{name}.jsonl}}}}\n"
        )
    (tasks / "sub" / "t3.yaml").write_text("task: t3\ndataset_path: json\ndoc_to_text: !function utils.text\n")
    (tasks / "sub" / "utils.py").write_text("def text(doc):\n    return doc['q']\n")
    (tasks / "group.yaml").write_text("group: g\ntask: [t1, t3]\naggregate_metric_list: [{metric: acc}]\n")
    return tasks


def test_task_definitions_change_with_the_yaml_its_includes_code_and_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data files are read relative to the working directory, as lm-eval does
    tasks = _task_folder(tmp_path)
    first = task_definitions(tasks)
    assert set(first) == {"t1", "t2", "t3", "g"}

    def after(edit) -> set[str]:
        before = task_definitions(tasks)
        edit()
        now = task_definitions(tasks)
        return {n for n in now if now[n] != before[n]}

    t1 = tasks / "t1.yaml"
    assert after(lambda: t1.write_text("# comment\n" + t1.read_text().replace("\n", "\n\n"))) == set()
    assert after(lambda: t1.write_text(t1.read_text().replace("task: t1", "task: t1\nnum_fewshot: 1"))) == {"t1", "g"}
    assert after(lambda: (tasks / "t2.jsonl").write_text('{"q": 2}\n')) == {"t2"}
    assert after(lambda: (tasks / "base.yaml").write_text("output_type: multiple_choice\ntarget_delimiter: ': '\n")) == {"t1", "t2", "g"}
    assert after(lambda: (tasks / "sub" / "utils.py").write_text("def text(doc):\n    return str(doc)\n")) == {"t3", "g"}
    # the same folder elsewhere (a copied study) gives the same definitions
    shutil.copytree(tasks, tmp_path / "copy" / "tasks")
    monkeypatch.chdir(tmp_path / "copy")
    assert task_definitions("tasks") == task_definitions(tasks)


def test_score_keys_take_a_local_task_definition_and_keep_demo_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    demo = Study(cfg)
    assert demo.task_definitions == {}
    spec = demo.benchmark_spec("demo_arith")  # the key's benchmark part as it was before prompt options
    old = stable_hash({"model": {"checkpoint": "demo:arith"},
                       "benchmark": {k: spec[k] for k in ("name", "num_fewshot", "metric")},
                       "settings": demo.score_settings()}, 16)
    assert demo.score_key("tiny-llama", "expert-arith", "demo_arith") == old  # no demo result reruns

    _task_folder(tmp_path)
    cfg["evaluation"].update(include_path="tasks", benchmarks=["t1", "t2"])
    keys = {b: Study(cfg).score_key("tiny-llama", "base", b) for b in ("t1", "t2")}
    (tmp_path / "tasks/t2.jsonl").write_text('{"q": 3}\n')
    now = Study(cfg)
    assert now.score_key("tiny-llama", "base", "t1") == keys["t1"]  # its task did not change
    assert now.score_key("tiny-llama", "base", "t2") != keys["t2"]  # its data did


# --------------------------------------------------------------------------- task versions in a table


def test_scores_of_two_task_versions_stop_the_aggregation_naming_the_redo(tmp_path):
    records = []
    for i, model in enumerate(("base", "expert-a", "expert-b")):
        path = tmp_path / "scores" / "tb" / model / "x.json"
        version = {"config_sha": "new" if model == "expert-b" else "old", "data_sha": {}}
        rec = {"benchmark": "x", "task_hash": version, "subtask_hashes": {}}
        atomic_write_json(path, rec)
        os.utime(path, ns=(i, i))  # expert-b's written last: its version is the current one
        records.append((path, rec))
    other = (tmp_path / "y.json", {"benchmark": "y", "task_hash": {"config_sha": "a"}})
    check_task_versions(records[:2] + [other])  # one version per benchmark
    check_task_versions([*records, (tmp_path / "z.json", {"benchmark": "x"})][2:])  # files without hashes are not compared
    with pytest.raises(ScoreFileError) as err:
        check_task_versions(records + [other])
    msg = str(err.value)
    assert msg.startswith("benchmark x: its score files were computed with 2 versions of its task definition")
    redo = f"rm {records[0][0]} {records[1][0]} && snakemake"
    assert f"`{redo}`" in msg and "y" not in msg.split("benchmark x")[0]


def test_a_task_hash_ignores_the_memory_address_lm_eval_writes_for_a_function():
    """lm-eval's results["configs"] write a `!function` as its repr (medmcqa's doc_to_text, as
    two evaluation jobs of the rehearsal wrote it); without the address the hash is the same in
    every process (the rehearsal's Appendix E table stopped on "13 versions" of medmcqa before)."""
    from wildmerge.evaluation.lm_eval_run import task_hash

    def cfg(fn: str) -> dict:
        return {"task": "medmcqa", "doc_to_text": fn, "doc_to_choice": ["A", "B", "C", "D"]}

    one, two = cfg("<function doc_to_text at 0x7fc35e0fb4c0>"), cfg("<function doc_to_text at 0x7f405ba4b420>")
    assert task_hash(one) == task_hash(two)
    assert task_hash(one) != task_hash(cfg("<function other_doc_to_text at 0x7fc35e0fb4c0>"))
    plain = cfg("{{question}}")  # no callable: the hash is what it was before (score files stay valid)
    assert task_hash(plain)["config_sha"] == stable_hash(plain, 16)
