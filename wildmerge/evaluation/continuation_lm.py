"""lm-eval's HF model, with the vocabulary projection and log-softmax only where a score reads them.

lm-eval's ``HFLM._loglikelihood_tokens`` takes the log-softmax of the logits at *every* input
position, then keeps the continuation's (``_select_cont_toks``). With a 128k-152k vocabulary
that is most of the cost of a multiple-choice request: a 3-shot BBH prompt of ~300 tokens means
~300 x 128k floats, of which one to a few rows are read. This subclass asks the model for the
last positions only (transformers' ``logits_to_keep``), enough for every continuation in the
batch; lm-eval's own code then slices them, which it already supports for a model whose logits
are shorter than its input ("virtual tokens", ``ctx_len = inplen + logits_len - padding_len``).
The kept rows are the same projection of the same hidden states, so the scores are lm-eval's
up to the rounding of a matrix product of another shape (tests/test_continuation_lm.py compares them).

Hand-written because lm-eval has no such option (0.4.13); it touches no other request type:
``generate_until``, seq2seq models and lm-eval's batch-size detection use the full logits.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from lm_eval.models.huggingface import HFLM


class ContinuationHFLM(HFLM):
    """``HFLM`` whose causal forward passes return the last positions a batch's continuations need."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        forward = getattr(self.model, "forward", None)
        #: the model takes transformers' ``logits_to_keep`` (Llama, Qwen3, most causal LMs do)
        self.keeps_continuation = (
            self.backend == "causal" and forward is not None
            and "logits_to_keep" in inspect.signature(forward).parameters
        )
        self._longest_continuation: int | None = None

    @property
    def logits_kept(self) -> str:
        """What a score file records under ``evaluation.logits``."""
        return "continuation" if self.keeps_continuation else "all"

    def _loglikelihood_tokens(self, requests: list[Any], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        self._longest_continuation = max((len(cont) for _, _, cont in requests), default=None)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._longest_continuation = None

    def _detect_batch_size(self, *args: Any, **kwargs: Any) -> int:
        # sized against the full logits, so a batch whose rows differ in length still fits
        longest, self._longest_continuation = self._longest_continuation, None
        try:
            return super()._detect_batch_size(*args, **kwargs)
        finally:
            self._longest_continuation = longest

    def positions_to_keep(self, inps: torch.Tensor) -> int:
        """How many last positions hold every continuation of the right-padded batch ``inps``
        (0: all). A row's length is taken as up to its last non-zero token (lm-eval pads with
        0), which can only under-estimate it, so the count can only be too large, never too small."""
        if not self.keeps_continuation or not self._longest_continuation:
            return 0
        padded = inps.shape[1]
        nonzero = (inps != 0).int()
        lengths = torch.where(nonzero.any(dim=1), padded - nonzero.flip(dims=[1]).argmax(dim=1), 0)
        keep = padded - int(lengths.min()) + self._longest_continuation
        return keep if keep < padded else 0

    def _model_call(self, inps: torch.Tensor, attn_mask: torch.Tensor | None = None,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
        keep = self.positions_to_keep(inps) if attn_mask is None and labels is None else 0
        if not keep:
            return super()._model_call(inps, attn_mask, labels)
        with (
            torch.no_grad(),
            torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                           enabled=self.mixed_precision_dtype is not None),
        ):
            return self.model(inps, logits_to_keep=keep).logits
