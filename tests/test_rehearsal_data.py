"""The rehearsal's synthetic benchmark data (tests/rehearsal/data.py): served by the fake hub,
fetched as the workflow fetches it, and lm-eval's own task code run on it offline, for every
benchmark of config/paper.yaml and its Appendix E suites, with their few-shot settings
(tests/rehearsal/data_check.py does it in one process; lm-eval's task index is built once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "rehearsal"))
from data import paper_benchmarks  # noqa: E402

pytestmark = pytest.mark.slow  # ~40 s of CPU: lm-eval's task index, 96 dataset fetches, 30 benchmarks scored
REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_wildmergeTESTsecret0123456789"


def paper_entries() -> list[dict]:
    """config/paper.yaml's benchmark entries, then its Appendix E suites' tasks (their defaults)."""
    cfg = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    entries = {b["name"]: b for b in cfg["evaluation"]["benchmarks"]}
    return [entries.get(b, {"name": b}) for b in paper_benchmarks()]


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("rehearsal-data")
    (tmp / "benchmarks.json").write_text(json.dumps(paper_entries()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update({"HF_HOME": str(tmp / "hf"), "HF_TOKEN": TOKEN, "HF_TOKEN_PATH": str(tmp / "no-token"),
                "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "WILDMERGE_HUB_BACKOFF_S": "0",
                "NO_PROXY": "127.0.0.1"})
    cmd = [sys.executable, str(REPO / "tests/rehearsal/data_check.py"), str(tmp / "out.json"), str(tmp), str(tmp / "benchmarks.json")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-6000:]
    return json.loads((tmp / "out.json").read_text())


def test_every_paper_benchmark_is_scored_offline_through_lm_evals_own_tasks_with_its_few_shot_setting(rehearsed: dict) -> None:
    print("timings", rehearsed["times"], "hub requests", rehearsed["hub_requests"])
    expected = {b["name"] for b in paper_entries()}
    assert set(rehearsed["scores"]) == expected and len(expected) == 15 + 15  # 16 paper benchmarks, App. E's tasks
    tasks = rehearsed["tasks"]
    assert len(tasks["mmlu"]) == 57 and len(tasks["leaderboard_bbh"]) == 24 and len(tasks["leaderboard_gpqa"]) == 3
    for bench, ts in tasks.items():
        for task, t in ts.items():
            assert t["requests"] == 1 and t["context"], (bench, task)  # limit=1: one document scored
    assert rehearsed["scores"]["leaderboard_bbh"]["metric"] == "acc_norm" and rehearsed["scores"]["leaderboard_gpqa"]["metric"] == "acc_norm"
    assert all(0 <= s["value"] <= 1 for s in rehearsed["scores"].values())
    shots = {b: {t["num_fewshot"] for t in ts.values()} for b, ts in tasks.items()}
    assert shots["leaderboard_bbh"] == {3} and shots["leaderboard_mmlu_pro"] == {5}
    assert shots["mmlu"] == shots["arc_easy"] == shots["leaderboard_gpqa"] == {0}
    assert shots["leaderboard_bbh_web_of_lies"] == {3}  # App. E: the task's default
    # the few-shot examples are in the prompt: BBH's 3 from its YAML, MMLU-Pro's 5 from `validation`
    bbh = tasks["leaderboard_bbh"]["leaderboard_bbh_boolean_expressions"]["context"]
    assert bbh.count("Q: ") == 4 and "not ( ( not not True ) ) is" in bbh
    assert tasks["leaderboard_mmlu_pro"]["leaderboard_mmlu_pro"]["context"].count("Answer:") == 6
    assert tasks["mmlu"]["mmlu_anatomy"]["context"].count("Answer:") == 1
    assert "Idavidrein/gpqa" in rehearsed["datasets"]  # gated: fetched with the granted token


def test_prost_loads_offline_after_the_fetch(rehearsed: dict) -> None:
    assert "prost" not in rehearsed["errors"], rehearsed["errors"].get("prost")
