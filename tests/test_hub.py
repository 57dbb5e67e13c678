"""Hub checkpoints against a local hub-compatible server: lock, resume, verification, clear failures."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from hub_server import HubServer, HubState, Repo

TOKEN = "hf_wildmergeTESTsecret0123456789"


def model_files(seed: int, rows: int = 64) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "config.json": json.dumps({"model_type": "llama", "hidden_size": 8}).encode(),
        "model.safetensors": save({"w": rng.standard_normal((rows, 256)).astype(np.float32)}),
    }


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[HubState, dict[str, str]]]:
    state = HubState()
    with HubServer(state) as url:
        # Xet left as in production (HF_HUB_DISABLE_XET unset): the test hub does not advertise it
        # (tests/hub_server.py), so huggingface_hub downloads over HTTP as it does from the hub for
        # repositories not stored on Xet. HF_TOKEN_PATH: no token stored on this machine is used.
        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
        env.update({"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HUB_CACHE": str(tmp_path / "hfcache"),
                    "HF_TOKEN": TOKEN, "HF_TOKEN_PATH": str(tmp_path / "no-stored-token"), "WILDMERGE_HUB_BACKOFF_S": "0"})
        yield state, env


def fetch(env: dict[str, str], tmp: Path, repo: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "wildmerge.hub", "fetch", repo, "--out", str(tmp / "hub" / repo.replace("/", "--")),
           "--lock", str(tmp / "results" / "hub.lock"), "--key", f"checkpoints.{repo}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_lock_holds_across_upstream_change_and_update_moves_only_changed(hub, tmp_path: Path) -> None:
    state, env = hub
    a, b = Repo(), Repo()
    ca = a.push(model_files(1))
    b.push(model_files(2))
    state.repos.update({"org/a": a, "org/b": b})
    for repo in ("org/a", "org/b"):
        r = fetch(env, tmp_path, repo)
        assert r.returncode == 0, r.stderr
    lock = [json.loads(line) for line in (tmp_path / "results/hub.lock").read_text().splitlines()]
    assert {e["source"] for e in lock} == {"org/a", "org/b"}
    ea = next(e for e in lock if e["source"] == "org/a")
    assert ea["commit"] == ca and ea["requested"] is None
    assert ea["files"]["model.safetensors"]["sha256"] and ea["files"]["config.json"]["size"] > 0
    out_a = tmp_path / "hub/org--a"
    rec = json.loads((out_a / ".wildmerge_lock.json").read_text())
    assert rec["commit"] == ca and rec["files"]["model.safetensors"]["sha256"] == ea["files"]["model.safetensors"]["sha256"]
    # the weights live in the hub cache (HF_HUB_CACHE), the output only links to them
    assert (out_a / "model.safetensors").resolve().is_relative_to(tmp_path / "hfcache")
    from wildmerge.provenance import checkpoint_record  # what the preflight rule (and so every score file) records

    prov = checkpoint_record(out_a, "org/a")
    assert prov["revision"] == ca and prov["hub"]["files"]["model.safetensors"]["sha256"] == ea["files"]["model.safetensors"]["sha256"]

    new_a = a.push(model_files(3))  # upstream moves on
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    assert (out_a / ".wildmerge_revision").read_text().strip() == ca  # the lock holds

    up = subprocess.run([sys.executable, "-m", "wildmerge.hub", "update", "--lock", str(tmp_path / "results/hub.lock"),
                         "--hub-root", str(tmp_path / "hub")], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "1 lock entr(y/ies) moved forward" in up.stdout and new_a in up.stdout
    assert not out_a.exists() and (tmp_path / "hub/org--b").exists()  # only the changed one is fetched again
    assert fetch(env, tmp_path, "org/a").returncode == 0
    assert (out_a / ".wildmerge_revision").read_text().strip() == new_a
    assert TOKEN not in up.stdout + up.stderr + (tmp_path / "results/hub.lock").read_text()


def test_dropped_connection_resumes_and_429_is_retried(hub, tmp_path: Path) -> None:
    state, env = hub
    a = Repo()
    a.push(model_files(1, rows=24 * 1024))  # 24 MiB: cut at 12 MiB, past huggingface_hub's 10 MiB chunk
    state.repos["org/a"] = a
    state.drop_once.add("model.safetensors")
    state.fail_429 = 2
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    gets = [rng for m, p, rng in state.requests if m == "GET" and p.endswith("/model.safetensors")]
    assert len(gets) == 2 and gets[0] is None and gets[1] == f"bytes={10 * 1024 * 1024}-"  # resumed, not restarted
    assert TOKEN not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        ("gated", ["is gated (HTTP 403: the token sent has no access", "checkpoints.org/a", "https://huggingface.co/org/a",
                   "HF_TOKEN"]),
        ("missing", ["not found, or private/gated (HTTP 401)", "checkpoints.org/missing", "HF_TOKEN"]),
        ("pickle", ["no .safetensors", "pytorch_model.bin", "refused"]),
        ("adapter", ["adapter", "refused"]),
    ],
)
def test_clear_failures_without_retry_or_weight_download(hub, tmp_path: Path, setup: str, expect: list[str]) -> None:
    state, env = hub
    a = Repo(gated=setup == "gated")  # HF_TOKEN's user has not accepted its license
    if setup == "pickle":
        a.push({"config.json": b"{}", "pytorch_model.bin": b"x" * 1000})
    elif setup == "adapter":
        a.push({"adapter_config.json": b"{}", "adapter_model.safetensors": b"x" * 1000})
    else:
        a.push(model_files(1))
    state.repos["org/a"] = a
    r = fetch(env, tmp_path, "org/missing" if setup == "missing" else "org/a")
    assert r.returncode == 2, r.stdout + r.stderr
    for text in expect:
        assert text in r.stderr
    assert "Traceback" not in r.stderr and TOKEN not in r.stdout + r.stderr
    repo_requests = [r[:2] for r in state.requests if "agent-harnesses" not in r[1]]
    info = [("GET", "/api/models/org/missing" if setup == "missing" else "/api/models/org/a")]
    # one info request; a gated repository is listed like the real hub's, its first download refused: no retries
    assert repo_requests == (info + [("GET", f"/org/a/resolve/{a.refs['main']}/model.safetensors")] if setup == "gated" else info)
    assert state.file_host == []  # no weight bytes were served


def test_gated_repository_is_locked_refused_then_fetched_with_a_granted_token(hub, tmp_path: Path) -> None:
    """The real hub's gated flow: the info call answers (the lock entry is written), the download
    is refused: 401 without a token, 403 with a token whose user has not accepted the license;
    each error names the key and says what to do. Once the license is accepted the next run
    downloads the commit locked by the first one, though upstream moved on meanwhile."""
    state, env = hub
    a = Repo(gated=True)
    first = a.push(model_files(1))
    state.repos["org/a"] = a
    lock = tmp_path / "results/hub.lock"

    r = fetch({k: v for k, v in env.items() if k != "HF_TOKEN"}, tmp_path, "org/a")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for text in ["checkpoints.org/a", "is gated (HTTP 401: no token was sent)", "https://huggingface.co/org/a",
                 "accept its license", "export HF_TOKEN"]:
        assert text in r.stderr
    entry = json.loads(lock.read_text())  # resolved before the refused download: kept, a commit is a commit
    assert entry["source"] == "org/a" and entry["commit"] == first
    assert not (tmp_path / "hub/org--a").exists()

    r = fetch(env, tmp_path, "org/a")  # a token, not (yet) granted
    assert r.returncode == 2 and "is gated (HTTP 403: the token sent has no access to it yet)" in r.stderr, r.stderr
    assert "checkpoints.org/a" in r.stderr and TOKEN not in r.stdout + r.stderr

    a.push(model_files(2))  # upstream moves on while the user waits for access
    a.granted.add(TOKEN)
    state.requests.clear()
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hub/org--a/.wildmerge_revision").read_text().strip() == first
    assert (tmp_path / "hub/org--a/model.safetensors").read_bytes() == model_files(1)["model.safetensors"]
    assert {p for _, p, _ in state.requests if "/resolve/" in p} <= {f"/org/a/resolve/{first}/{f}" for f in model_files(1)}
    assert [line for line in lock.read_text().splitlines() if line] == [json.dumps(entry, sort_keys=True)]
    assert all(auth is None for *_, auth in state.file_host)  # the token never left the hub


def test_weights_follow_the_redirect_to_the_file_host(hub, tmp_path: Path) -> None:
    """/resolve/ of an LFS file answers 302 to another host, as the hub's CDN redirect: the weights
    come from there (the token not sent along), the small files from the hub itself."""
    state, env = hub
    a = Repo()
    commit = a.push(model_files(1))
    state.repos["org/a"] = a
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    sha = hashlib.sha256(model_files(1)["model.safetensors"]).hexdigest()
    assert [(m, p) for m, p, _, _ in state.file_host] == [("GET", f"/repos/{sha[:2]}/{sha}")]
    assert all(auth is None for *_, auth in state.file_host)
    assert ("GET", f"/org/a/resolve/{commit}/model.safetensors", None) in state.requests  # answered 302
    assert ("GET", f"/org/a/resolve/{commit}/config.json", None) in state.requests  # served by the hub
    assert (tmp_path / "hub/org--a/model.safetensors").read_bytes() == model_files(1)["model.safetensors"]


def test_5xx_bursts_are_retried_with_backoff(hub, tmp_path: Path) -> None:
    """Two 503 on the info call and two on the weights' download, then the answers: each is
    retried after WILDMERGE_HUB_BACKOFF_S, then twice that, and the fetch succeeds."""
    state, env = hub
    a = Repo()
    commit = a.push(model_files(1))
    state.repos["org/a"] = a
    state.bursts = {"info": [503, 503], "model.safetensors": [503, 503]}
    r = fetch({**env, "WILDMERGE_HUB_BACKOFF_S": "0.2"}, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    assert state.bursts == {"info": [], "model.safetensors": []}
    info = [i for i, (m, p, _) in enumerate(state.requests) if p == "/api/models/org/a"]
    gets = [i for i, (m, p, _) in enumerate(state.requests) if m == "GET" and p == f"/org/a/resolve/{commit}/model.safetensors"]
    assert len(info) == 3 and len(gets) == 3  # two refused, the third answered
    for tries in (info, gets):
        waits = [state.times[j] - state.times[i] for i, j in zip(tries, tries[1:])]
        assert waits[0] >= 0.2 and waits[1] >= 0.4  # backoff doubles
    assert r.stderr.count("(try 1/5), retrying in 0.2s") == 2 and r.stderr.count("(try 2/5), retrying in 0.4s") == 2
    assert (tmp_path / "hub/org--a/model.safetensors").read_bytes() == model_files(1)["model.safetensors"]


def test_revision_not_found_names_the_key(hub, tmp_path: Path) -> None:
    state, env = hub
    a = Repo()
    a.push(model_files(1))
    state.repos["org/a"] = a
    r = fetch(env, tmp_path, "org/a", "--revision", "nope")
    assert r.returncode == 2 and "checkpoints.org/a" in r.stderr and "'nope'" in r.stderr


def test_tampered_cache_file_is_rejected(hub, tmp_path: Path) -> None:
    state, env = hub
    a = Repo()
    a.push(model_files(1))
    state.repos["org/a"] = a
    assert fetch(env, tmp_path, "org/a").returncode == 0
    blob = (tmp_path / "hub/org--a/model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 2 and "sha256 differs from the lock" in r.stderr


def expert_files(base: Path, seed: int) -> dict[str, bytes]:
    """A checkpoint "fine-tuned" from the demo base in ``base``: its files, the weights perturbed."""
    from safetensors.numpy import load_file

    rng = np.random.default_rng(seed)
    tensors = {k: (v + 0.01 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in load_file(base / "model.safetensors").items()}
    files = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file() and p.name != "model.safetensors"}
    return {**files, "model.safetensors": save(tensors, metadata={"format": "pt"})}


@pytest.mark.slow  # runs the workflow
def test_workflow_fetch_lock_and_update_reruns_only_the_changed_checkpoint(hub, tmp_path: Path) -> None:
    """A study of two hub checkpoints (perturbed copies of the demo base) run end to end: the lock
    holds when upstream moves; a pinned `revision`, or `update` moving one checkpoint's commit,
    reruns that checkpoint's fetch, pre-flight and evaluation and the merge that uses it, the
    expert geometry and the aggregation -- never the other checkpoint's or the base's jobs."""
    from workflow_helpers import REPO, SNAKEMAKE, parse_job_stats, parse_job_wildcards, write_config

    state, env = hub
    cfg = {
        "study": "hub", "results": "results/hub", "demo": {"seed": 0, "n_eval": 20},
        "bases": {"tiny-llama": {"model": "demo:base", "experts": {"a": "org/a", "b": "org/b"}}},
        "subsets": {"sizes": [2], "per_size": 1, "seed": 0},
        "methods": {"ta": {"method": "task_arithmetic", "params": {"lambda": 1.0}}},
        "merge": {"dtype": "float32", "device": "cpu"},
        "evaluation": {"include_path": "demo", "benchmarks": ["demo_arith"], "batch_size": 16, "device": "cpu"},
        "tables": {"table1": ["ta"]},
    }
    config = write_config(tmp_path / "hub.yaml", cfg)

    def snakemake(*args: str, config: Path = config) -> subprocess.CompletedProcess[str]:
        cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                           str(config), "-c2", *args]
        r = subprocess.run(cmd, env={**env, "NO_PROXY": "127.0.0.1"}, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
        return r

    snakemake("resources/demo/base")
    a, b = Repo(), Repo()
    first = a.push(expert_files(tmp_path / "resources/demo/base", 1))
    b.push(expert_files(tmp_path / "resources/demo/base", 2))
    state.repos.update({"org/a": a, "org/b": b})
    snakemake()  # the whole study
    lock = tmp_path / "results/hub/hub.lock"
    assert len(lock.read_text().splitlines()) == 2
    (merge,) = [p.name for p in (tmp_path / "results/hub/scores/tiny-llama").glob("m-*")]
    a.push({**a.commits[first], "README.md": b"a new commit\n"})  # upstream moves: the lock holds, nothing to do
    assert parse_job_stats(snakemake("-n").stdout) == {}

    def rerun_of_a(jobs: dict[str, set[str]], hubdir: str) -> str:
        assert jobs.pop("fetch_hub_model") == {f"hubdir={hubdir}"}
        assert jobs.pop("preflight") == {"base=tiny-llama, checkpoint=expert-a"}
        assert jobs.pop("evaluate") == {"base=tiny-llama, model=expert-a"}  # not the base's, not b's
        (merged,) = jobs.pop("merge_evaluate")  # the merge of a and b
        assert merged.startswith("base=tiny-llama, model=m-")
        assert jobs.pop("geometry") == {"base=tiny-llama"}
        assert set(jobs) == {"collect", "tables", "item_tables", "figures", "all"}
        return merged

    # a pinned revision is another checkpoint: fetched, checked and scored, with another merge id
    pinned = copy.deepcopy(cfg)
    pinned["bases"]["tiny-llama"]["experts"]["a"] = {"source": "org/a", "revision": first}
    other = rerun_of_a(parse_job_wildcards(snakemake("-n", config=write_config(tmp_path / "pinned.yaml", pinned)).stdout),
                       f"org--a@{first}")
    assert other != f"base=tiny-llama, model={merge}"

    up = subprocess.run([sys.executable, "-m", "wildmerge.hub", "update", "--lock", str(lock), "--hub-root",
                         str(tmp_path / "resources/hub")], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0 and "1 lock entr(y/ies) moved forward" in up.stdout, up.stderr
    # the checkpoint whose commit moved: fetched again, then what used it (its score files name the old commit)
    moved = rerun_of_a(parse_job_wildcards(snakemake("-n").stdout), "org--a")
    assert moved == f"base=tiny-llama, model={merge}"  # the same merge, scored again
    logs = "".join(p.read_text() for p in (tmp_path / "logs/fetch").glob("*.log"))
    assert TOKEN not in logs


def test_disk_space_is_checked_before_download(hub, tmp_path: Path) -> None:
    state, env = hub
    a = Repo()
    a.push(model_files(1))
    state.repos["org/a"] = a
    lock = tmp_path / "results" / "hub.lock"
    lock.parent.mkdir(parents=True)
    r = fetch(env, tmp_path, "org/a")  # writes the lock; now claim the weights are a petabyte
    entry = json.loads(lock.read_text())
    entry["files"]["model.safetensors"]["size"] = 10**15
    lock.write_text(json.dumps(entry) + "\n")
    (tmp_path / "hfcache").rename(tmp_path / "hfcache-old")
    state.requests.clear()
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 2 and "needs 1000000.00 GB" in r.stderr and "HF_HUB_CACHE" in r.stderr
    assert not [p for m, p, _ in state.requests if p.endswith("model.safetensors")]


@pytest.mark.slow  # runs the workflow
def test_fetch_hub_target_plans_only_the_hub_checkpoints(tmp_path: Path) -> None:
    from workflow_helpers import REPO, dry_run_job_wildcards

    jobs = dry_run_job_wildcards(tmp_path, "fetch_hub", config=REPO / "config/paper.yaml")
    assert set(jobs) == {"fetch_hub", "fetch_hub_model", "fetch_benchmark_data"}  # no merge or evaluation
    # 52 of the main study, 10 of Appendix E's groups; the 16 benchmarks and 15 suite-only tasks
    assert len(jobs["fetch_hub_model"]) == 52 + 10 and len(jobs["fetch_benchmark_data"]) == 16 + 15


def tinybench_task(tmp_path: Path, extra: str = "") -> Path:
    """A folder with one lm-eval task, ``tinybench``, on the hub dataset ``org/tinyds``."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tinybench.yaml").write_text(
        "task: tinybench\ndataset_path: org/tinyds\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n" + extra
    )
    return tasks


def tiny_dataset(rows: list[tuple[str, str]]) -> dict[str, bytes]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"question": [q for q, _ in rows], "answer": [a for _, a in rows]}), buf)
    return {"README.md": b"# tiny benchmark\n", "data/test-00000-of-00001.parquet": buf.getvalue()}


def test_benchmark_data_fetched_once_at_locked_revision_then_checked_offline(hub, tmp_path: Path) -> None:
    state, env = hub
    env = {**env, "HF_HOME": str(tmp_path / "hfhome"), "HF_DATASETS_OFFLINE": "0"}
    ds = Repo()
    first = ds.push(tiny_dataset([("1+1", "2")]))
    gpqa = Repo(gated=True)  # listed, its files refused: HF_TOKEN's user has not accepted its license
    gpqa_commit = gpqa.push(tiny_dataset([("q", "a")]))
    state.repos.update({"org/tinyds": ds, "org/gpqa": gpqa})
    lock = tmp_path / "results/hub.lock"

    def data(*args: str, offline: bool = False) -> subprocess.CompletedProcess[str]:
        e = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if offline else env
        cmd = [sys.executable, "-m", "wildmerge.hub", "fetch-data", *args, "--lock", str(lock)]
        return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)

    r = data("tinybench", "org/tinyds", "--out", str(tmp_path / "data/tinybench.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "data/tinybench.json").read_text())["commit"] == first
    ds.push(tiny_dataset([("2+2", "4")]))  # upstream change: the lock holds
    r = data("tinybench", "org/tinyds", "--out", str(tmp_path / "data/tinybench.json"))
    assert r.returncode == 0 and json.loads((tmp_path / "data/tinybench.json").read_text())["commit"] == first
    assert data("tinybench", "org/tinyds", "--out", "-", "--check", offline=True).returncode == 0
    missing = data("otherbench", "org/other", "--out", "-", "--check", offline=True)
    assert missing.returncode == 2 and "benchmark otherbench" in missing.stderr
    (tmp_path / "hfhome").rename(tmp_path / "hfhome-gone")  # locked, but not in the cache
    gone = data("tinybench", "org/tinyds", "--out", "-", "--check", offline=True)
    assert gone.returncode == 2 and "benchmark tinybench" in gone.stderr and "not in the datasets cache" in gone.stderr
    gated = data("gpqa", "org/gpqa", "--out", str(tmp_path / "data/gpqa.json"))
    assert gated.returncode == 2 and "Traceback" not in gated.stderr, gated.stderr
    for text in ["evaluation.benchmarks: gpqa (dataset org/gpqa)", "is gated (HTTP 403", "HF_TOKEN",
                 "https://huggingface.co/datasets/org/gpqa"]:
        assert text in gated.stderr
    assert TOKEN not in r.stderr + gated.stderr + lock.read_text()
    (tmp_path / "hfhome-gone").rename(tmp_path / "hfhome")
    gpqa.push(tiny_dataset([("q2", "a2")]))
    gpqa.granted.add(TOKEN)  # the license accepted: the commit locked by the refused run is fetched
    assert data("gpqa", "org/gpqa", "--out", str(tmp_path / "data/gpqa.json")).returncode == 0
    assert json.loads((tmp_path / "data/gpqa.json").read_text())["commit"] == gpqa_commit
    up = subprocess.run([sys.executable, "-m", "wildmerge.hub", "update", "--lock", str(lock), "--hub-root",
                         str(tmp_path / "hub"), "--data-root", str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0 and "2 lock entr(y/ies) moved forward" in up.stdout, up.stderr  # tinyds and gpqa
    assert not (tmp_path / "data/gpqa.json").exists()
    assert not (tmp_path / "data/tinybench.json").exists()  # its benchmark is fetched (and scored) again


@pytest.mark.slow  # runs the workflow
def test_workflow_fetches_benchmark_data_into_the_lock_and_scores_record_the_locked_commit(hub, tmp_path: Path) -> None:
    from workflow_helpers import REPO, SNAKEMAKE, evaluation_record, write_config

    state, env = hub
    ds = Repo()
    commit = ds.push(tiny_dataset([("1+1", "2")]))
    state.repos["org/tinyds"] = ds
    tasks = tinybench_task(tmp_path, "generation_kwargs:\n  max_gen_toks: 4\n")
    cfg = write_config(tmp_path / "data.yaml", {"evaluation": {"include_path": str(tasks), "benchmarks": ["tinybench"]}})
    score = tmp_path / "results/demo/scores/tiny-llama/base/tinybench.json"
    env = {**env, "HF_HOME": str(tmp_path / "hfhome"), "HF_DATASETS_OFFLINE": "0", "NO_PROXY": "127.0.0.1"}

    def snakemake(*args: str) -> subprocess.CompletedProcess[str]:
        # the base's evaluation (its job's one output: a new name each time it has something to score)
        target = evaluation_record(tmp_path, [REPO / "config.yaml", cfg], "tiny-llama", "base")
        cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                           str(REPO / "config.yaml"), str(cfg), "-c1", *args, target]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
        return r

    snakemake()
    rec = json.loads((tmp_path / "resources/data/tinybench.json").read_text())
    assert [d["commit"] for d in rec["datasets"]] == [commit] and rec["datasets"][0]["dataset"] == "org/tinyds"
    assert "dataset:org/tinyds" in (tmp_path / "results/demo/hub.lock").read_text()
    s = json.loads(score.read_text())
    assert [d["commit"] for r in s["datasets"] for d in r["datasets"]] == [commit] and s["n_samples"]["original"] == 1

    ds.push(tiny_dataset([("2+2", "4"), ("3+3", "6")]))  # upstream moves on; its newest commit also lands in
    newer = "import datasets; datasets.load_dataset('org/tinyds')"  # the shared cache (another study)
    assert subprocess.run([sys.executable, "-c", newer], env=env, capture_output=True, timeout=120).returncode == 0
    state.requests.clear()
    score.unlink()  # scored again
    r = snakemake()
    assert "fetch_benchmark_data" not in r.stdout + r.stderr  # no `update`: the locked data stays
    assert not [q for q in state.requests if "tinyds" in q[1]]  # the evaluation ran offline
    s = json.loads(score.read_text())
    assert [d["commit"] for r in s["datasets"] for d in r["datasets"]] == [commit] and s["n_samples"]["original"] == 1
    assert TOKEN not in json.dumps(s) + "".join(p.read_text() for p in tmp_path.glob("**/logs/**/*.log"))

    # `update` moves the dataset forward: its benchmark is fetched and scored again, though the
    # score file is there and its score key unchanged (the file records the old commit)
    up = subprocess.run([sys.executable, "-m", "wildmerge.hub", "update", "--lock", str(tmp_path / "results/demo/hub.lock"),
                         "--hub-root", str(tmp_path / "resources/hub"), "--data-root", str(tmp_path / "resources/data")],
                        env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0 and "1 lock entr(y/ies) moved forward" in up.stdout, up.stderr
    dry = snakemake("-n").stdout
    assert "rule fetch_benchmark_data:" in dry and "model=base" in dry, dry[-3000:]


@pytest.mark.slow  # runs the workflow
def test_evaluations_wait_for_fetched_benchmark_data_except_the_generated_demo(tmp_path: Path) -> None:
    from workflow_helpers import REPO, dry_run_jobs

    paper = dry_run_jobs(tmp_path / "paper", config=REPO / "config/paper.yaml")
    assert paper["fetch_benchmark_data"] == 16 + 15 and paper["fetch_hub_model"] == 52 + 10  # with App. E
    assert "fetch_benchmark_data" not in dry_run_jobs(tmp_path / "demo")  # demo stays offline, no extra jobs


def _killed_mid_file(state: HubState, env: dict[str, str], tmp: Path, repo: str) -> Path:
    """Start a fetch of ``repo`` (its weights trickle past 12 MiB), SIGKILL it mid-file; the partial left."""
    import signal
    import time

    state.slow_once["model.safetensors"] = 12 * 1024 * 1024
    cmd = [sys.executable, "-m", "wildmerge.hub", "fetch", repo, "--out", str(tmp / "hub" / repo.replace("/", "--")),
           "--lock", str(tmp / "results" / "hub.lock"), "--key", f"checkpoints.{repo}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    partial: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        partial = [p for p in (tmp / "hfcache").glob("models--*/blobs/*.wildmerge-partial") if p.stat().st_size > 0]
        if partial:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # as a SLURM time limit would
    proc.wait(timeout=30)
    assert partial, "the fetch never wrote a partial file"
    return partial[0]


@pytest.mark.parametrize("corrupt", [False, True])
def test_fetch_killed_mid_file_is_resumed_by_the_next_job(hub, tmp_path: Path, corrupt: bool) -> None:
    state, env = hub
    a = Repo()
    a.push(model_files(1, rows=24 * 1024))  # 24 MiB: the first 10 MiB chunk is on disk before the kill
    state.repos["org/a"] = a
    partial = _killed_mid_file(state, env, tmp_path, "org/a")
    have = partial.stat().st_size
    assert 0 < have < 24 * 1024 * 1024
    if corrupt:  # wrong bytes in the partial: the next job must not accept them
        with open(partial, "r+b") as fh:
            fh.write(b"\0" * 4096)
    state.requests.clear()
    r = fetch(env, tmp_path, "org/a")
    assert r.returncode == 0, r.stderr
    gets = [rng for m, p, rng in state.requests if m == "GET" and p.endswith("/model.safetensors")]
    # the next job asks only for the missing bytes; a corrupt partial is then downloaded once more, whole
    assert gets == ([f"bytes={have}-", None] if corrupt else [f"bytes={have}-"])
    if corrupt:
        assert "corrupt partial" in r.stderr
    lock = json.loads((tmp_path / "results/hub.lock").read_text())
    from wildmerge.provenance import file_sha256

    assert file_sha256(tmp_path / "hub/org--a/model.safetensors") == lock["files"]["model.safetensors"]["sha256"]
    assert not list((tmp_path / "hfcache").glob("**/*.wildmerge-partial"))


@pytest.mark.slow  # runs the workflow
@pytest.mark.parametrize("failure", ["gated", "pickle"])
def test_deterministic_failure_runs_once_under_the_slurm_profile(hub, tmp_path: Path, failure: str) -> None:
    """The SLURM profile retries every job twice (`retries: 2`); the fetch rules' own `retries: 0` wins
    (Snakemake 9: a rule's value overrides --retries), so a gated or pickle-only repository fails once."""
    import yaml
    from workflow_helpers import REPO, SNAKEMAKE, write_config

    profile = REPO / "profiles/slurm"
    assert yaml.safe_load((profile / "config.v9+.yaml").read_text())["retries"] == 2
    state, env = hub
    a = Repo(gated=failure == "gated")
    a.push({"config.json": b"{}", "pytorch_model.bin": b"x" * 1000} if failure == "pickle" else model_files(1))
    state.repos["org/a"] = a
    cfg = write_config(tmp_path / "hub.yaml", {"bases": {"tiny-llama": {"model": "demo:base", "experts": {"a": "org/a"}}}})
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile",
                       str(REPO / "config.yaml"), str(cfg), "--profile", str(profile), "--executor", "local", "--cores", "1",
                       "--latency-wait", "1", "resources/hub/org--a"]
    r = subprocess.run(cmd, env={**env, "NO_PROXY": "127.0.0.1"}, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and out.count("Error in rule fetch_hub_model") == 1, out[-4000:]
    assert "Trying to restart" not in out
    info = [q for q in state.requests if q[1] == "/api/models/org/a"]
    refused = [q for q in state.requests if "/resolve/" in q[1]]
    assert len(info) == 1 and len(refused) == (1 if failure == "gated" else 0)  # no retries
    assert state.file_host == []  # no weight bytes
    assert TOKEN not in out + (tmp_path / "logs/fetch/org--a.log").read_text()


LOAD_TASK = """
import json, sys
import datasets
from wildmerge.hub.datasets import preload_fetched, use_fetched_data
loads = []
real = datasets.load_dataset
datasets.load_dataset = lambda *a, **k: loads.append(a) or real(*a, **k)  # counts the loads from the cache
if len(sys.argv) > 3:  # what the warm worker does before forking the job (wildmerge.warm: prepare)
    preload_fetched(sys.argv[3])
    loads.clear()
if sys.argv[2]:
    use_fetched_data([sys.argv[2]])
from lm_eval.tasks import TaskManager
task = TaskManager(include_path=sys.argv[1], include_defaults=False).load_task_or_group(["tinybench"])["tinybench"]
print(json.dumps([[doc["question"] for doc in task.test_docs()], len(loads)]))
"""


def test_lm_eval_loads_the_locked_dataset_commit_offline_not_the_latest_cached(hub, tmp_path: Path) -> None:
    """lm-eval's own task loading, offline, in an evaluation job: the locked commit's rows, although
    upstream moved on and a newer commit is the most recent one in the shared datasets cache;
    loaded once per process, or once in the warm worker for the jobs it forks."""
    from wildmerge.hub.datasets import write_index

    state, env = hub
    env = {**env, "HF_HOME": str(tmp_path / "hfhome"), "HF_DATASETS_OFFLINE": "0"}
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    ds = Repo()
    first = ds.push(tiny_dataset([("1+1", "2")]))
    state.repos["org/tinyds"] = ds
    tasks = tinybench_task(tmp_path)
    lock, one = tmp_path / "results/hub.lock", tmp_path / "data/tinybench.0.json"
    r = subprocess.run([sys.executable, "-m", "wildmerge.hub", "fetch-data", "tinybench", "org/tinyds", "--out", str(one),
                        "--lock", str(lock)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    record = tmp_path / "data/tinybench.json"  # what fetch_benchmark_data writes for the evaluation jobs
    record.write_text(json.dumps({"benchmark": "tinybench", "datasets": [json.loads(one.read_text())]}))
    ds.push(tiny_dataset([("2+2", "4"), ("3+3", "6")]))  # upstream moves on, no `update`
    newer = "import datasets; datasets.load_dataset('org/tinyds')"  # e.g. another study sharing the cache
    assert subprocess.run([sys.executable, "-c", newer], env=env, capture_output=True, timeout=120).returncode == 0

    def questions(*args: str) -> list[Any]:
        r = subprocess.run([sys.executable, "-c", LOAD_TASK, str(tasks), *args], env=offline, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    assert questions("") == [["2+2", "3+3"], 1]  # unpinned, datasets offline takes the latest cached commit
    # pinned: the locked commit, loaded once for the job's check and lm-eval's task
    assert questions(str(record)) == [["1+1"], 1]
    index = tmp_path / "data/index.json"  # the evaluation jobs' one data input (write_index)
    write_index([str(record)], index)
    # loaded by the warm worker before it forks the job: the job loads nothing itself
    assert questions(str(index), str(index)) == [["1+1"], 0]
    assert json.loads(one.read_text())["commit"] == first


def test_a_locked_dataset_is_loaded_once_per_process_and_each_caller_gets_its_own_dict(monkeypatch) -> None:
    import datasets

    from wildmerge.hub import datasets as hub_datasets

    calls = []

    def load(path: str, name: str | None = None, **kwargs: Any) -> datasets.DatasetDict:
        calls.append((path, name, kwargs["revision"]))
        return datasets.DatasetDict({"test": datasets.Dataset.from_dict({"q": ["1+1"]})})

    monkeypatch.setattr(datasets, "load_dataset", load)
    monkeypatch.setattr(hub_datasets, "_LOADED", {})
    first = hub_datasets.load_locked_dataset("org/ds", "cfg", "c0ffee")
    first["test"] = first["test"].map(lambda d: {"q": d["q"] + "!"})  # what a task may do to its own dict
    second = hub_datasets.load_locked_dataset("org/ds", "cfg", "c0ffee")
    assert second["test"]["q"] == ["1+1"] and first is not second
    assert calls == [("org/ds", "cfg", "c0ffee")]
    hub_datasets.load_locked_dataset("org/ds", "cfg", "beef")  # another commit: loaded
    assert len(calls) == 2


def test_a_task_reading_its_data_file_by_hub_url_has_it_fetched_locked_and_loaded_offline(hub, tmp_path: Path) -> None:
    """A task with ``dataset_path: json`` and ``data_files: hf://datasets/...`` (lm-eval's PROST):
    the file is found in the task's YAML, locked as its repository, fetched at that commit and,
    offline, read from the hub cache at the locked commit; missing from the cache, a clear error."""
    from wildmerge.hub.datasets import HubData, task_datasets

    state, env = hub
    env = {**env, "HF_HOME": str(tmp_path / "hfhome"), "HF_DATASETS_OFFLINE": "0"}
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    ds = Repo()
    first = ds.push({"data/test.jsonl": b'{"question": "1+1", "answer": "2"}\n'})
    state.repos["org/tinyds"] = ds
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tinybench.yaml").write_text(
        "task: tinybench\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        "    test: hf://datasets/org/tinyds/data/test.jsonl\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n")
    [file] = task_datasets("tinybench", str(tasks))
    assert file == HubData("org/tinyds", None, None, "data/test.jsonl")
    lock, one = tmp_path / "results/hub.lock", tmp_path / "data/tinybench.0.json"

    def data(*args: str, e: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "wildmerge.hub", "fetch-data", "tinybench", "org/tinyds", "--file", file.file,
               *args, "--lock", str(lock)]
        return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=120)

    r = data("--out", str(one))
    assert r.returncode == 0, r.stderr
    assert json.loads(one.read_text())["commit"] == first and json.loads(one.read_text())["file"] == "data/test.jsonl"
    assert '"source": "dataset:org/tinyds"' in lock.read_text()  # locked as its repository
    record = tmp_path / "data/tinybench.json"
    record.write_text(json.dumps({"benchmark": "tinybench", "datasets": [json.loads(one.read_text())]}))
    ds.push({"data/test.jsonl": b'{"question": "2+2", "answer": "4"}\n'})  # upstream moves on: the lock holds
    r = subprocess.run([sys.executable, "-c", LOAD_TASK, str(tasks), str(record)], env=offline, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [["1+1"], 1]
    (tmp_path / "hfcache").rename(tmp_path / "hfcache-gone")  # locked, but not in the hub cache (HF_HUB_CACHE)
    gone = data("--check", e=offline)
    assert gone.returncode == 2 and "benchmark tinybench" in gone.stderr and "not in the hub cache" in gone.stderr, gone.stderr
    assert "hf://datasets/org/tinyds@" in gone.stderr and "Traceback" not in gone.stderr


def test_a_score_file_names_the_locked_commits_it_was_computed_from() -> None:
    """What pre-run planning compares with the lock after `update`: the model's (or a merge's
    base and experts') hub commits, and the datasets of the score's own benchmark only."""
    from wildmerge.hub.lock import recorded_commits

    def ck(source: str, commit: str) -> dict:
        return {"source": "org/x", "path": "p", "sha256": "s",
                "hub": {"source": source, "requested": None, "commit": commit, "files": {}}}

    provenance = {
        "merge": {"inputs": {"base": ck("org/base", "c0"), "experts": {"a": ck("org/a", "c1"), "b": {"path": "local"}}}},
        "datasets": [
            {"benchmark": "arc", "datasets": [{"dataset": "ai2/arc", "name": "ARC-Easy", "requested": None, "commit": "d1"}]},
            {"benchmark": "mmlu", "datasets": [{"dataset": "cais/mmlu", "name": None, "requested": "v1", "commit": "d2"}]},
        ],
    }
    assert recorded_commits(provenance, "arc") == {
        "org/base@main": "c0", "org/a@main": "c1", "dataset:ai2/arc:ARC-Easy@main": "d1"}

