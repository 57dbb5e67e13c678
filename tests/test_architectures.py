"""The paper's four base architectures (tiny, offline) through pre-flight and a merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from wildmerge import merging, tiny_models
from wildmerge.preflight import preflight


def _perturb(src: Path, dst: Path, seed: int) -> Path:
    import shutil

    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(seed)
    tensors = {k: v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in tensors.items()}
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def _names(d: Path) -> set[str]:
    with safe_open(d / "model.safetensors", "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("arch", sorted(tiny_models.ARCHITECTURES))
def test_paper_architecture_preflight_merge_keeps_tying(tmp_path, arch):
    from transformers import AutoModelForCausalLM

    model_type, tied = tiny_models.ARCHITECTURES[arch]
    base = tiny_models.build(arch, tmp_path / "base")
    assert ("lm_head.weight" in _names(base)) is (not tied)
    if model_type == "qwen3":
        assert any(".self_attn.q_norm." in n for n in _names(base))
    experts = [_perturb(base, tmp_path / f"e{i}", i) for i in (1, 2)]
    report = preflight(base, {e.name: e for e in experts})
    assert report
    out = tmp_path / "merged"
    merging.merge(base, experts, "task_arithmetic", {"lambda": 1.0}, out)
    assert ("lm_head.weight" in {n for f in out.glob("*.safetensors") for n in safe_open(f, "pt").keys()}) is (not tied)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is tied and cfg["model_type"] == model_type
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings is tied


def test_resized_vocabulary_without_resolution_is_an_error_not_a_partial_merge(tmp_path):
    """mergekit truncates a mismatched embedding with only a warning: wildmerge refuses."""
    from transformers import AutoModelForCausalLM

    base = tiny_models.build("llama-3.2-3b", tmp_path / "base")
    expert = _perturb(base, tmp_path / "resized", 5)
    model = AutoModelForCausalLM.from_pretrained(expert)
    model.resize_token_embeddings(model.config.vocab_size + 64)  # like MergeBench's 128,320 rows
    model.save_pretrained(expert, safe_serialization=True)
    out = tmp_path / "merged"
    # mergekit either refuses (ValueError, "Tensor size mismatch") or truncates with a
    # warning, which wildmerge turns into PartialMergeError: never a merged output.
    with pytest.raises((ValueError, merging.PartialMergeError), match="(?i)mismatch|truncation"):
        merging.merge(base, [expert], "task_arithmetic", {"lambda": 1.0}, out)
    assert not out.exists() and not out.with_name("merged.partial").exists()
