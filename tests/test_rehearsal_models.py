"""The rehearsal's fake-hub checkpoints (tests/rehearsal/models.py): every hub id of the paper
config, the real vocabulary sizes, the bases' layouts, gated Llama bases, experts != base."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).parent / "rehearsal"))

from models import checkpoint_ids, load_config, model_repos, push_models  # noqa: E402

from hub_server import HubState  # noqa: E402

pytestmark = pytest.mark.slow  # builds 128k/152k-token tokenizers and 8 checkpoints (~1 min)

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config/paper.yaml"


def test_every_checkpoint_of_the_paper_config_is_served() -> None:
    config = load_config([PAPER, REPO / "config/rehearsal.yaml"])
    ids = checkpoint_ids(config)
    assert len(ids) == 4 + 48 + 10  # bases, Appendix A experts, Appendix E experts outside the pools
    assert sum(expert is None for _, expert in ids.values()) == 4
    assert config["merge"]["tokenizer_source"] == "base"  # the paper's, kept by the overlay
    assert config["subsets"]["sizes"] == [2, 12] and config["bases"] == load_config([PAPER])["bases"]


@pytest.fixture(scope="module")
def small() -> dict[str, dict[str, bytes]]:
    """One base of each layout, a MergeBench expert and a Qwen3 expert."""
    paper = load_config([PAPER])
    bases = {}
    for name, spec in paper["bases"].items():
        keep = [e for e, ck in spec["experts"].items() if ck.startswith("MergeBench/")][:1] or list(spec["experts"])[:1]
        bases[name] = {"model": spec["model"], "experts": {e: spec["experts"][e] for e in keep}}
    return model_repos({"bases": bases})


def _rows(files: dict[str, bytes]) -> dict[str, list[int]]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as f:
        f.write(files["model.safetensors"])
        f.flush()
        with safe_open(f.name, "np") as st:
            return {k: list(st.get_slice(k).get_shape()) for k in st.keys()}


@pytest.mark.parametrize("hub_id, tokens, rows, tied", [
    ("meta-llama/Llama-3.2-3B-Instruct", 128_256, 128_256, True),
    ("meta-llama/Llama-3.1-8B-Instruct", 128_256, 128_256, False),
    ("Qwen/Qwen3-4B", 151_669, 151_936, True),
    ("Qwen/Qwen3-8B", 151_669, 151_936, False),
    ("MergeBench/Llama-3.2-3B-Instruct_instruction", 128_256, 128_320, True),
])
def test_real_vocabulary_sizes_and_layouts(small, tmp_path: Path, hub_id: str, tokens: int, rows: int, tied: bool) -> None:
    from transformers import AutoTokenizer

    files = small[hub_id]
    cfg = json.loads(files["config.json"])
    assert cfg["vocab_size"] == rows and cfg["tie_word_embeddings"] is tied
    shapes = _rows(files)
    assert shapes["model.embed_tokens.weight"][0] == rows
    assert ("lm_head.weight" in shapes) is not tied
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == tokens
    text = "Question: ¿Qué es 2+2? 答え: four\n"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # any text tokenizes


def test_experts_differ_from_their_base_and_llama_bases_are_gated(small) -> None:
    import torch
    from safetensors.torch import load

    base = load(small["Qwen/Qwen3-8B"]["model.safetensors"])
    expert = load(small["Trendyol/Trendyol-LLM-8B-T1"]["model.safetensors"])
    assert base.keys() == expert.keys()
    assert not torch.equal(base["model.layers.0.mlp.up_proj.weight"], expert["model.layers.0.mlp.up_proj.weight"])
    state = HubState()
    push_models(state, {"bases": {"qwen3-8b": {"model": "Qwen/Qwen3-8B", "experts": {}},
                                  "llama-3.1-8b": {"model": "meta-llama/Llama-3.1-8B-Instruct", "experts": {}}}}, "tok")
    assert state.repos["meta-llama/Llama-3.1-8B-Instruct"].gated and state.repos["meta-llama/Llama-3.1-8B-Instruct"].granted == {"tok"}
    assert not state.repos["Qwen/Qwen3-8B"].gated


def test_learned_merges_keep_prompts_short_and_answer_letters_one_token(small, tmp_path: Path) -> None:
    """The tokenizer's merges (learned from the benchmarks' own prompt text) make each word of a
    BBH 3-shot prompt one token, not one per byte, and `` A`` one token (lm-eval then scores a
    question's answer letters from one forward pass); the learning is deterministic."""
    from data import leaf_task_configs
    from models import learned_bpe
    from transformers import AutoTokenizer

    for name, data in small["Qwen/Qwen3-4B"].items():
        (tmp_path / name).write_bytes(data)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert [len(tok.tokenize(t)) for t in (" A", " B", " True", " False")] == [1, 1, 1, 1]
    cfg = leaf_task_configs("leaderboard_bbh_date_understanding")["leaderboard_bbh_date_understanding"]
    shots = "\n\n".join(s["input"] + " " + s["target"] for s in cfg["fewshot_config"]["samples"])
    n_tokens = len(tok(shots, add_special_tokens=False)["input_ids"])
    words = tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(shots)  # Llama-3's and Qwen3's split
    assert n_tokens == len(words) < len(shots.encode()) / 2  # one token per word: ~2.3 bytes each here
    # the same merges in another process with another hash seed: the checkpoints' files are stable
    import subprocess

    code = "import json, sys; sys.path[:0] = sys.argv[1:]; from models import learned_bpe; print(json.dumps(learned_bpe()))"
    other = subprocess.run([sys.executable, "-c", code, str(REPO / "tests/rehearsal"), str(REPO / "tests"), str(REPO)],
                           capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    vocab, merges = json.loads(other.stdout)
    assert (vocab, [tuple(m) for m in merges]) == learned_bpe()
