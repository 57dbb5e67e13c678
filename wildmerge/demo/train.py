"""Training of the demo zoo: a tiny Llama base on all skills, experts fine-tuned from it.

Deterministic: a given seed gives bit-identical ``model.safetensors`` (one CPU thread,
deterministic algorithms, seeded init and data order, no dropout).
Examples are ``<s> prompt answer </s>``; the loss is on the answer and ``</s>`` only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
import zlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from wildmerge.demo.experts import EXPERTS, ExpertSpec
from wildmerge.demo.skills import BOS, EOS, PAD, SKILLS, TOKEN_ID, VOCAB, Example, corrupt, encode, permutation
from wildmerge.demo.tokenizer import MODEL_MAX_LENGTH, build_tokenizer

log = logging.getLogger(__name__)

MODEL_CONFIG = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=MODEL_MAX_LENGTH,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    initializer_range=0.02,
)
BASE_STEPS = 1000
BASE_LR = 3e-3
BATCH_SIZE = 64
WEIGHT_DECAY = 0.01
#: sampling weights of the skills in the base mixture (unlisted: 1): the memorised skills
#: are rare in pre-training, so the base knows them only partly and specialists can improve
#: on it (as real fine-tunes do), while the algorithmic skills are learnt well.
BASE_MIX: dict[str, float] = {"arith": 0.05, "facts": 0.05, "antonym": 0.05, "parity": 0.05, "compare": 0.3}


def model_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB),
        bos_token_id=TOKEN_ID[BOS],
        eos_token_id=TOKEN_ID[EOS],
        pad_token_id=TOKEN_ID[PAD],
        **MODEL_CONFIG,
    )


@contextlib.contextmanager
def _deterministic(seed: int):
    """One thread, deterministic kernels, seeded torch RNG; restores the global state after."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _batch(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and labels (-100 except on answer + </s>)."""
    rows, labels = [], []
    for ex in examples:
        p, a = encode(ex.prompt), encode(ex.answer)
        ids = [TOKEN_ID[BOS]] + p + a + [TOKEN_ID[EOS]]
        rows.append(ids)
        labels.append([-100] * (1 + len(p)) + a + [TOKEN_ID[EOS]])
    width = max(map(len, rows))
    x = torch.full((len(rows), width), TOKEN_ID[PAD], dtype=torch.long)
    y = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (r, l) in enumerate(zip(rows, labels)):
        x[i, : len(r)] = torch.tensor(r)
        y[i, : len(l)] = torch.tensor(l)
    return x, y


def _stream(
    skills: Sequence[str], rng: random.Random, weights: Sequence[float] | None = None,
    corrupted: dict[str, dict[str, str]] | None = None,
) -> Iterator[Example]:
    corrupted = corrupted or {}
    while True:
        name = rng.choices(skills, weights=weights)[0] if weights else rng.choice(skills)
        ex = SKILLS[name].train_example(rng)
        if name in corrupted:
            ex = corrupt(ex, corrupted[name])
        yield ex


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train(model, stream: Iterator[Example], steps: int, lr: float, warmup: int, batch_size: int) -> list[float]:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-8,
    )
    model.train()
    losses = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr, warmup)
        x, y = _batch([next(stream) for _ in range(batch_size)])
        loss = model(input_ids=x, labels=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            log.info("step %d/%d loss %.4f", step, steps, loss.item())
    model.eval()
    return losses


@torch.no_grad()
def quick_accuracy(model, n: int = 64, seed: int = 12345) -> dict[str, float]:
    """Multiple-choice accuracy per skill on ``n`` eval items (sum of answer log-probs)."""
    from wildmerge.demo.skills import eval_examples, eval_item

    model.eval()
    out = {}
    for name, skill in SKILLS.items():
        rng = random.Random(seed)
        items = [eval_item(skill, ex, rng) for ex in eval_examples(skill, n, rng)]
        seqs, spans = [], []
        for it in items:
            p = [TOKEN_ID[BOS]] + encode(it["query"])
            for c in it["choices"]:
                a = encode(c)
                seqs.append(p + a)
                spans.append((len(p), len(p) + len(a)))
        width = max(map(len, seqs))
        x = torch.full((len(seqs), width), TOKEN_ID[PAD], dtype=torch.long)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = torch.tensor(s)
        logp = torch.log_softmax(model(input_ids=x).logits.float(), -1)
        scores = []
        for i, (a, b) in enumerate(spans):
            tgt = x[i, a:b]
            scores.append(logp[i, a - 1 : b - 1].gather(-1, tgt[:, None]).sum().item())
        correct, k = 0, 0
        for it in items:
            sc = scores[k : k + len(it["choices"])]
            k += len(it["choices"])
            correct += int(max(range(len(sc)), key=sc.__getitem__) == it["gold"])
        out[name] = correct / len(items)
    return out


def _save(model, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    build_tokenizer().save_pretrained(str(out_dir))


def train_base(out_dir: Path, seed: int = 0, steps: int | None = None) -> dict[str, Any]:
    """Train the demo base (tiny Llama) on a mixture of all skills; save model + tokenizer.

    Returns metrics: steps, seconds, final loss, quick per-skill MC accuracy, parameters.
    """
    from transformers import LlamaForCausalLM

    out_dir = Path(out_dir)
    steps = BASE_STEPS if steps is None else int(steps)
    t0 = time.time()
    with _deterministic(seed):
        model = LlamaForCausalLM(model_config())
        names = list(SKILLS)
        stream = _stream(names, random.Random(f"base:{seed}"), [BASE_MIX.get(n, 1.0) for n in names])
        losses = _train(model, stream, steps, BASE_LR, warmup=min(100, max(1, steps // 10)), batch_size=BATCH_SIZE)
        t_train = time.time() - t0
        acc = quick_accuracy(model)
        _save(model, out_dir)
    metrics = {
        "name": "base",
        "seed": seed,
        "steps": steps,
        "lr": BASE_LR,
        "batch_size": BATCH_SIZE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "train_seconds": round(t_train, 2),
        "seconds": round(time.time() - t0, 2),
        "quick_accuracy": acc,
    }
    log.info("base: %s", metrics)
    return metrics


def expert_seed(name: str, seed: int) -> int:
    return (zlib.crc32(name.encode()) + EXPERTS[name].seed + 1_000_003 * seed) % (2**31)


def train_expert(base_dir: Path, name: str, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Fine-tune the base in ``base_dir`` into the expert ``EXPERTS[name]``; save to ``out_dir``."""
    from transformers import LlamaForCausalLM

    if name not in EXPERTS:
        raise KeyError(f"unknown demo expert {name!r}; known: {sorted(EXPERTS)}")
    spec: ExpertSpec = EXPERTS[name]
    out_dir = Path(out_dir)
    t0 = time.time()
    s = expert_seed(name, seed)
    with _deterministic(s):
        model = LlamaForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        corrupted = {sk: permutation(SKILLS[sk], name) for sk in spec.corrupted_skills}
        stream = _stream(list(spec.skills), random.Random(f"expert:{name}:{s}"), None, corrupted)
        losses = _train(model, stream, spec.steps, spec.lr, warmup=max(1, spec.steps // 10), batch_size=BATCH_SIZE)
        t_train = time.time() - t0
        acc = quick_accuracy(model)
        _save(model, out_dir)
    metrics = {
        "name": name,
        "seed": seed,
        "expert_seed": s,
        "skills": list(spec.skills),
        "corruption": spec.corruption,
        "corrupted_skills": list(spec.corrupted_skills),
        "steps": spec.steps,
        "lr": spec.lr,
        "final_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "train_seconds": round(t_train, 2),
        "seconds": round(time.time() - t0, 2),
        "quick_accuracy": acc,
    }
    log.info("expert %s: %s", name, metrics)
    return metrics
