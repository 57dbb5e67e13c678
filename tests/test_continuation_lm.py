"""ContinuationHFLM (wildmerge/evaluation/continuation_lm.py) scores every request as lm-eval's
own HFLM does, while computing the vocabulary projection for the continuations' positions only."""

from __future__ import annotations

import random

import pytest

from wildmerge.demo import tiny_models

VOCAB = 4096  # large enough that a full-vocabulary row is most of a position's cost


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers

    out = tmp_path_factory.mktemp("tiny")
    tiny = tiny_models.model("qwen3-8b", VOCAB, 1, 2, max_position_embeddings=128)
    tiny.save_pretrained(out, safe_serialization=True)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w1", eos_token="w2", pad_token="w0").save_pretrained(out)
    return out


def _requests(n: int, seed: int) -> list:
    """(key, context tokens, continuation tokens) of mixed lengths, shared contexts among them
    (lm-eval's one-token-continuation cache), token 0 (lm-eval's padding value) inside some."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ctx = [rng.randrange(0, VOCAB) for _ in range(rng.randrange(1, 90))]
        for _ in range(rng.choice([1, 1, 4])):  # several choices for one context
            cont = [rng.randrange(0, VOCAB) for _ in range(rng.choice([1, 1, 2, 7]))]
            if rng.random() < 0.2:
                cont[-1] = 0
            out.append((("ctx", f"{i}-{len(out)}"), ctx, cont))
    return out


@pytest.mark.parametrize("batch_size", [1, 5])
def test_the_same_loglikelihoods_as_lm_evals_hflm_from_the_continuations_logits_only(checkpoint, batch_size):
    from lm_eval.models.huggingface import HFLM

    from wildmerge.evaluation.continuation_lm import ContinuationHFLM

    requests = _requests(40, seed=batch_size)
    kwargs = dict(pretrained=str(checkpoint), dtype="float32", batch_size=batch_size, device="cpu")
    theirs = HFLM(**kwargs)._loglikelihood_tokens(requests, disable_tqdm=True)
    lm = ContinuationHFLM(**kwargs)
    assert lm.keeps_continuation and lm.logits_kept == "continuation"
    kept: list[tuple[int, int]] = []
    call = lm.model.forward

    def spy(*args, **kw):
        out = call(*args, **kw)
        kept.append((args[0].shape[1], out.logits.shape[1]))
        return out

    lm.model.forward = spy
    ours = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    assert len(ours) == len(theirs) == len(requests)
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-4)
        assert greedy_a == greedy_b
    # the logits of far fewer positions than the inputs hold (a 7-token continuation bounds them)
    assert sum(k for _, k in kept) < sum(p for p, _ in kept) / 4
    assert all(k <= p for p, k in kept)


def test_positions_to_keep_cover_every_rows_continuation(checkpoint):
    import torch

    from wildmerge.evaluation.continuation_lm import ContinuationHFLM

    lm = ContinuationHFLM(pretrained=str(checkpoint), dtype="float32", batch_size=1, device="cpu")
    lm._longest_continuation = 3
    # rows of length 10 and 6, right-padded with 0: row 2's continuation ends 4 before the end
    batch = torch.tensor([[5] * 10, [7] * 6 + [0] * 4])
    assert lm.positions_to_keep(batch) == 4 + 3
    # a row ending in token 0 looks shorter: more positions, never fewer
    assert lm.positions_to_keep(torch.tensor([[5] * 9 + [0]])) == 1 + 3
    # nothing to keep beyond the input: all positions (0)
    assert lm.positions_to_keep(torch.tensor([[0] * 5])) == 0
    lm._longest_continuation = None  # outside a loglikelihood call (generation): all positions
    assert lm.positions_to_keep(batch) == 0
