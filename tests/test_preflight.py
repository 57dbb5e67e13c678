"""wildmerge.preflight.checks: tiny Llama checkpoints built in tmp_path (CPU, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import tokenizers
import torch
import transformers

from wildmerge.preflight import files as checkpoint_files
from wildmerge.preflight.checks import PreflightError, check_checkpoint
from wildmerge.provenance import atomic_write_json

VOCAB = 64


def base_tokens(n: int = VOCAB) -> list[str]:
    return ["<unk>"] + [f"w{i}" for i in range(1, n)]


def save_tokenizer(d: Path, tokens: list[str]) -> None:
    tk = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>")
    )
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    fast.save_pretrained(d)


def make_ckpt(
    d: Path,
    *,
    vocab: int = VOCAB,
    intermediate: int = 32,
    layers: int = 1,
    tokens: list[str] | None = None,
    seed: int = 0,
    **save_kw: Any,
) -> Path:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    transformers.LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True, **save_kw)
    save_tokenizer(d, tokens or base_tokens(vocab))
    return d


def edit_config(d: Path, **changes: Any) -> None:
    path = d / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg, indent=2))


@pytest.fixture(scope="module")
def base_template(tmp_path_factory) -> Path:
    return make_ckpt(tmp_path_factory.mktemp("base") / "base")


@pytest.fixture
def base(tmp_path, base_template) -> Path:
    return Path(shutil.copytree(base_template, tmp_path / "base"))


@pytest.fixture
def clone(tmp_path, base_template):
    """An expert directory that starts as a copy of the base."""

    def _clone(name: str) -> Path:
        return Path(shutil.copytree(base_template, tmp_path / "experts" / name))

    return _clone


@pytest.fixture(autouse=True)
def headers_only(monkeypatch):
    """Fail any test in which preflight loads tensor data or unpickles anything."""
    real_safe_open = checkpoint_files.safe_open

    class SliceGuard:
        def __init__(self, sl):
            self._sl = sl

        def get_shape(self):
            return self._sl.get_shape()

        def get_dtype(self):
            return self._sl.get_dtype()

        def __getitem__(self, item):
            raise AssertionError("preflight read tensor data through a slice")

    class SafeOpenGuard:
        def __init__(self, *args, **kwargs):
            self._cm = real_safe_open(*args, **kwargs)

        def __enter__(self):
            self._f = self._cm.__enter__()
            return self

        def __exit__(self, *exc):
            return self._cm.__exit__(*exc)

        def keys(self):
            return self._f.keys()

        def metadata(self):
            return self._f.metadata()

        def get_slice(self, name):
            return SliceGuard(self._f.get_slice(name))

        def get_tensor(self, name):
            raise AssertionError(f"preflight loaded tensor {name}")

        def get_tensors(self, *a):
            raise AssertionError("preflight loaded tensors")

    def no_unpickling(*a, **k):
        raise AssertionError("preflight called torch.load")

    monkeypatch.setattr(checkpoint_files, "safe_open", SafeOpenGuard)
    monkeypatch.setattr(torch, "load", no_unpickling)


# --------------------------------------------------------------------------- ok cases


def test_header_guard_is_active(base):
    with checkpoint_files.safe_open(str(base / "model.safetensors"), framework="pt") as f:
        name = next(iter(f.keys()))
        assert f.get_slice(name).get_shape()
        with pytest.raises(AssertionError, match="preflight loaded tensor"):
            f.get_tensor(name)
        with pytest.raises(AssertionError, match="through a slice"):
            f.get_slice(name)[:1]


def test_identical_expert_ok(tmp_path, base, clone):
    expert = clone("math")
    rep = check_checkpoint(base, expert, name="math")
    base_rep = check_checkpoint(base, base, name="base of base")  # the base's own job
    assert base_rep["status"] == "ok" and base_rep["resolution"] is None
    assert base_rep["role"] == "base" and rep["role"] == "expert"
    assert rep["status"] == "ok" and rep["issues"] == [] and rep["resolution"] is None
    assert rep["architectures"] == ["LlamaForCausalLM"] and rep["model_type"] == "llama"
    assert rep["vocab_size"] == VOCAB
    assert rep["n_tensors"] == base_rep["n_tensors"] == 12
    assert rep["weights"] == {"format": "safetensors", "layout": "single", "files": ["model.safetensors"]}
    assert rep["tokenizer"]["fingerprint"] == base_rep["tokenizer"]["fingerprint"]
    assert rep["tokenizer"]["fingerprint"] == checkpoint_files.tokenizer_fingerprint(expert)
    assert rep["tokenizer"]["n_tokens"] == VOCAB
    # JSON-able, written the way the workflow writes it (scripts/preflight.py: rec["preflight"])
    out = tmp_path / "preflight.json"
    atomic_write_json(out, {"preflight": rep})
    back = json.loads(out.read_text())["preflight"]
    assert back["n_tensors"] == 12 and back == rep


def test_different_weights_same_layout_ok(tmp_path, base):
    expert = make_ckpt(tmp_path / "code", seed=1)
    assert check_checkpoint(base, expert, name="code")["status"] == "ok"


def test_expert_that_is_the_base_is_refused_naming_both(tmp_path, base, clone):
    """Issue 26: an expert job (role="expert") on the base's own folder, or on a copy of its
    weights, has a zero task vector: refused, naming the expert and the base."""
    copy = clone("copy")
    for expert, why in ((base, "it is the base's own folder"), (copy, "it has the same weights as the base")):
        with pytest.raises(PreflightError) as err:
            check_checkpoint(base, expert, name="dup", base_name="tiny", role="expert")
        msg = str(err.value)
        assert msg.startswith(f"preflight failed for expert 'dup' ({expert}):\n  - {why}"), msg
        assert f"base 'tiny' ({base}); its task vector is zero" in msg
        assert "fix: remove 'dup' from bases.tiny's experts" in msg
    # a fine-tune of the same layout: the same file sizes, so its bytes are compared, and differ
    tuned = make_ckpt(tmp_path / "tuned", seed=1)
    assert (tuned / "model.safetensors").stat().st_size == (base / "model.safetensors").stat().st_size
    assert check_checkpoint(base, tuned, name="tuned", base_name="tiny", role="expert")["status"] == "ok"
    # the base's own job; and without a role the folder tells (as before)
    assert check_checkpoint(base, base, name="base of tiny", base_name="tiny", role="base")["role"] == "base"
    assert check_checkpoint(base, base, name="base of tiny", base_name="tiny")["role"] == "base"


def test_sharded_expert_ok(tmp_path, base):
    expert = make_ckpt(tmp_path / "sharded", max_shard_size="2KB")
    assert (expert / "model.safetensors.index.json").is_file()
    assert not (expert / "model.safetensors").exists()
    rep = check_checkpoint(base, expert, name="sharded")
    assert rep["weights"]["layout"] == "sharded" and len(rep["weights"]["files"]) > 1
    assert rep["n_tensors"] == 12


def test_missing_shard_refused(tmp_path, base):
    expert = make_ckpt(tmp_path / "sharded", max_shard_size="2KB")
    index = json.loads((expert / "model.safetensors.index.json").read_text())
    shard = max(index["weight_map"].values())
    (expert / shard).unlink()
    with pytest.raises(PreflightError, match="missing") as err:
        check_checkpoint(base, expert, name="sharded")
    assert shard in str(err.value)


def test_expert_without_tokenizer_warns(base, clone):
    expert = clone("notok")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (expert / f).unlink()
    rep = check_checkpoint(base, expert, name="notok")
    assert rep["status"] == "ok" and rep["tokenizer"] is None
    assert any("no tokenizer files" in w for w in rep["warnings"])


# --------------------------------------------------------------------------- vocabulary


@pytest.fixture
def resized(tmp_path, base_template) -> Path:
    """A fine-tune whose embeddings were resized for 8 new tokens (as MergeBench's)."""
    d = tmp_path / "experts" / "math"
    model = transformers.LlamaForCausalLM.from_pretrained(base_template)
    model.resize_token_embeddings(VOCAB + 8)
    model.save_pretrained(d, safe_serialization=True)
    save_tokenizer(d, base_tokens() + [f"<new{i}>" for i in range(8)])
    return d


def test_resized_embeddings_refused_by_default(base, resized):
    assert json.loads((resized / "config.json").read_text())["vocab_size"] == VOCAB + 8
    with pytest.raises(PreflightError, match="tokenizer_source") as err:
        check_checkpoint(base, resized, name="math")
    msg = str(err.value)
    assert "'math'" in msg and str(resized) in msg
    assert "model.embed_tokens.weight" in msg and "lm_head.weight" in msg
    assert str(VOCAB) in msg and str(VOCAB + 8) in msg
    assert "[72, 16]" in msg and "[64, 16]" in msg
    assert "merge.tokenizer_source" in msg and "`base`" in msg and "`union`" in msg
    kinds = {i["kind"] for i in err.value.issues}
    assert kinds == {"resized_embeddings", "vocab_size"}
    assert all(i["checkpoint"] == "math" for i in err.value.issues)


@pytest.mark.parametrize("policy", ["union", "base"])
def test_resized_embeddings_resolved_by_policy(base, resized, policy):
    rep = check_checkpoint(base, resized, name="math", tokenizer_policy=policy)
    assert rep["status"] == "resolved"
    assert rep["resolution"] == {"tokenizer_source": policy}
    assert rep["vocab_size"] == VOCAB + 8
    issues = {i.get("key"): i for i in rep["issues"]}
    assert issues["model.embed_tokens.weight"]["base"] == [VOCAB, 16]
    assert issues["model.embed_tokens.weight"]["value"] == [VOCAB + 8, 16]
    assert all(i["resolved"] for i in rep["issues"])
    assert any("adds 8 tokens" in w for w in rep["warnings"])
    json.dumps(rep)


def test_policy_resolution_only_when_needed(base, clone, resized):
    """Each checkpoint's report records the resolution only if it needs it (the merge takes
    it from its members' records: wildmerge.merging.merged_model)."""
    same = check_checkpoint(base, clone("same"), name="same", tokenizer_policy="union")
    math = check_checkpoint(base, resized, name="math", tokenizer_policy="union")
    assert same["resolution"] is None and same["status"] == "ok"
    assert math["resolution"] == {"tokenizer_source": "union"} and math["status"] == "resolved"
    assert check_checkpoint(base, clone("same2"), name="same2", tokenizer_policy="union")["resolution"] is None
    assert check_checkpoint(base, base, name="base of base", tokenizer_policy="union")["resolution"] is None


def test_permuted_tokenizer_same_size_refused(base, clone):
    expert = clone("perm")
    toks = base_tokens()
    save_tokenizer(expert, [toks[0]] + toks[1:][::-1])
    with pytest.raises(PreflightError, match="tokenizer") as err:
        check_checkpoint(base, expert, name="perm")
    msg = str(err.value)
    assert "'perm'" in msg and "tokenizer" in msg and "other ids" in msg
    assert "'w1': 1 in the base vs 63" in msg
    assert "merge.tokenizer_source" in msg
    assert [i["kind"] for i in err.value.issues] == ["tokenizer_mismatch"]
    # accepted (mergekit re-indexes the embeddings) with an explicit policy
    rep = check_checkpoint(base, expert, name="perm", tokenizer_policy="base")
    assert rep["resolution"] == {"tokenizer_source": "base"}
    assert rep["tokenizer"]["fingerprint"] != checkpoint_files.tokenizer_fingerprint(base)


def test_tokenizer_fingerprint_ignores_unrelated_files(base, clone):
    expert = clone("tok")
    cfg = json.loads((expert / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 123
    (expert / "tokenizer_config.json").write_text(json.dumps(cfg))
    assert checkpoint_files.tokenizer_fingerprint(expert) == checkpoint_files.tokenizer_fingerprint(base)


def test_unknown_policy(base, clone):
    with pytest.raises(ValueError, match="tokenizer_source"):
        check_checkpoint(base, clone("x"), name="x", tokenizer_policy="expert")


# --------------------------------------------------------------------------- weights format


def test_pickle_only_refused(base, clone):
    expert = clone("pickled")
    (expert / "model.safetensors").unlink()
    state = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_pretrained(expert)).state_dict()
    torch.save(state, expert / "pytorch_model.bin")  # the real torch.save: only load is guarded
    with pytest.raises(PreflightError, match="pickle") as err:
        check_checkpoint(base, expert, name="pickled")
    msg = str(err.value)
    assert "pickle" in msg and "execute" in msg and "pytorch_model.bin" in msg
    assert "'pickled'" in msg and str(expert) in msg
    assert "safe_serialization=True" in msg
    assert err.value.issues[0]["kind"] == "pickle_weights"


def test_pickle_next_to_safetensors_ignored(base, clone):
    expert = clone("both")
    (expert / "training_args.bin").write_bytes(b"not read")
    (expert / "optimizer.pt").write_bytes(b"not read")
    rep = check_checkpoint(base, expert, name="both")
    assert rep["status"] == "ok"
    assert any("optimizer.pt" in w for w in rep["warnings"])


def test_no_weights_refused(base, clone):
    expert = clone("empty")
    (expert / "model.safetensors").unlink()
    with pytest.raises(PreflightError, match="no model weights") as err:
        check_checkpoint(base, expert, name="empty")
    assert "'empty'" in str(err.value)


def test_missing_directory_refused(tmp_path, base):
    with pytest.raises(PreflightError, match="does not exist"):
        check_checkpoint(base, tmp_path / "nowhere", name="ghost")


def test_lora_adapter_refused(tmp_path, base):
    d = tmp_path / "lora"
    d.mkdir()
    (d / "adapter_config.json").write_text("{}")
    (d / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(PreflightError, match="adapter") as err:
        check_checkpoint(base, d, name="lora")
    assert "merge_and_unload" in str(err.value)


# --------------------------------------------------------------------------- custom code


AUTO_MAP = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"}


def test_auto_map_without_trust_refused(base, clone):
    expert = clone("custom")
    edit_config(expert, auto_map=AUTO_MAP)
    with pytest.raises(PreflightError, match="trust_remote_code") as err:
        check_checkpoint(base, expert, name="custom")
    msg = str(err.value)
    assert "'custom'" in msg and str(expert) in msg and "auto_map" in msg
    assert "trust_remote_code: true" in msg
    assert err.value.issues[0]["kind"] == "remote_code"


def test_auto_map_with_trust_ok(base, clone):
    expert = clone("custom")
    edit_config(expert, auto_map=AUTO_MAP)
    rep = check_checkpoint(base, expert, name="custom", trust_remote_code=True)
    assert rep["status"] == "ok" and rep["trust_remote_code"] is True
    assert rep["custom_code"] == {"config.json": AUTO_MAP}
    assert any("will be executed" in w for w in rep["warnings"])


def test_base_auto_map_needs_base_trust(base, clone):
    """The base's custom code is judged where the workflow judges it: in the base's own
    check, against itself (scripts/preflight.py), with the base's trust flag."""
    edit_config(base, auto_map=AUTO_MAP)
    expert = clone("plain")
    edit_config(expert, auto_map=AUTO_MAP)
    with pytest.raises(PreflightError, match="base 'base of llama'") as err:
        check_checkpoint(base, base, name="base of llama", trust_remote_code=False, base_name="llama")
    assert "bases.<base>.model" in str(err.value) and "expert" not in str(err.value)
    assert [i["kind"] for i in err.value.issues] == ["remote_code"]
    # an expert's check judges the expert's trust only
    assert check_checkpoint(base, expert, name="plain", trust_remote_code=True, base_name="llama")["status"] == "ok"
    rep = check_checkpoint(base, base, name="base of llama", trust_remote_code=True, base_name="llama")
    assert rep["status"] == "ok" and rep["role"] == "base"


# --------------------------------------------------------------------------- layout


def test_architecture_mismatch_refused(base, clone):
    expert = clone("mistral")
    edit_config(expert, architectures=["MistralForCausalLM"], model_type="mistral")
    with pytest.raises(PreflightError, match="architectures") as err:
        check_checkpoint(base, expert, name="mistral")
    msg = str(err.value)
    assert "'mistral'" in msg and "architectures" in msg and "model_type" in msg
    assert "MistralForCausalLM" in msg and "LlamaForCausalLM" in msg
    assert "'llama'" in msg and "'mistral'" in msg
    # not a vocabulary question: no tokenizer policy accepts it
    with pytest.raises(PreflightError, match="architectures"):
        check_checkpoint(base, expert, name="mistral", tokenizer_policy="union")


def test_shape_mismatch_refused(tmp_path, base):
    expert = make_ckpt(tmp_path / "wide", intermediate=48)
    for policy in ("error", "union"):
        with pytest.raises(PreflightError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight") as err:
            check_checkpoint(base, expert, name="wide", tokenizer_policy=policy)
        msg = str(err.value)
        assert "'wide'" in msg and "model.layers.0.mlp.gate_proj.weight" in msg
        assert "[48, 16]" in msg and "[32, 16]" in msg
        assert "model.layers.0.mlp.down_proj.weight" in msg and "[16, 48]" in msg
        assert {i["kind"] for i in err.value.issues} == {"shape_mismatch"}


def test_extra_layer_refused(tmp_path, base):
    expert = make_ckpt(tmp_path / "deep", layers=2)
    with pytest.raises(PreflightError, match="model.layers.1") as err:
        check_checkpoint(base, expert, name="deep")
    assert {i["kind"] for i in err.value.issues} == {"unexpected_tensors"}


def test_tie_word_embeddings_mismatch_refused(base, clone):
    expert = clone("tied")
    edit_config(expert, tie_word_embeddings=True)
    with pytest.raises(PreflightError, match="tie_word_embeddings") as err:
        check_checkpoint(base, expert, name="tied")
    assert "True" in str(err.value) and "False" in str(err.value)


def test_all_problems_of_a_checkpoint_reported_at_once(tmp_path, base, clone, resized):
    """Each checkpoint's error lists every blocking issue it has (not only the first), and
    only that checkpoint's (each is its own job in the workflow)."""
    custom = clone("custom")
    edit_config(custom, auto_map=AUTO_MAP, model_type="x")
    wide = make_ckpt(tmp_path / "wide", intermediate=48)
    experts = {"ok": clone("ok"), "custom": custom, "wide": wide, "math": resized}
    failed = {}
    for name, d in experts.items():
        try:
            check_checkpoint(base, d, name=name)
        except PreflightError as err:
            failed[name] = err
    assert set(failed) == {"custom", "wide", "math"}
    for name, err in failed.items():
        assert str(err).startswith(f"preflight failed for expert '{name}'")
        assert {i["checkpoint"] for i in err.issues} == {name}
        assert "'ok'" not in str(err)
    assert {i["kind"] for i in failed["custom"].issues} == {"remote_code", "architecture"}


def test_config_fields_that_do_not_change_weights_accepted(base, clone):
    expert = clone("chat")
    edit_config(expert, torch_dtype="bfloat16", use_cache=False, transformers_version="4.99.0")
    (expert / "generation_config.json").write_text(json.dumps({"temperature": 0.6, "do_sample": True}))
    rep = check_checkpoint(base, expert, name="chat")
    assert rep["status"] == "ok" and rep["issues"] == []


def test_bf16_expert_with_fp32_base_accepted(tmp_path, base):
    expert = make_ckpt(tmp_path / "bf16", seed=3)
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(torch.bfloat16) for k, v in load_file(expert / "model.safetensors").items()}
    save_file(tensors, expert / "model.safetensors", metadata={"format": "pt"})
    edit_config(expert, torch_dtype="bfloat16")
    rep = check_checkpoint(base, expert, name="bf16")
    assert rep["status"] == "ok"
