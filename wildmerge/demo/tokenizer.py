"""The demo zoo's own word-level tokenizer (built offline with the ``tokenizers`` library).

One token per whitespace-separated word of the fixed vocabulary (``skills.VOCAB``).
Encoding prepends ``<s>`` (like Llama tokenizers), so lm-eval's HF backend, which
encodes context and context+continuation with the tokenizer's defaults, gets
consistent token boundaries: ``"max 3 7 :"`` + ``" 7"`` splits exactly at the space.
"""

from __future__ import annotations

from pathlib import Path

from wildmerge.demo.skills import BOS, EOS, PAD, SPECIAL_TOKENS, TOKEN_ID, UNK, VOCAB

MODEL_MAX_LENGTH = 64
#: The demo's chat template (evaluation.apply_chat_template): each message followed by the
#: end-of-sequence token. Words of the vocabulary only (role names are not in it); every
#: message ends in a space, so an answer's first word is split from it as without a template.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }} {{ eos_token }} {% endfor %}"


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over ``VOCAB`` (deterministic; no downloads)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, TOKEN_ID[BOS])]
    )
    # WordPiece decoder with an impossible prefix = join the words with single spaces
    tok.decoder = decoders.WordPiece(prefix="##\u0000", cleanup=False)
    assert tok.get_vocab_size() == len(VOCAB)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(out_dir: str | Path):
    tok = build_tokenizer()
    tok.save_pretrained(str(out_dir))
    return tok
