"""A job killed mid-write (SIGKILL of the whole Snakemake process group) leaves nothing that
a rerun accepts as complete; the rerun redoes the job and gets the same result."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from workflow_helpers import OFFLINE, REPO, SNAKEMAKE, dry_run_job_wildcards, evaluation_record, smk

sys.path.insert(0, str(REPO))


def _first_merge() -> str:
    from wildmerge.study.plan import Study

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    merges = Study(cfg).bases["tiny-llama"].merges
    return next(m for m in sorted(merges) if merges[m].method == "ta")


def _wait_for(pred, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, "the job finished before it could be killed"
        assert time.time() - t0 < timeout, "timed out waiting for the job to start writing"
        time.sleep(0.005)


@pytest.mark.parametrize(
    "stage",
    [
        "merge",
        "evaluate",
    ],
)
def test_sigkill_mid_write_is_not_accepted_as_complete(demo_run, tmp_path, stage):
    shutil.copytree(demo_run / "resources", tmp_path / "resources")
    mid = _first_merge()
    scores = tmp_path / "results/demo/scores/tiny-llama" / mid
    # the evaluation job's one output (it writes the score files): the same name after the kill
    targets = [evaluation_record(tmp_path, REPO / "config.yaml", "tiny-llama", mid)]
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                       "--configfile", str(REPO / "config.yaml"), "--cores", "1", *targets]
    proc = subprocess.Popen(cmd, env={**os.environ, **OFFLINE}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if stage == "merge":  # the merge job has started writing the merged model
            merged = tmp_path / "results/demo/models/tiny-llama"
            _wait_for(lambda: merged.is_dir() and any(merged.iterdir()), proc)
        else:  # the first score file of the merged model is there, others are not yet
            _wait_for(lambda: scores.is_dir() and any(scores.glob("*.json")), proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    # not accepted as complete: a plain run either refuses the incomplete outputs or, where
    # none survived, schedules the job again; a rerun (as the SLURM profile does) redoes it
    killed = f"base=tiny-llama, model={mid}"  # merged and scored in one job: merge_evaluate
    # (score files are written atomically one by one: those complete before the kill are kept,
    # the job is planned again over the other benchmarks; the merged model, complete, is reused)
    plain = smk(tmp_path, "-n", *targets, check=False)
    if plain.returncode != 0:
        assert "incomplete" in (plain.stdout + plain.stderr).lower()
    else:
        assert killed in plain.stdout
    jobs = dry_run_job_wildcards(tmp_path, "--rerun-incomplete", *targets)
    assert killed in jobs["merge_evaluate"]
    smk(tmp_path, "--unlock", *targets)  # the killed run's lock, as after any crash
    smk(tmp_path, "--cores", "1", "--rerun-incomplete", *targets)
    for bench_file in (demo_run / "results/demo/scores/tiny-llama" / mid).glob("*.json"):
        got = yaml.safe_load((scores / bench_file.name).read_text())
        want = yaml.safe_load(bench_file.read_text())
        assert got["value"] == want["value"] and got["model_sha256"] == want["model_sha256"]


def _variant_of_demo_base(demo_run: Path, out: Path, kind: str) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(demo_run / "resources/demo/base"), dtype=torch.float32)
    if kind == "resized":  # as the MergeBench Llama-3.2-3B fine-tunes: more rows in embed/lm_head
        from transformers import AutoTokenizer

        model.resize_token_embeddings(model.config.vocab_size + 8)
        # and, as they do, a tokenizer that numbers the 8 new tokens
        tok = AutoTokenizer.from_pretrained(str(demo_run / "resources/demo/base"))
        tok.add_tokens([f"<extra_{i}>" for i in range(8)])
        tok.save_pretrained(str(out))
    if kind == "pickle":  # an old-style checkpoint: weights only as a pickle
        out.mkdir()
        model.config.save_pretrained(str(out))
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    else:
        model.save_pretrained(str(out))
    return out


@pytest.mark.parametrize(
    "kind, policy, expected",
    [
        ("resized", "error", ["expert 'odd'", "embed_tokens", "merge.tokenizer_source"]),
        ("pickle", "error", ["expert 'odd'", "pickle"]),
        ("resized", "union", None),
    ],
)
def test_preflight_of_a_local_checkpoint(demo_run, tmp_path, kind, policy, expected):
    """Before any merge or evaluation uses it, an incompatible checkpoint stops the study with
    a message naming it and the fix; a configured resolution lets it through, recorded."""
    odd = _variant_of_demo_base(demo_run, tmp_path / "odd-checkpoint", kind)
    shutil.copytree(demo_run / "resources", tmp_path / "resources")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["bases"]["tiny-llama"]["experts"]["odd"] = str(odd)  # a local directory, as a user's own
    cfg.setdefault("merge", {})["tokenizer_source"] = policy
    config = tmp_path / "odd.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/demo/checkpoints/tiny-llama/expert-odd.json"
    proc = smk(tmp_path, "--cores", "1", target, config=config, check=False)
    log = (tmp_path / "results/demo/logs/preflight/tiny-llama/expert-odd.log").read_text()
    if expected is None:
        assert proc.returncode == 0, log
        rec = yaml.safe_load((tmp_path / target).read_text())
        assert rec["preflight"]["resolution"] == {"tokenizer_source": policy}
    else:
        assert proc.returncode != 0
        assert not (tmp_path / target).exists()
        for text in expected:
            assert text in log, (text, log)
