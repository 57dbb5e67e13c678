"""The paper's four base architectures (tiny, offline) through pre-flight and a merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import reference_merging as ref  # tests/: the independent NumPy reference
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import wildmerge.merging.mergekit_run as merging
from wildmerge.demo import tiny_models
from wildmerge.preflight.checks import PreflightError, check_checkpoint


def _preflight(base: Path, experts: list[Path]) -> dict[str, dict]:
    """The reports the workflow's pre-flight jobs record (scripts/preflight.py): the base
    against itself, then each expert against the base; raises the first PreflightError."""
    reports = {"base": check_checkpoint(base, base, name="base of tiny", base_name="tiny")}
    for e in experts:
        reports[e.name] = check_checkpoint(base, e, name=e.name, base_name="tiny")
    return reports


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
    report = _preflight(base, experts)
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


# ---------------------------------------------------------------------------
# All seven paper methods on each of the four layouts, checked tensor by tensor
# against the independent NumPy reference, then scored with lm-eval.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_tasks(tmp_path_factory) -> Path:
    from wildmerge.demo.tasks import make_tasks

    out = tmp_path_factory.mktemp("tasks")
    make_tasks(out, n_eval=20)
    return out


def _tensors(d: Path) -> dict:
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update({k: v.float().numpy() for k, v in load_file(f).items()})
    return out


#: The update each Subspace Boosting method boosts (before lambda), from the reference's parts.
SB_UPDATES = {
    "ta_subspace_boosting": lambda b, es, p: ref.ta_update(ref.task_vectors(b, es), p["normalize"]),
    "ties_subspace_boosting": lambda b, es, p: ref.ties_update(ref.task_vectors(b, es), p["density"], p["normalize"]),
}


@pytest.mark.parametrize("arch", sorted(tiny_models.ARCHITECTURES))
def test_paper_architecture_all_methods_match_reference_and_score(tmp_path, arch, demo_tasks):
    """Pre-flight, all 7 methods at the paper's hyperparameters (every tensor equal to the
    NumPy reference), outputs that load with transformers keeping the base's tying, and an
    lm-eval score for the base and every merge."""
    import numpy as np
    from transformers import AutoModelForCausalLM

    from wildmerge.evaluation.lm_eval_run import evaluate_model
    from wildmerge.evaluation.settings import EvalSettings

    _, tied = tiny_models.ARCHITECTURES[arch]
    base = tiny_models.build(arch, tmp_path / "base")
    experts = [_perturb(base, tmp_path / f"e{i}", i) for i in (1, 2, 3)]
    assert _preflight(base, experts)
    base_t = _tensors(base)
    expert_t = [_tensors(e) for e in experts]
    models = {"base": base}
    for method, (params, reference) in ref.PAPER.items():
        out = tmp_path / method
        merging.merge(base, experts, method, params, out)
        merged = _tensors(out)
        assert set(merged) == set(base_t), method  # tied: no lm_head added; untied: kept
        rtol = ref.TSV_RTOL if method == "tsv_merge" else ref.RTOL  # measured: TSV-M 2.1e-5, others <= 5.3e-7
        for name, b in base_t.items():
            b = b.astype(np.float64)
            experts_of = [e[name] for e in expert_t]
            if method in SB_UPDATES and ref.is_sb_target(name):
                # boosting raises every singular value past the cutoff, zero ones too, along
                # directions the update leaves arbitrary: the merge is unique, and comparable,
                # only where the update it boosts has full rank (so are these layouts')
                update = SB_UPDATES[method](b, experts_of, params)
                rank = np.linalg.matrix_rank(update)
                assert rank == min(b.shape), f"{arch} {method} {name}: boosted update of rank {rank} < {min(b.shape)}"
            expected = reference(name, b, experts_of)
            np.testing.assert_allclose(
                merged[name], expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=f"{arch} {method} {name}"
            )
        model = AutoModelForCausalLM.from_pretrained(out)
        assert model.config.tie_word_embeddings is tied
        if tied:
            assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        models[method] = out
    for label, model_dir in models.items():
        out_file = tmp_path / "scores" / f"{label}.json"
        values = evaluate_model(
            model_dir, [{"name": "demo_count"}], {"demo_count": out_file},
            EvalSettings(dtype="float32", seed=1234, batch_size=8, device="cpu", include_path=str(demo_tasks)),
        )
        assert 0.0 <= values["demo_count"] <= 1.0 and json.loads(out_file.read_text())["n_samples"]


# ---------------------------------------------------------------------------
# Heads saved differently from the base's tying
# ---------------------------------------------------------------------------


def _edit(d: Path, drop: str | None = None, add: dict | None = None, tie: bool | None = None) -> Path:
    tensors = load_file(d / "model.safetensors")
    if drop:
        del tensors[drop]
    tensors.update(add or {})
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    if tie is not None:
        cfg = json.loads((d / "config.json").read_text())
        cfg["tie_word_embeddings"] = tie
        (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_redundant_lm_head_of_a_tied_expert_is_ignored_and_reported(tmp_path):
    """Base ties its head; an expert (config also tied) saved an explicit lm_head anyway:
    transformers ignores it for the expert, so the merge does too, and the report says so."""
    base = tiny_models.build("llama-3.2-3b", tmp_path / "base")
    plain = _perturb(base, tmp_path / "plain", 1)
    noisy = _perturb(base, tmp_path / "noisy", 2)
    emb = load_file(noisy / "model.safetensors")["model.embed_tokens.weight"]
    _edit(noisy, add={"lm_head.weight": emb + 1.0})
    report = _preflight(base, [plain, noisy])
    assert any("saves lm_head.weight although its config ties it" in w for w in report["noisy"]["warnings"])
    out = tmp_path / "merged"
    merging.merge(base, [plain, noisy], "task_arithmetic", {"lambda": 1.0, "normalize": True}, out)
    merged = load_file(out / "model.safetensors")
    assert "lm_head.weight" not in merged
    b = load_file(base / "model.safetensors")["model.embed_tokens.weight"]
    p = load_file(plain / "model.safetensors")["model.embed_tokens.weight"]
    torch.testing.assert_close(merged["model.embed_tokens.weight"], b + ((p - b) + (emb - b)) / 2)


def test_tied_expert_of_an_untied_base_merges_its_embedding_as_head(tmp_path):
    """Base has a separate lm_head; an expert ties its head (none saved): its head is its
    embedding, as transformers loads it, and mergekit merges that into the base's lm_head."""
    base = tiny_models.build("llama-3.1-8b", tmp_path / "base")
    plain = _perturb(base, tmp_path / "plain", 1)
    tied = _edit(_perturb(base, tmp_path / "tied", 2), drop="lm_head.weight", tie=True)
    report = _preflight(base, [plain, tied])
    assert any("ties its output embedding" in w for w in report["tied"]["warnings"])
    out = tmp_path / "merged"
    merging.merge(base, [plain, tied], "task_arithmetic", {"lambda": 1.0, "normalize": True}, out)
    merged = load_file(out / "model.safetensors")
    b = load_file(base / "model.safetensors")["lm_head.weight"]
    p = load_file(plain / "model.safetensors")["lm_head.weight"]
    t = load_file(tied / "model.safetensors")["model.embed_tokens.weight"]
    torch.testing.assert_close(merged["lm_head.weight"], b + ((p - b) + (t - b)) / 2)
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False


def test_untied_expert_of_a_tied_base_is_refused(tmp_path):
    """A separately trained head cannot live in the base's tied layout: refused, naming the key."""
    base = tiny_models.build("qwen3-4b", tmp_path / "base")
    emb = load_file(base / "model.safetensors")["model.embed_tokens.weight"]
    untied = _edit(_perturb(base, tmp_path / "untied", 1), add={"lm_head.weight": emb + 0.5}, tie=False)
    with pytest.raises(PreflightError, match="tie_word_embeddings is False in expert 'untied'"):
        check_checkpoint(base, untied, name="untied")


def _resized_expert(tmp_path: Path, base: Path) -> Path:
    from transformers import AutoModelForCausalLM

    expert = _perturb(base, tmp_path / "resized", 5)
    model = AutoModelForCausalLM.from_pretrained(expert)
    model.resize_token_embeddings(model.config.vocab_size + 64)
    model.save_pretrained(expert, safe_serialization=True)
    return expert


def test_mergekit_truncation_warning_becomes_an_error(tmp_path):
    """With mergekit's unsafe_truncate_embeddings, mergekit drops the extra rows with only a
    warning: wildmerge turns that partial merge into PartialMergeError, writing nothing."""
    base = tiny_models.build("llama-3.1-8b", tmp_path / "base")
    expert = _resized_expert(tmp_path, base)
    out = tmp_path / "merged"
    with pytest.raises(merging.PartialMergeError, match="(?i)vocabulary truncation.*tokenizer_source"):
        merging.merge(base, [expert], "task_arithmetic", {"lambda": 1.0}, out, options={"unsafe_truncate_embeddings": True})
    assert not out.exists() and not out.with_name("merged.partial").exists()


def test_resized_vocabulary_merged_with_the_base_tokenizer(tmp_path):
    """merge.tokenizer_source: base (config/paper.yaml): the extra rows are dropped and the
    merged model has the base's vocabulary, rows indexed by the base's tokens."""
    import numpy as np
    from transformers import AutoModelForCausalLM

    base = tiny_models.build("llama-3.1-8b", tmp_path / "base")
    plain = _perturb(base, tmp_path / "plain", 1)
    expert = _resized_expert(tmp_path, base)
    out = tmp_path / "merged"
    merging.merge(base, [plain, expert], "task_arithmetic", {"lambda": 1.0, "normalize": True}, out, tokenizer_source="base")
    b = load_file(base / "model.safetensors")
    merged = _tensors(out)
    p, e = load_file(plain / "model.safetensors"), _tensors(expert)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert merged[name].shape == tuple(b[name].shape)
        rows = b[name].shape[0]  # the base's tokens keep their ids: rows are matched one to one
        expected = b[name].numpy() + ((p[name].numpy() - b[name].numpy()) + (e[name][:rows] - b[name].numpy())) / 2
        np.testing.assert_allclose(merged[name], expected, rtol=1e-5, atol=1e-6)
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == b["model.embed_tokens.weight"].shape[0]


@pytest.mark.parametrize("base_dtype", [torch.float32, torch.float16])
def test_bf16_experts_with_fp32_or_fp16_base_merge(tmp_path, base_dtype):
    """Mixed-dtype checkpoints pass pre-flight and merge (inputs cast to the merge dtype)."""
    import numpy as np

    base = tiny_models.build("qwen3-8b", tmp_path / "base")
    experts = [_perturb(base, tmp_path / f"e{i}", i) for i in (1, 2)]
    for d, dtype in [(base, base_dtype), *((e, torch.bfloat16) for e in experts)]:
        save_file({k: v.to(dtype) for k, v in load_file(d / "model.safetensors").items()}, d / "model.safetensors", metadata={"format": "pt"})
    report = _preflight(base, experts)
    assert all(report[e.name]["status"] == "ok" for e in experts)
    out = tmp_path / "merged"
    merging.merge(base, experts, "task_arithmetic", {"lambda": 1.0, "normalize": True}, out, dtype="float32")
    merged, b = _tensors(out), _tensors(base)
    es = [_tensors(e) for e in experts]
    name = "model.layers.0.self_attn.q_proj.weight"
    expected = b[name] + ((es[0][name] - b[name]) + (es[1][name] - b[name])) / 2
    np.testing.assert_allclose(merged[name], expected, rtol=1e-5, atol=1e-6)
