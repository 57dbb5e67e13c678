"""Streaming task-vector norms and cosines against a direct in-memory torch computation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from wildmerge.geometry import layer_of, layer_sign_counts, pairwise_cosine, task_vector_norm

SHAPES = {
    "model.embed_tokens.weight": (11, 4),
    "model.layers.0.self_attn.q_proj.weight": (4, 4),
    "model.layers.0.input_layernorm.weight": (4,),
    "model.layers.1.mlp.up_proj.weight": (6, 4),
    "model.layers.1.post_attention_layernorm.weight": (4,),
    "model.norm.weight": (4,),
    "lm_head.weight": (11, 4),
}
INT_BUFFER = "model.layers.0.rotary.position_ids"


def _base_tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    t = {k: torch.randn(*s, generator=g) for k, s in SHAPES.items()}
    t["model.layers.1.mlp.up_proj.weight"] = t["model.layers.1.mlp.up_proj.weight"].to(torch.bfloat16)
    t[INT_BUFFER] = torch.arange(8)
    return t


def _finetune(base, seed, scale=0.1, zero_layers=()):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        if not v.is_floating_point() or layer_of(k) in zero_layers:
            out[k] = v.clone()
        else:
            out[k] = (v.float() + scale * torch.randn(v.shape, generator=g)).to(v.dtype)
    return out


def _save(dir_, tensors, shards=1, index=True):
    dir_.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    parts = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, part in enumerate(parts):
        fname = "model.safetensors" if shards == 1 else f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in part}, str(dir_ / fname))
        weight_map.update({k: fname for k in part})
    if shards > 1 and index:
        (dir_ / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (dir_ / "config.json").write_text("{}")
    return dir_


def _task_vector(base, model, names=None):
    """Direct computation: concatenated float32 differences of the shared floating tensors."""
    names = names or [k for k, v in base.items() if v.is_floating_point()]
    return torch.cat([(model[k].float() - base[k].float()).reshape(-1) for k in sorted(names)]).double()


@pytest.fixture()
def zoo(tmp_path):
    base = _base_tensors()
    models = {
        "alpha": _finetune(base, 1),
        "beta": _finetune(base, 2, scale=0.3),
        "gamma": _finetune(base, 3, zero_layers=("1",)),  # leaves layer 1 unchanged
    }
    # delta: alpha's task vector scaled by -2 (cosine -1 with alpha)
    models["delta"] = {
        k: (base[k].float() - 2 * (models["alpha"][k].float() - base[k].float())).to(v.dtype)
        if v.is_floating_point() else v.clone()
        for k, v in base.items()
    }
    dirs = {
        "alpha": _save(tmp_path / "alpha", models["alpha"]),
        "beta": _save(tmp_path / "beta", models["beta"], shards=3),  # sharded, with index json
        "gamma": _save(tmp_path / "gamma", models["gamma"], shards=2, index=False),  # shards, no index
        "delta": _save(tmp_path / "delta", models["delta"], shards=2),
    }
    base_dir = _save(tmp_path / "base", base, shards=2)
    return base, models, base_dir, dirs


def test_layer_of():
    assert layer_of("model.layers.12.mlp.down_proj.weight") == "12"
    assert layer_of("transformer.h.3.attn.c_attn.weight") == "3"
    assert layer_of("model.embed_tokens.weight") == "other"
    assert layer_of("lm_head.weight") == "other"


@pytest.mark.parametrize("chunk_elems", [1 << 20, 7])  # whole tensors, and row blocks
def test_task_vector_norm_matches_direct(zoo, chunk_elems):
    base, models, base_dir, dirs = zoo
    for name, d in dirs.items():
        expected = float(torch.linalg.vector_norm(_task_vector(base, models[name])))
        got = task_vector_norm(base_dir, d, chunk_elems=chunk_elems)
        assert got == pytest.approx(expected, rel=1e-6), name
    assert task_vector_norm(base_dir, base_dir) == 0.0
    assert isinstance(task_vector_norm(str(base_dir), str(dirs["alpha"])), float)


def test_task_vector_norm_skips_tensors_the_model_lacks(zoo, tmp_path, caplog):
    base, models, base_dir, _ = zoo
    partial = {k: v for k, v in models["beta"].items() if k != "lm_head.weight"}
    partial["model.embed_tokens.weight"] = torch.zeros(12, 4)  # resized vocabulary: skipped
    d = _save(tmp_path / "partial", partial)
    keep = [k for k, v in base.items() if v.is_floating_point() and k not in ("lm_head.weight", "model.embed_tokens.weight")]
    expected = float(torch.linalg.vector_norm(_task_vector(base, models["beta"], keep)))
    with caplog.at_level("WARNING"):
        assert task_vector_norm(base_dir, d) == pytest.approx(expected, rel=1e-6)
    assert "lm_head.weight" in caplog.text and "shape" in caplog.text


def test_no_weights_is_an_error(tmp_path, zoo):
    _, _, base_dir, _ = zoo
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        task_vector_norm(base_dir, tmp_path / "empty")


@pytest.mark.parametrize("chunk_elems", [1 << 20, 5])
def test_pairwise_cosine_matches_direct(zoo, chunk_elems):
    base, models, base_dir, dirs = zoo
    cos, layers = pairwise_cosine(base_dir, dirs, chunk_elems=chunk_elems)
    names = list(dirs)
    assert list(cos.index) == names and list(cos.columns) == names
    vecs = {n: _task_vector(base, models[n]) for n in names}
    for a in names:
        for b in names:
            va, vb = vecs[a], vecs[b]
            expected = float(va @ vb / (va.norm() * vb.norm()))
            assert cos.loc[a, b] == pytest.approx(expected, abs=1e-6), (a, b)
    assert cos.loc["alpha", "delta"] == pytest.approx(-1.0, abs=1e-4)  # bf16 rounding
    assert np.allclose(np.diag(cos.to_numpy()), 1.0)
    assert np.allclose(cos.to_numpy(), cos.to_numpy().T)

    # per-layer, long form: every unordered pair once per layer group
    assert list(layers.columns) == ["layer", "model_a", "model_b", "cosine", "dot", "norm_a", "norm_b", "n_tensors"]
    assert list(layers["layer"].drop_duplicates()) == ["0", "1", "other"]
    assert len(layers) == 3 * 6
    row = layers[(layers.layer == "0") & (layers.model_a == "alpha") & (layers.model_b == "beta")].iloc[0]
    l0 = [k for k in SHAPES if layer_of(k) == "0"]
    va, vb = _task_vector(base, models["alpha"], l0), _task_vector(base, models["beta"], l0)
    assert row.cosine == pytest.approx(float(va @ vb / (va.norm() * vb.norm())), abs=1e-6)
    assert row["dot"] == pytest.approx(float(va @ vb), rel=1e-5)
    assert row.n_tensors == 2  # floating tensors only: the int buffer is ignored
    # gamma leaves layer 1 untouched: cosine undefined there
    g1 = layers[(layers.layer == "1") & ((layers.model_a == "gamma") | (layers.model_b == "gamma"))]
    assert len(g1) == 3 and g1["cosine"].isna().all() and (g1["dot"] == 0).all()
    # per-layer dots add up to the total
    tot = layers.groupby(["model_a", "model_b"])["dot"].sum()
    assert tot["alpha", "beta"] == pytest.approx(float(vecs["alpha"] @ vecs["beta"]), rel=1e-5)

    signs = layer_sign_counts(layers).set_index(["model_a", "model_b"])
    assert tuple(signs.loc[("alpha", "delta")]) == (0, 2, 0)
    assert tuple(signs.loc[("alpha", "gamma")])[2] == 1


def test_cosine_heatmap_and_layer_signs_png(zoo, tmp_path):
    from wildmerge.aggregate.figures import plot_cosine_heatmap, plot_layer_signs

    _, _, base_dir, dirs = zoo
    cos, layers = pairwise_cosine(base_dir, dirs)
    for path in [
        plot_cosine_heatmap(cos, tmp_path / "cos.png", "Task-vector cosine similarity, base tiny"),
        plot_layer_signs(layers, tmp_path / "signs.png", "Layer-wise cosine signs, base tiny"),
    ]:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    # the CSV round trip the workflow does keeps the matrix
    cos.to_csv(tmp_path / "cos.csv")
    back = pd.read_csv(tmp_path / "cos.csv", index_col=0)
    assert np.allclose(back.to_numpy(), cos.to_numpy())


def test_pairwise_cosine_pass_also_gives_each_task_vector_norm(zoo):
    """The per-checkpoint norms come from the same streaming pass (the Gram diagonal)."""
    base, models, base_dir, dirs = zoo
    _, layers, norms = pairwise_cosine(base_dir, dirs, chunk_elems=7, with_norms=True)
    for name, d in dirs.items():
        assert norms.loc[name, "total"] == pytest.approx(task_vector_norm(base_dir, d), rel=1e-6)
    assert norms.loc["gamma", "1"] == 0.0  # gamma leaves layer 1 unchanged
    row = layers[(layers.layer == "0") & (layers.model_a == "alpha") & (layers.model_b == "beta")].iloc[0]
    assert norms.loc["alpha", "0"] == pytest.approx(row.norm_a) and norms.loc["beta", "0"] == pytest.approx(row.norm_b)
