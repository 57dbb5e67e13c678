"""The rehearsal's checkpoints: a tiny model for every hub id of ``config/paper.yaml``.

Each base gets its layout (``wildmerge.demo.tiny_models``: Llama-3.2-3B tied, Llama-3.1-8B
untied, Qwen3-4B tied, Qwen3-8B untied) with narrow layers, and a tokenizer with the real
vocabulary size, so embeddings and LM heads have the real number of rows:

* Llama-3: 128,000 regular tokens + 256 special ones (``<|begin_of_text|>`` = 128000, ...,
  ``<|eot_id|>`` = 128009, reserved ones up to 128255): 128,256 tokens and rows;
* Qwen3: 151,643 regular tokens + 26 added ones (``<|endoftext|>`` = 151643 ... 151668):
  151,669 tokens, 151,936 embedding rows (the real ``vocab_size``, padded beyond the tokenizer);
* MergeBench's Llama-3.2-3B fine-tunes: the base's tokenizer, 128,320 embedding rows
  (``vocab_size`` 128320), handled by the paper's ``merge.tokenizer_source: base``.

The regular tokens are a byte-level BPE vocabulary, as Llama-3's and Qwen3's: the 256 byte
symbols (every text tokenizes), merges that make each word of the rehearsal's prompt text one token (``learned_bpe``;
``data.text_corpus``: the 31 paper and Appendix E benchmarks' task configs, BBH's few-shot
samples included, and their synthetic rows), and unreachable filler entries up to the
real size. The merges keep prompts about as long in tokens as the real tokenizers make them
(BBH's 3-shot prompts: ~320 tokens; one token per byte made them ~1,200) and make answer
letters such as `` A`` one token, so lm-eval scores a multiple-choice question's choices from
one forward pass, as with the real tokenizers; every position's logits still span the real
vocabulary.
Experts (the 48 of Appendix A and the 10 more of Appendix E) are their base plus small
seeded random deltas, so none equals its base. The Llama bases are gated (401 without a
token, served to a granted one). Weights are stored in bfloat16, as the real checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hub_server import HubState, Repo

__all__ = ["ARCH", "LLAMA3", "QWEN3", "checkpoint_ids", "push_models", "tokenizer_files"]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: the paper config's base names -> the tiny layout (wildmerge.demo.tiny_models.ARCHITECTURES)
ARCH = {"llama-3.2-3b": "llama-3.2-3b", "llama-3.1-8b": "llama-3.1-8b", "qwen3-4b": "qwen3-4b", "qwen3-8b": "qwen3-8b"}

#: family -> (regular tokens, special tokens in id order, embedding rows, bos, eos)
LLAMA3 = dict(
    regular=128_000,
    special=["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
            + [f"<|reserved_special_token_{i}|>" for i in range(3, 248)],
    rows=128_256, config_bos="<|begin_of_text|>", bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None,
)
QWEN3 = dict(
    regular=151_643,
    special=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
             "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
             "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
             "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
             "</tool_response>", "<think>", "</think>"],
    rows=151_936, config_bos="<|endoftext|>", bos=None, eos="<|im_end|>", pad="<|endoftext|>",
)
MERGEBENCH_ROWS = 128_320  # MergeBench/Llama-3.2-3B-Instruct_* (resized embeddings)

#: narrow layers: a 128k-row embedding is 128k x 16 values (4 MB in bfloat16); 1,024 positions:
#: lm-eval cuts longer prompts from the left (one token per byte here, so BBH's 3-shot prompts
#: run to ~10k tokens, and each position's logits are 128k floats: 8,192 positions took minutes)
SIZES = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, head_dim=8, max_position_embeddings=1024)


def family(base: str) -> dict[str, Any]:
    return LLAMA3 if base.startswith("llama") else QWEN3


@lru_cache(maxsize=1)
def learned_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges learned (``tokenizers``' BpeTrainer, merging until no
    pair is left) from the rehearsal's prompt text, split as Llama-3's and Qwen3's pre-tokenizers
    split it: every word of the corpus ends up one token. The same for both families; the same
    from run to run (a fixed corpus in a fixed order)."""
    from data import paper_benchmarks, text_corpus
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=min(LLAMA3["regular"], QWEN3["regular"]), min_frequency=1,
                                  show_progress=False, initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()))
    tok.train_from_iterator(text_corpus(paper_benchmarks()), trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return dict(model["vocab"]), merges


@lru_cache(maxsize=None)
def tokenizer_files(fam: str) -> dict[str, bytes]:
    """``tokenizer.json`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` of a
    byte-level BPE tokenizer with ``fam``'s (``"llama"``/``"qwen"``) real token count."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    spec = LLAMA3 if fam == "llama" else QWEN3
    learned, merges = learned_bpe()
    vocab = dict(learned)  # a copy: the cached vocabulary stays as learned
    # unreachable (no merge produces them): pads the regular vocabulary to its real size
    vocab.update({f"\u0120<filler{i}>": i for i in range(len(vocab), spec["regular"])})
    # a word in the vocabulary is one token whatever the merges (`ignore_merges`, as in Llama-3's tokenizer.json)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spec["special"]])
    if spec["bos"]:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A {spec['bos']} $B",
            special_tokens=[(spec["bos"], spec["regular"])])
    assert tok.get_vocab_size() == spec["regular"] + len(spec["special"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"],
        model_max_length=131072, clean_up_tokenization_spaces=False,
    )
    with tempfile.TemporaryDirectory() as d:
        fast.save_pretrained(d)
        return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}


def checkpoint_ids(config: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """Hub id -> (base name, None for a base, else the expert's name), from ``bases`` and
    ``homogeneous`` (Appendix E's experts outside the base's pool too)."""
    out: dict[str, tuple[str, str | None]] = {}
    for base, spec in config["bases"].items():
        out[spec["model"]] = (base, None)
        for name, ck in spec["experts"].items():
            out[ck if isinstance(ck, str) else ck["source"]] = (base, name)
    for base, spec in (config.get("homogeneous") or {}).items():
        for group in spec["groups"].values():
            for name, ck in group["experts"].items():
                out.setdefault(ck if isinstance(ck, str) else ck["source"], (base, name))
    return out


def _seed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _save(model: Any, tokenizer: dict[str, bytes]) -> dict[str, bytes]:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as d:
        model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
        files = {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}
    return {**files, **tokenizer}


def model_repos(config: Mapping[str, Any]) -> dict[str, dict[str, bytes]]:
    """Hub id -> its files, for every checkpoint of ``config``."""
    import copy

    import torch

    from wildmerge.demo import tiny_models

    ids = checkpoint_ids(config)
    bases: dict[str, Any] = {}
    out: dict[str, dict[str, bytes]] = {}
    for hub_id, (base, expert) in sorted(ids.items(), key=lambda kv: kv[1][1] is not None):
        spec = family(base)
        tok = tokenizer_files("llama" if spec is LLAMA3 else "qwen")
        if expert is None:
            vocab = json.loads(tok["tokenizer.json"])["added_tokens"]
            token_id = {t["content"]: t["id"] for t in vocab}
            m = tiny_models.model(
                ARCH[base], spec["rows"], token_id[spec["config_bos"]], token_id[spec["eos"]],
                seed=_seed(hub_id), **SIZES)
            if spec["pad"]:
                m.config.pad_token_id = token_id[spec["pad"]]
            bases[base] = m
            out[hub_id] = _save(copy.deepcopy(m), tok)
            continue
        m = copy.deepcopy(bases[base])
        gen = torch.Generator().manual_seed(_seed(hub_id))
        with torch.no_grad():
            for p in m.parameters():  # tied: the shared embedding/head once
                p.add_(torch.randn(p.shape, generator=gen) * 0.01 * (p.std() if p.numel() > 1 else 1.0) + 0.002)
        if hub_id.startswith("MergeBench/"):
            m.resize_token_embeddings(MERGEBENCH_ROWS, mean_resizing=False)
        out[hub_id] = _save(m, tok)
    return out


def push_models(state: HubState, config: Mapping[str, Any], token: str) -> dict[str, str]:
    """Push every checkpoint of ``config`` into ``state``; the ``meta-llama/`` bases are gated,
    granted to ``token``. Returns hub id -> commit."""
    commits = {}
    for hub_id, files in model_repos(config).items():
        gated = hub_id.startswith("meta-llama/")
        repo = Repo(gated=gated, granted={token} if gated else set())
        commits[hub_id] = repo.push(files)
        state.repos[hub_id] = repo
    return commits


def load_config(paths: Iterable[Path]) -> dict[str, Any]:
    """The configs merged as Snakemake merges ``--configfile`` files (nested mappings merge,
    anything else replaces)."""
    def merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
        for k, v in b.items():
            a[k] = merge(dict(a[k]), v) if isinstance(v, Mapping) and isinstance(a.get(k), Mapping) else v
        return a

    out: dict[str, Any] = {}
    for p in paths:
        out = merge(out, yaml.safe_load(io.StringIO(Path(p).read_text())) or {})
    return out
