"""Tiny random models with the tensor layout of the paper's four bases (built offline).

``build(arch, out_dir)`` saves a ``save_pretrained(safe_serialization=True)`` checkpoint
plus its own tokenizer (the demo's word-level one) for one of :data:`ARCHITECTURES`:

* ``llama-3.2-3b``: LlamaForCausalLM, tied embeddings (no ``lm_head`` tensor saved);
* ``llama-3.1-8b``: LlamaForCausalLM, untied;
* ``qwen3-4b``: Qwen3ForCausalLM (``q_norm``/``k_norm``), tied;
* ``qwen3-8b``: Qwen3ForCausalLM, untied.

``model(arch, vocab_size, ...)`` builds the random model alone (unsaved), for callers with a
tokenizer of their own (the rehearsal's fake hub: the real vocabulary sizes, narrower layers).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ARCHITECTURES", "build", "model"]

#: name -> (model_type, tie_word_embeddings)
ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "llama-3.2-3b": ("llama", True),
    "llama-3.1-8b": ("llama", False),
    "qwen3-4b": ("qwen3", True),
    "qwen3-8b": ("qwen3", False),
}

_SIZES = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
)


def model(arch: str, vocab_size: int, bos_token_id: int, eos_token_id: int, seed: int = 0, **sizes: int):
    """A tiny random ``arch`` model (``transformers`` ``PreTrainedModel``), not saved; ``sizes``
    override the layer sizes (``hidden_size``, ``max_position_embeddings``, ...)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    model_type, tied = ARCHITECTURES[arch]
    cls = LlamaConfig if model_type == "llama" else Qwen3Config
    config = cls(
        vocab_size=vocab_size, tie_word_embeddings=tied, **{**_SIZES, **sizes},
        bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def build(arch: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random ``arch`` checkpoint with its tokenizer to ``out_dir``."""
    from wildmerge.demo.skills import BOS, EOS, TOKEN_ID, VOCAB
    from wildmerge.demo.tokenizer import build_tokenizer

    tiny = model(arch, len(VOCAB), TOKEN_ID[BOS], TOKEN_ID[EOS], seed=seed)
    out = Path(out_dir)
    tiny.save_pretrained(out, safe_serialization=True)
    build_tokenizer().save_pretrained(out)
    return out
