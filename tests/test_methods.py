"""Merge methods: wildmerge's registered mergekit methods and wildmerge.merging.merge.

Every expected value comes from the small, independent NumPy reference
implementations below (float64, written from the papers' equations), never
from wildmerge code.  They are compared with (a) the registered methods called
through mergekit's own ``merge_tensors`` API and (b) end-to-end merges of tiny
random Llama models through ``wildmerge.merging.merge``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import wildmerge.methods  # noqa: E402  (registers the methods)
from mergekit.merge_methods import get as get_method  # noqa: E402
from mergekit.merge_methods import merge_tensors, registered_methods  # noqa: E402
from wildmerge.merging import (  # noqa: E402
    NonFiniteTensorError,
    available_methods,
    merge,
    method_parameters,
)

OURS = ("tsv_merge", "iso_c", "ta_subspace_boosting", "ties_subspace_boosting")
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# ---------------------------------------------------------------------------
# Independent references (NumPy, float64).  ``base``/``experts`` are float32
# arrays; task vectors are formed in float32 like any float32 merge would, so
# TIES' top-k selection sees identical magnitudes.
# ---------------------------------------------------------------------------


def task_vectors(base, experts):
    return [(e.astype(np.float32) - base.astype(np.float32)).astype(np.float64) for e in experts]


def is_embed(name):
    return "embed_tokens" in name or "lm_head" in name


def is_proj(name):
    return any(p in name.split(".") for p in PROJ)


def ref_ta_delta(base, experts, normalize):
    d = sum(task_vectors(base, experts))
    return d / len(experts) if normalize else d


def ref_ta(base, experts, lam=1.0, normalize=False):
    return base + lam * ref_ta_delta(base, experts, normalize)


def ref_ties_delta(base, experts, density):
    trimmed = []
    for d in task_vectors(base, experts):
        flat = np.abs(d).ravel()
        k = max(1, int(density * flat.size))
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(-flat, kind="stable")[:k]] = True
        trimmed.append(np.where(keep.reshape(d.shape), d, 0.0))
    stack = np.stack(trimmed)
    elected = np.where(stack.sum(axis=0) >= 0, 1.0, -1.0)
    agree = np.sign(stack) == elected
    count = agree.sum(axis=0)
    total = np.where(agree, stack, 0.0).sum(axis=0)
    return total / np.maximum(count, 1)


def ref_ties(base, experts, density, lam):
    return base + lam * ref_ties_delta(base, experts, density)


def ref_model_stock(base, experts):
    w0 = base.astype(np.float64).ravel()
    offs = [e.astype(np.float64).ravel() - w0 for e in experts]
    cos = [
        offs[i] @ offs[j] / (np.linalg.norm(offs[i]) * np.linalg.norm(offs[j]))
        for i in range(len(offs))
        for j in range(i + 1, len(offs))
    ]
    c, n = float(np.mean(cos)), len(experts)
    t = n * c / (1 + (n - 1) * c)
    avg = np.mean([e.astype(np.float64) for e in experts], axis=0)
    return t * avg + (1 - t) * base


def ref_tsv_delta(deltas):
    T = len(deltas)
    k = max(1, min(deltas[0].shape) // T)
    us, ss, vs = [], [], []
    for d in deltas:
        u, s, vt = np.linalg.svd(d, full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vt[:k].T)
    U, S, V = np.hstack(us), np.concatenate(ss), np.hstack(vs)
    pu, _, qut = np.linalg.svd(U, full_matrices=False)
    pv, _, qvt = np.linalg.svd(V, full_matrices=False)
    return (pu @ qut) @ np.diag(S) @ (pv @ qvt).T


def ref_tsv(name, base, experts, lam=1.0, normalize=True):
    if base.ndim == 2 and not is_embed(name):
        return base + lam * ref_tsv_delta(task_vectors(base, experts))
    return ref_ta(base, experts, lam, normalize)


def ref_iso(name, base, experts, lam=1.0, normalize=False):
    d = ref_ta_delta(base, experts, normalize)
    if base.ndim == 2 and not is_embed(name):
        u, s, vt = np.linalg.svd(d, full_matrices=False)
        d = s.mean() * u @ vt
    return base + lam * d


def ref_boost(d, beta):
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    c = np.cumsum(s) / s.sum()
    j = int(np.argmax(c >= beta))
    s2 = s.copy()
    s2[j + 1 :] = s[j]
    return u @ np.diag(s2) @ vt


def ref_sb(name, base, experts, inner, beta=0.2, lam=1.0, normalize=False, density=1.0):
    if inner == "ta":
        d = ref_ta_delta(base, experts, normalize)
    else:
        d = ref_ties_delta(base, experts, density)
    if base.ndim == 2 and not is_embed(name) and is_proj(name):
        d = ref_boost(d, beta)
    return base + lam * d


# ---------------------------------------------------------------------------
# (a) registered tensor kernels, through mergekit's merge_tensors
# ---------------------------------------------------------------------------

NAMES_SHAPES = [
    ("model.layers.0.self_attn.q_proj.weight", (12, 8)),
    ("model.layers.0.mlp.down_proj.weight", (8, 20)),
    ("model.layers.0.mlp.fc_other.weight", (10, 6)),  # 2-D, not an SB target
    ("model.embed_tokens.weight", (16, 8)),
    ("lm_head.weight", (16, 8)),
    ("model.norm.weight", (8,)),
]


def random_inputs(shape, n=3, seed=0):
    g = np.random.default_rng(seed)
    base = g.normal(size=shape).astype(np.float32)
    experts = [(base + 0.1 * g.normal(size=shape)).astype(np.float32) for _ in range(n)]
    return base, experts


def run_kernel(method, name, base, experts, params=None, dtype=None):
    tensors = [torch.from_numpy(a) for a in [base, *experts]]
    if dtype is not None:
        tensors = [t.to(dtype) for t in tensors]
    out = merge_tensors(tensors, method, base_index=0, name=name, parameters=params or {})
    return out


@pytest.mark.parametrize("name,shape", NAMES_SHAPES)
@pytest.mark.parametrize(
    "method,params,reference",
    [
        ("tsv_merge", {}, lambda n, b, e: ref_tsv(n, b, e)),
        ("tsv_merge", {"lambda": 0.7, "normalize": False}, lambda n, b, e: ref_tsv(n, b, e, 0.7, False)),
        ("iso_c", {}, lambda n, b, e: ref_iso(n, b, e)),
        ("iso_c", {"lambda": 0.5, "normalize": True}, lambda n, b, e: ref_iso(n, b, e, 0.5, True)),
        ("ta_subspace_boosting", {}, lambda n, b, e: ref_sb(n, b, e, "ta")),
        (
            "ta_subspace_boosting",
            {"beta": 0.5, "lambda": 0.3, "normalize": True},
            lambda n, b, e: ref_sb(n, b, e, "ta", beta=0.5, lam=0.3, normalize=True),
        ),
        (
            "ties_subspace_boosting",
            # density high enough for a full-rank merged update: boosting a
            # rank-deficient one raises null-space singular values whose
            # vectors are arbitrary, so no two SVD codes need agree there.
            {"beta": 0.2, "lambda": 0.1, "density": 0.4},
            lambda n, b, e: ref_sb(n, b, e, "ties", beta=0.2, lam=0.1, density=0.4),
        ),
        (
            "ties_subspace_boosting",
            {"beta": 0.4, "density": 0.5},
            lambda n, b, e: ref_sb(n, b, e, "ties", beta=0.4, density=0.5),
        ),
    ],
)
def test_registered_kernel_matches_reference(method, params, reference, name, shape):
    base, experts = random_inputs(shape)
    out = run_kernel(method, name, base, experts, params)
    assert out.dtype == torch.float32 and out.shape == shape
    np.testing.assert_allclose(out.numpy(), reference(name, base, experts), rtol=1e-4, atol=1e-5)


def test_tsv_more_tasks_than_rank_keeps_one_component_each():
    base, experts = random_inputs((9, 3), n=5, seed=3)  # r=3 < T=5 -> k=1
    name = "model.layers.0.self_attn.o_proj.weight"
    out = run_kernel("tsv_merge", name, base, experts)
    np.testing.assert_allclose(out.numpy(), ref_tsv(name, base, experts), rtol=1e-4, atol=1e-5)


def test_embedding_and_lm_head_are_excluded_from_svd():
    base, experts = random_inputs((16, 8), seed=5)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        for method, ta in (
            ("tsv_merge", ref_ta(base, experts, normalize=True)),
            ("iso_c", ref_ta(base, experts)),
            ("ta_subspace_boosting", ref_ta(base, experts)),
        ):
            out = run_kernel(method, name, base, experts).numpy()
            np.testing.assert_allclose(out, ta, rtol=1e-5, atol=1e-6)
    # the same matrix under a projection name *is* transformed
    proj = run_kernel("iso_c", "model.layers.0.self_attn.q_proj.weight", base, experts)
    assert not np.allclose(proj.numpy(), ref_ta(base, experts), atol=1e-3)


def test_subspace_boosting_beta_extremes():
    base, experts = random_inputs((12, 8), seed=7)
    name = "model.layers.1.mlp.up_proj.weight"
    d = ref_ta_delta(base, experts, False)
    s = np.linalg.svd(d, compute_uv=False)
    # beta=1: nothing beyond the last index -> plain task arithmetic
    out1 = run_kernel("ta_subspace_boosting", name, base, experts, {"beta": 1.0})
    np.testing.assert_allclose(out1.numpy(), ref_ta(base, experts), rtol=1e-4, atol=1e-5)
    # beta=0: every singular value raised to the largest one
    out0 = run_kernel("ta_subspace_boosting", name, base, experts, {"beta": 0.0})
    s0 = np.linalg.svd(out0.numpy().astype(np.float64) - base, compute_uv=False)
    np.testing.assert_allclose(s0, np.full_like(s, s[0]), rtol=1e-4)
    with pytest.raises(Exception, match="less than or equal to 1"):
        run_kernel("ta_subspace_boosting", name, base, experts, {"beta": 1.5})


def test_unchanged_experts_give_base():
    base, _ = random_inputs((8, 6), seed=2)
    for method in OURS:
        out = run_kernel(method, "model.layers.0.self_attn.v_proj.weight", base, [base, base])
        np.testing.assert_allclose(out.numpy(), base, atol=1e-6)


def test_low_precision_inputs_compute_in_fp32_and_keep_dtype():
    base, experts = random_inputs((12, 8), seed=9)
    name = "model.layers.0.self_attn.q_proj.weight"
    out = run_kernel("iso_c", name, base, experts, dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    b16 = [torch.from_numpy(a).to(torch.bfloat16).float().numpy() for a in [base, *experts]]
    expected = torch.from_numpy(ref_iso(name, b16[0], b16[1:])).to(torch.bfloat16)
    assert torch.equal(out, expected) or torch.allclose(out.float(), expected.float(), atol=1e-2)


def test_registration_is_idempotent_and_specs():
    importlib.reload(wildmerge.methods)
    importlib.reload(wildmerge.methods)
    names = [m.spec.name for m in registered_methods()]
    for name in OURS:
        assert names.count(name) == 1
        assert name in available_methods()
        get_method(name)  # resolvable through mergekit's registry
    assert {"task_arithmetic", "ties", "model_stock", "dare_ties", "breadcrumbs"} <= set(
        available_methods()
    )
    defaults = {m: {k: v["default"] for k, v in method_parameters(m).items()} for m in OURS}
    assert defaults["tsv_merge"] == {"lambda": 1.0, "normalize": True, "weight": 1.0}
    assert defaults["iso_c"] == {"lambda": 1.0, "normalize": False, "weight": 1.0}
    assert defaults["ta_subspace_boosting"]["beta"] == 0.2
    assert defaults["ta_subspace_boosting"]["normalize"] is False  # as task_arithmetic
    assert defaults["ties_subspace_boosting"]["normalize"] is True  # as ties
    assert method_parameters("ties_subspace_boosting")["density"]["per_model"]
    assert method_parameters("task_arithmetic")["weight"]["required"]


# ---------------------------------------------------------------------------
# (b) end-to-end merges of tiny Llama models
# ---------------------------------------------------------------------------


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {f"t{i}": i for i in range(63)}
    vocab["<unk>"] = 63
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"})
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
    )
    base_dir = root / "base"
    LlamaForCausalLM(config).save_pretrained(base_dir, safe_serialization=True)
    write_tokenizer(base_dir)
    base = {k: v.numpy() for k, v in load_file(base_dir / "model.safetensors").items()}
    g = np.random.default_rng(1)
    expert_dirs, experts = [], []
    for i in range(3):
        sd = {k: (v + 0.01 * g.normal(size=v.shape)).astype(np.float32) for k, v in base.items()}
        d = root / f"expert{i}"
        d.mkdir()
        shutil.copy(base_dir / "config.json", d / "config.json")
        save_file({k: torch.from_numpy(v) for k, v in sd.items()}, d / "model.safetensors")
        expert_dirs.append(d)
        experts.append(sd)
    return {"root": root, "base_dir": base_dir, "base": base, "dirs": expert_dirs, "experts": experts}


E2E = [
    ("task_arithmetic", {"lambda": 1.0, "normalize": False}, lambda n, b, e: ref_ta(b, e, 1.0, False)),
    ("task_arithmetic", {"lambda": 0.5, "normalize": True}, lambda n, b, e: ref_ta(b, e, 0.5, True)),
    ("ties", {"density": 0.1, "lambda": 0.1}, lambda n, b, e: ref_ties(b, e, 0.1, 0.1)),
    ("model_stock", {}, lambda n, b, e: ref_model_stock(b, e)),
    ("tsv_merge", {"lambda": 1.0}, lambda n, b, e: ref_tsv(n, b, e)),
    ("iso_c", {"lambda": 1.0}, lambda n, b, e: ref_iso(n, b, e)),
    (
        "ta_subspace_boosting",
        {"beta": 0.2, "lambda": 1.0, "normalize": True},
        lambda n, b, e: ref_sb(n, b, e, "ta", 0.2, 1.0, normalize=True),
    ),
    (
        "ties_subspace_boosting",
        {"beta": 0.2, "lambda": 0.1, "density": 0.1},
        lambda n, b, e: ref_sb(n, b, e, "ties", 0.2, 0.1, density=0.1),
    ),
]


@pytest.mark.parametrize("method,params,reference", E2E, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(E2E)])
def test_end_to_end_merge_matches_reference(models, tmp_path, method, params, reference):
    out_dir = tmp_path / "merged"
    info = merge(models["base_dir"], models["dirs"], method, params, out_dir)

    assert out_dir.is_dir() and not (tmp_path / "merged.partial").exists()
    assert info["out_dir"] == str(out_dir) and info["n_experts"] == 3
    merged = {k: v.numpy() for k, v in load_file(out_dir / "model.safetensors").items()}
    assert set(merged) == set(models["base"]) and info["n_tensors"] == len(merged)
    for name, base in models["base"].items():
        experts = [e[name] for e in models["experts"]]
        assert merged[name].dtype == np.float32
        np.testing.assert_allclose(
            merged[name], reference(name, base, experts), rtol=1e-4, atol=2e-6, err_msg=name
        )

    cfg = yaml.safe_load((out_dir / "mergekit_config.yml").read_text())
    assert cfg == info["config"]
    assert cfg["merge_method"] == method and cfg["base_model"] == str(models["base_dir"])
    assert [m["model"] for m in cfg["models"]] == [str(d) for d in models["dirs"]]
    assert cfg.get("parameters", {}) == params
    takes_weight = "weight" in method_parameters(method)
    assert all(("parameters" in m) == takes_weight for m in cfg["models"])
    assert (out_dir / "config.json").exists() and (out_dir / "tokenizer.json").exists()


def test_iso_c_end_to_end_leaves_embeddings_to_task_arithmetic(models, tmp_path):
    merge(models["base_dir"], models["dirs"], "iso_c", {}, tmp_path / "m")
    merged = load_file(tmp_path / "m" / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        ta = ref_ta(models["base"][name], [e[name] for e in models["experts"]])
        np.testing.assert_allclose(merged[name].numpy(), ta, rtol=1e-5, atol=1e-6)


def test_bfloat16_output_and_missing_tokenizer(models, tmp_path):
    base_dir = tmp_path / "base_no_tok"
    base_dir.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(models["base_dir"] / f, base_dir / f)
    out_dir = tmp_path / "m"
    merge(base_dir, models["dirs"][:2], "tsv_merge", {"lambda": 1.0}, out_dir, dtype="bfloat16")
    merged = load_file(out_dir / "model.safetensors")
    assert all(t.dtype == torch.bfloat16 for t in merged.values())
    assert json.loads((out_dir / "config.json").read_text())["dtype"] == "bfloat16"
    assert not (out_dir / "tokenizer.json").exists()


def test_replaces_existing_output_and_stale_partial(models, tmp_path):
    out_dir = tmp_path / "m"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("old")
    partial = tmp_path / "m.partial"
    partial.mkdir()
    (partial / "junk.safetensors").write_text("junk")
    merge(models["base_dir"], models["dirs"], "task_arithmetic", {}, out_dir)
    assert not (out_dir / "old.txt").exists() and not partial.exists()
    assert (out_dir / "model.safetensors").exists()


def test_nan_in_merged_tensor_raises_and_leaves_no_output(models, tmp_path):
    bad = tmp_path / "bad_expert"
    bad.mkdir()
    shutil.copy(models["base_dir"] / "config.json", bad / "config.json")
    sd = {k: torch.from_numpy(v.copy()) for k, v in models["experts"][0].items()}
    sd["model.layers.1.mlp.down_proj.weight"][3, 5] = float("nan")
    save_file(sd, bad / "model.safetensors")
    out_dir = tmp_path / "m"
    with pytest.raises(NonFiniteTensorError, match=r"model\.layers\.1\.mlp\.down_proj\.weight \(1 NaN"):
        merge(models["base_dir"], [bad, models["dirs"][1]], "task_arithmetic", {}, out_dir)
    assert not out_dir.exists() and not (tmp_path / "m.partial").exists()


@pytest.mark.parametrize(
    "method,params,match",
    [
        ("no_such_method", {}, r"Unknown merge method 'no_such_method'.*task_arithmetic.*tsv_merge"),
        ("ties", {"bogus": 1}, r"Unknown parameter\(s\) 'bogus' for merge method 'ties'"),
        ("model_stock", {"lambda": 1.0}, r"'lambda' for merge method 'model_stock'"),
        ("tsv_merge", {"beta": 0.2}, r"'beta' for merge method 'tsv_merge'"),
        ("ties", {"density": "dense"}, r"parameter 'density'"),
        ("ta_subspace_boosting", {"beta": 2.0}, r"parameter 'beta'"),
        ("slerp", {}, r"Missing required parameter 't'"),
    ],
)
def test_bad_method_or_parameter(models, tmp_path, method, params, match):
    with pytest.raises(ValueError, match=match):
        merge(models["base_dir"], models["dirs"], method, params, tmp_path / "m")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


def test_bad_inputs_and_options(models, tmp_path):
    with pytest.raises(ValueError, match="at least 3 inputs"):
        merge(models["base_dir"], models["dirs"][:1], "model_stock", {}, tmp_path / "m")
    with pytest.raises(ValueError, match="Unknown mergekit option"):
        merge(models["base_dir"], models["dirs"], "ties", {}, tmp_path / "m", options={"nope": 1})
