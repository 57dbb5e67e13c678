"""The cost plan (wildmerge.plan, issue 25): its counting against hand-computed values (SVDs per
method and shape, requests and forward passes per benchmark on a known small dataset, bytes per
checkpoint), the CLI on the paper config offline, the calibration, and the planned runtimes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wildmerge.plan import calibrate
from wildmerge.plan.counts import PAPER_LAYOUTS, Layout, SizeResolver, job_counts, study_jobs, svd_flops, svds
from wildmerge.plan.report import Plan
from wildmerge.plan.throughput import Machine
from wildmerge.plan.tokens import measure_items, stats_of_items
from wildmerge.study.plan import Study

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
#: h=8, I=16, 2 layers, 2 heads of 4 (1 KV head), V=10, untied
SMALL = Layout(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4, vocab=10, tied=False)


def _config(path: Path = REPO / "config.yaml") -> dict:
    return yaml.safe_load(path.read_text())


# ---- layouts and bytes ------------------------------------------------------------------


@pytest.mark.parametrize("source, params", [
    ("meta-llama/Llama-3.2-3B-Instruct", 3.21e9), ("meta-llama/Llama-3.1-8B-Instruct", 8.03e9),
    ("Qwen/Qwen3-4B", 4.02e9), ("Qwen/Qwen3-8B", 8.19e9),
])
def test_paper_layouts_give_the_model_cards_parameter_counts(source, params):
    lay = Layout.from_config(PAPER_LAYOUTS[source], "table")
    assert lay.params == pytest.approx(params, rel=0.005)
    assert lay.nbytes() == 2 * lay.params  # bf16


def test_small_layout_counted_by_hand():
    # per layer: q 8x8, k 4x8, v 4x8, o 8x8, gate 16x8, up 16x8, down 8x16 = 64+32+32+64+128+128+128
    assert SMALL.layer_params == 2 * 576
    # + embedding and head 2 x 10 x 8, norms 2 x (2 x 8) + 8
    assert SMALL.params == 2 * 576 + 160 + 40
    assert SMALL.forward_flops() == 2 * (2 * 576 + 80)


def test_svds_per_method_and_shape_by_hand():
    # TSV-M, n=3: per matrix 3 SVDs per layer of its shape and 2 of the Procrustes bases
    # (rows x 3k, 3k x cols with k = max(1, min // 3)): q/o k=2 -> 8x6, 6x8; k/v k=1 -> 4x3, 3x8;
    # gate/up 16x8 k=2 -> 16x6, 6x8; down 8x16 -> 8x6, 6x16
    got = {(r, c): k for k, r, c in svds("tsv_merge", 3, SMALL)}
    assert got == {(8, 8): 12, (4, 8): 12, (16, 8): 12, (8, 16): 6, (8, 6): 6, (6, 8): 8,
                   (4, 3): 4, (3, 8): 4, (16, 6): 4, (6, 16): 2}
    assert sum(got.values()) == 7 * 2 * (3 + 2)
    for method in ("iso_c", "ta_subspace_boosting", "ties_subspace_boosting"):
        assert {(r, c): k for k, r, c in svds(method, 3, SMALL)} == {(8, 8): 4, (4, 8): 4, (16, 8): 4, (8, 16): 2}
    for method in ("task_arithmetic", "ties", "model_stock"):
        assert svds(method, 3, SMALL) == []
    assert svd_flops(8, 16) == svd_flops(16, 8) == 6 * 16 * 64 + 20 * 512


def test_svd_counts_are_what_the_methods_compute(monkeypatch):
    """The counts follow wildmerge.merging.methods: its SVD calls, counted, on one matrix."""
    torch = pytest.importorskip("torch")
    from wildmerge.merging import methods

    calls: list[tuple[int, int]] = []
    real = torch.linalg.svd

    def counting(a, *args, **kw):
        calls.append(tuple(a.shape))
        return real(a, *args, **kw)

    monkeypatch.setattr(torch.linalg, "svd", counting)
    deltas = [torch.randn(16, 8) for _ in range(3)]
    methods.tsv_delta(deltas)
    assert sorted(calls) == sorted([(16, 8)] * 3 + [(16, 6), (6, 8)])
    calls.clear()
    methods.iso_c_delta(sum(deltas))
    methods.subspace_boost(deltas[0], 0.2)
    assert calls == [(16, 8), (16, 8)]


def test_checkpoint_bytes_from_the_lock_file_and_the_parameter_count(tmp_path):
    from wildmerge.hub.lock import LockedFile, LockEntry, lock_key

    cfg = _config(REPO / "config/paper.yaml")
    cfg["results"] = str(tmp_path / "results")
    study = Study(cfg)
    ck = study.bases["llama-3.2-3b"].model
    entry = LockEntry(ck.source, None, "c" * 40, {
        "model-00001-of-00002.safetensors": LockedFile(4_965_799_096, "a" * 64),
        "model-00002-of-00002.safetensors": LockedFile(1_459_729_952, "b" * 64),
        "config.json": LockedFile(878), "tokenizer.json": LockedFile(9_085_657),
        "original/consolidated.00.pth": LockedFile(6_425_585_114, "d" * 64),  # not downloaded
    })
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "hub.lock").write_text(entry.to_json() + "\n")
    sizes = SizeResolver(study)
    assert lock_key(ck.source, None) in sizes.lock
    got = sizes.size(ck, None)
    assert (got.nbytes, got.source) == (4_965_799_096 + 1_459_729_952 + 878 + 9_085_657, "lock file")
    # not in the lock: its parameter count (the paper's table) x bf16; an expert: its base's layout
    other = study.bases["qwen3-8b"].model
    got = sizes.size(other, None)
    assert got.nbytes == 2 * (36 * (4096 * 4096 * 2 + 1024 * 4096 * 2 + 3 * 4096 * 12288 + 2 * 4096 + 2 * 128)
                              + 2 * 151936 * 4096 + 4096)
    expert = study.bases["qwen3-8b"].experts["esper3"]
    assert sizes.size(expert, Layout.from_config(PAPER_LAYOUTS[other.source], "t")).nbytes == got.nbytes


def test_demo_checkpoint_bytes_from_its_model_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no resources/demo: the demo's own model config
    from wildmerge.demo.skills import VOCAB

    study = Study(_config())
    got = SizeResolver(study).size(study.bases["tiny-llama"].model, None)
    per_layer = 4 * 64 * 64 + 3 * 256 * 64
    assert got.nbytes == 4 * (2 * per_layer + 2 * len(VOCAB) * 64 + 2 * 2 * 64 + 64)  # float32


# ---- jobs -------------------------------------------------------------------------------


def test_jobs_per_rule_are_the_dry_runs():
    """snakemake -n --configfile config/paper.yaml lists these (README; `all` besides)."""
    counts = {r: sum(b.values()) for r, b in job_counts(study_jobs(Study(_config(REPO / "config/paper.yaml")))).items()}
    assert counts == {"fetch_hub_model": 62, "fetch_benchmark_data": 31, "benchmark_data_index": 1, "preflight": 62,
                      "geometry": 4, "evaluate": 52, "merge_evaluate": 2332, "merge": 42, "evaluate_suite": 72,
                      "collect": 1, "tables": 1, "figures": 1, "item_tables": 1, "ablations": 3, "homogeneous": 1}
    demo = {r: sum(b.values()) for r, b in job_counts(study_jobs(Study(_config()))).items()}
    assert demo == {"demo_base": 1, "demo_expert": 8, "demo_tasks": 1, "preflight": 9, "evaluate": 9, "geometry": 1,
                    "merge_evaluate": 35, "collect": 1, "figures": 1, "item_tables": 1, "tables": 1}


# ---- tokens ------------------------------------------------------------------------------


def _tiny_task(root: Path) -> None:
    """A 3-item multiple-choice task over the demo vocabulary: single-word and two-word answers."""
    items = [
        {"query": "max 3 7 :", "choices": ["7", "3"], "gold": 0},  # one-token answers: one pass
        {"query": "max 1 2 3 :", "choices": ["3", "2", "1"], "gold": 0},  # one pass of 6 tokens
        # two-token answers: a pass each (answers sharing their first word would share one pass)
        {"query": "max 5 :", "choices": ["5 5", "1 5"], "gold": 0},
    ]
    (root / "tiny.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    from wildmerge.demo.tasks import task_config

    (root / "tiny.yaml").write_text(yaml.safe_dump(task_config("tiny_plan", root / "tiny.jsonl")))


def test_requests_and_forward_tokens_of_a_known_small_dataset(tmp_path):
    pytest.importorskip("lm_eval")
    from wildmerge.demo.tokenizer import save_tokenizer

    tasks, tok = tmp_path / "tasks", tmp_path / "tok"
    tasks.mkdir()
    _tiny_task(tasks)
    save_tokenizer(tok)
    items = measure_items("tiny_plan", str(tasks), str(tok), 0)
    # (requests, passes, tokens, squared): <s> + the query's words + the answer but its last token
    assert items == {"tiny_plan": [(2, 1, 5, 25), (3, 1, 6, 36), (2, 2, 10, 50)]}
    s = stats_of_items(items, None, 1234, "measured")
    assert (s.items, s.requests, s.forwards, s.tokens) == (3, 7, 4, 21)
    one = stats_of_items(items, 1, 1234, "measured")  # budget {items: 1}: one item of the seeded sample
    assert one.items == 1 and one.tokens in (5, 6, 10)


# ---- the CLI, calibration, runtimes ------------------------------------------------------


def test_cli_prints_the_paper_plan_offline(tmp_path):
    out = tmp_path / "plan.json"
    cmd = [sys.executable, "-m", "wildmerge.plan", "--configfile", str(REPO / "config/paper.yaml"), "--json", str(out)]
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GPU-hours" in proc.stdout and "| bf16_flops |" in proc.stdout and "merge_evaluate (GPU) | 2,332 |" in proc.stdout
    full = json.loads(out.read_text())
    assert full["jobs"] == 2666 and full["gpu_hours"] > 100
    assert full["download_bytes"] > 0.5e12
    proc = subprocess.run(cmd + ["--budget", "0.25"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    quarter = json.loads(out.read_text())
    assert quarter["forward_tokens"] == pytest.approx(0.25 * full["forward_tokens"], rel=1e-6)
    assert quarter["gpu_hours"] < 0.5 * full["gpu_hours"]


def test_calibration_recovers_the_measured_times(tmp_path, monkeypatch):
    """Benchmark files of finished jobs measured 3x the prior's evaluation time and 2 s of
    start-up each: the calibrated plan predicts each of them."""
    monkeypatch.chdir(tmp_path)
    cfg = _config()
    cfg["results"] = "results"
    study = Study(cfg)
    plan = Plan(study, Machine.of("cpu"))
    done = [jp for jp in plan.plans if jp.job.rule in ("merge_evaluate", "evaluate")]
    for jp in done:
        secs = 3 * jp.parts["forward"] + 3 * jp.parts["read"] + 2.0
        secs += sum(jp.parts.get(k, 0.0) for k in ("tensor", "svd", "write"))
        f = tmp_path / "results/benchmarks" / jp.job.rule / jp.job.base / jp.job.model / "r.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{secs}\t0:00:01\t1\t{secs}\n")
    measured = calibrate.benchmark_jobs("results", cpu=False)
    assert len(measured) == len(done)
    cal, pairs = plan.calibrate(cpu=False, warm_log=None)
    plan.apply_calibration(cal)
    for jp, t in pairs:
        assert plan.plan_job(jp.job).seconds == pytest.approx(t, rel=0.02)


def test_fit_recovers_each_kinds_multiplier_and_startup():
    rows = [("merge_evaluate", {"forward": f, "svd": s}, 3 * f + 0.5 * s + 2.0)
            for f, s in [(10, 0), (20, 5), (5, 40), (30, 10), (1, 1)]]
    f = calibrate.fit(rows, prior_startup=1.0, pull=1e-4)
    assert f.multipliers == pytest.approx({"forward": 3.0, "svd": 0.5}, rel=1e-3)
    assert f.startup == pytest.approx({"merge_evaluate": 2.0}, rel=1e-3)


def test_planned_runtime_follows_the_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from wildmerge.plan.runtimes import PlannedResources

    study = Study(_config())
    res = PlannedResources(study, {"gpu": "cpu", "safety": 1000.0, "floor_min": 1, "mem_safety": 1.0,
                                   "mem_floor_mb": 10})
    merges = {m.mergekit_method: m for m in study.bases["tiny-llama"].merges.values() if m.subset.n == 8}
    times = {meth: res.seconds("merge_evaluate", "tiny-llama", m.merge_id) for meth, m in merges.items()}
    assert times["tsv_merge"] > times["iso_c"] > times["task_arithmetic"]
    mid = merges["tsv_merge"].merge_id
    assert res.runtime("merge_evaluate", "tiny-llama", mid) == -(-times["tsv_merge"] * 1000 // 60)
    assert res.runtime("merge_evaluate", "tiny-llama", mid, attempt=2) >= 2 * res.runtime("merge_evaluate", "tiny-llama", mid) - 1
    floor = PlannedResources(study, {"gpu": "cpu", "safety": 1e-9, "floor_min": 7, "mem_safety": 1.0, "mem_floor_mb": 10})
    assert floor.runtime("merge_evaluate", "tiny-llama", mid) == 7
