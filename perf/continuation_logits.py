"""lm-eval's HFLM against wildmerge's ContinuationHFLM on multiple-choice requests shaped like
the paper's BBH (3-shot prompts of ~320 tokens, 2-7 answer choices of 1-3 tokens) for a tiny
model with Llama-3's vocabulary (128,256 rows): the loglikelihoods, the rows of vocabulary
logits each computes (the floor: one per continuation token), and the CPU time, median of
``--repeats``, interleaved.

    .venv/bin/python perf/continuation_logits.py [--requests 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VOCAB = 128_256


def checkpoint(out: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from wildmerge.demo import tiny_models

    tiny_models.model("llama-3.1-8b", VOCAB, 1, 2, max_position_embeddings=512).save_pretrained(out)
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="w1", eos_token="w2", pad_token="w0").save_pretrained(out)
    return out


def bbh_like(n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        ctx = [rng.randrange(3, VOCAB) for _ in range(rng.randrange(250, 400))]
        for _ in range(rng.randrange(2, 8)):
            out.append((("ctx", str(len(out))), ctx, [rng.randrange(3, VOCAB) for _ in range(rng.randrange(1, 4))]))
    return out[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from wildmerge.evaluation.continuation_lm import ContinuationHFLM

    torch.set_num_threads(1)
    requests = bbh_like(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(checkpoint(Path(tmp)))
        kw = dict(pretrained=path, dtype="float32", batch_size=1, device="cpu")
        lms = {"lm-eval HFLM": HFLM(**kw), "ContinuationHFLM": ContinuationHFLM(**kw)}
        times: dict[str, list[float]] = {k: [] for k in lms}
        results = {}
        for _ in range(args.repeats):
            for name, lm in lms.items():
                t = time.process_time()
                results[name] = lm._loglikelihood_tokens(requests, disable_tqdm=True)
                times[name].append(time.process_time() - t)
    a, b = results["lm-eval HFLM"], results["ContinuationHFLM"]
    diff = max(abs(x[0] - y[0]) for x, y in zip(a, b))
    same = all(x[1] == y[1] for x, y in zip(a, b))
    full_rows = sum(len(c) + len(k) - 1 for _, c, k in requests)
    floor_rows = sum(len(k) for _, _, k in requests)
    print(f"{len(requests)} requests, mean prompt {full_rows / len(requests):.0f} tokens, vocabulary {VOCAB:,}; "
          f"CPU s, median of {args.repeats}, 1 thread")
    print(f"rows of vocabulary logits: lm-eval {full_rows:,}, floor (continuation tokens) {floor_rows:,}")
    for name, ts in times.items():
        print(f"  {name:<18} {statistics.median(ts):7.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})")
    ratio = statistics.median(times["lm-eval HFLM"]) / statistics.median(times["ContinuationHFLM"])
    print(f"  speed-up {ratio:.1f}x; max |loglikelihood difference| {diff:.2e}; greedy flags equal: {same}")
    return 0 if same and diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
