"""Evaluation forward tokens per model and benchmark, with ``evaluation.budget`` applied.

Every benchmark of the study is a loglikelihood (multiple-choice) task: one request per choice,
``(context, continuation)``. lm-eval's HF model runs one forward pass per distinct
``context + continuation[:-1]`` (its logits cache: the choices of a question whose answers are
single tokens, ``A``/``B``/..., share one pass), over ``len(context + continuation) - 1`` tokens.

* **Measured** (:func:`measure`): the benchmark's real items, built by lm-eval from the fetched
  data (or an ``include_path`` folder) with the study's few-shot setting, tokenized with the base's
  tokenizer; per item the forward passes and their tokens, so a budget's exact sample
  (:func:`wildmerge.evaluation.budget.sample_ids`) is counted. Cached in
  ``<results>/plan/tokens.json`` (the planned SLURM runtimes read only that cache and the table).
* **Table** (:data:`BENCHMARK_TABLE`): each paper benchmark's item count (the split lm-eval
  scores), mean choices, forward passes per item (1 where every answer is a single token) and
  mean tokens per pass, with its source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from wildmerge.provenance import stable_hash


@dataclass(frozen=True)
class BenchStats:
    """One benchmark's evaluation work for one model: items scored, loglikelihood requests,
    forward passes, tokens fed (sum of pass lengths) and sum of squared pass lengths (attention)."""

    items: float
    requests: float
    forwards: float
    tokens: float
    tokens_sq: float
    source: str

    def scaled(self, f: float, source: str | None = None) -> BenchStats:
        return BenchStats(self.items * f, self.requests * f, self.forwards * f, self.tokens * f, self.tokens_sq * f,
                          source or self.source)


# name: (items, mean choices, forward passes per item, mean tokens per pass, source of the counts)
# Items: the split lm-eval 0.4.13 scores (its task YAML), sizes from the dataset cards / papers.
# Tokens per pass: ESTIMATES (Llama-3 tokenizer, ~4 characters per token, from the template in the
# task YAML and the datasets' published mean lengths); fetched data replaces them by measured counts.
_EST = "tokens per pass estimated"
BENCHMARK_TABLE: dict[str, tuple[int, float, float, float, str]] = {
    "arc_easy": (2376, 4.0, 4.0, 32, f"ARC-Easy test (Clark et al. 2018); {_EST}"),
    "arc_challenge": (1172, 4.0, 4.0, 40, f"ARC-Challenge test (Clark et al. 2018); {_EST}"),
    "boolq": (3270, 2.0, 1.0, 150, f"BoolQ validation (Clark et al. 2019), yes/no single tokens; {_EST}"),
    "commonsense_qa": (1221, 5.0, 1.0, 50, f"CommonsenseQA validation, letter answers; {_EST}"),
    "hellaswag": (10042, 4.0, 4.0, 75, f"HellaSwag validation (Zellers et al. 2019); {_EST}"),
    "winogrande": (1267, 2.0, 2.0, 28, f"WinoGrande-XL validation, partial scoring; {_EST}"),
    "piqa": (1838, 2.0, 2.0, 40, f"PIQA validation (Bisk et al. 2020); {_EST}"),
    "openbookqa": (500, 4.0, 4.0, 20, f"OpenBookQA test (Mihaylov et al. 2018); {_EST}"),
    "headqa_en": (2742, 4.0, 4.0, 35, f"HEAD-QA en test (Vilares & Gomez-Rodriguez 2019); {_EST}"),
    "prost": (18736, 4.0, 4.0, 70, f"PROST test (Aroca-Ouellette et al. 2021); {_EST}"),
    "truthfulqa_mc1": (817, 4.9, 4.9, 130, f"TruthfulQA validation, with lm-eval's 6-QA preamble; {_EST}"),
    "medmcqa": (4183, 4.0, 1.0, 60, f"MedMCQA validation, letter answers; {_EST}"),
    "leaderboard_gpqa": (1192, 4.0, 4.0, 260, f"GPQA diamond+extended+main (198+546+448); {_EST}"),
    "leaderboard_bbh": (5761, 5.0, 5.0, 700, f"BBH, the leaderboard's 24 tasks, 3-shot; {_EST}"),
    "mmlu": (14042, 4.0, 1.0, 95, f"MMLU test (Hendrycks et al. 2021), letter answers; {_EST}"),
    "leaderboard_mmlu_pro": (12032, 10.0, 1.0, 1600, f"MMLU-Pro test (Wang et al. 2024), 5-shot, letters; {_EST}"),
    # Appendix E suites (Table 5): MMLU subjects (test), the leaderboard's BBH tasks (3-shot)
    "mmlu_abstract_algebra": (100, 4.0, 1.0, 85, f"MMLU test; {_EST}"),
    "mmlu_college_mathematics": (100, 4.0, 1.0, 110, f"MMLU test; {_EST}"),
    "mmlu_elementary_mathematics": (378, 4.0, 1.0, 80, f"MMLU test; {_EST}"),
    "mmlu_formal_logic": (126, 4.0, 1.0, 140, f"MMLU test; {_EST}"),
    "mmlu_anatomy": (135, 4.0, 1.0, 70, f"MMLU test; {_EST}"),
    "mmlu_clinical_knowledge": (265, 4.0, 1.0, 70, f"MMLU test; {_EST}"),
    "mmlu_medical_genetics": (100, 4.0, 1.0, 70, f"MMLU test; {_EST}"),
    "mmlu_professional_medicine": (272, 4.0, 1.0, 250, f"MMLU test; {_EST}"),
    "mmlu_virology": (166, 4.0, 1.0, 70, f"MMLU test; {_EST}"),
    "mmlu_college_medicine": (173, 4.0, 1.0, 150, f"MMLU test; {_EST}"),
    "leaderboard_bbh_boolean_expressions": (250, 2.0, 2.0, 150, f"BBH test, 3-shot; {_EST}"),
    "leaderboard_bbh_formal_fallacies": (250, 2.0, 2.0, 700, f"BBH test, 3-shot; {_EST}"),
    "leaderboard_bbh_geometric_shapes": (250, 10.0, 10.0, 550, f"BBH test, 3-shot; {_EST}"),
    "leaderboard_bbh_object_counting": (250, 19.0, 19.0, 200, f"BBH test, 3-shot; {_EST}"),
    "leaderboard_bbh_web_of_lies": (250, 2.0, 2.0, 350, f"BBH test, 3-shot; {_EST}"),
}
#: a benchmark neither measured nor in the table (printed as such)
UNKNOWN = (1000, 4.0, 4.0, 100, "unknown benchmark: 1000 items x 4 choices x 100 tokens assumed")


def table_stats(name: str) -> BenchStats:
    items, choices, fwd, tok, src = BENCHMARK_TABLE.get(name, UNKNOWN)
    forwards = items * fwd
    return BenchStats(items, items * choices, forwards, forwards * tok, forwards * tok * tok,
                      f"table: {src}" if name in BENCHMARK_TABLE else src)


def apply_budget(stats: BenchStats, budget: float | int | None) -> BenchStats:
    """A table benchmark under a budget: the sampled share of its items."""
    if budget is None:
        return stats
    share = min(1.0, float(budget)) if isinstance(budget, float) else min(1.0, budget / max(stats.items, 1.0))
    return stats.scaled(share, f"{stats.source}; budget {budget}")


# ---- measured from the data --------------------------------------------------------------


def _pair_tokens(tok: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's HFLM._encode_pair: trailing spaces of the context go to the continuation."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        continuation, context = context[-spaces:] + continuation, context[:-spaces]
    whole = tok(context + continuation)["input_ids"]  # the tokenizer's defaults, as lm-eval (a BOS where it adds one)
    ctx = tok(context)["input_ids"]
    return ctx, whole[len(ctx):]


def _leaves(d: Mapping[Any, Any]) -> list[Any]:
    out = []
    for v in d.values():
        out += _leaves(v) if isinstance(v, Mapping) else [v]
    return out


def measure_items(name: str, include_path: str | None, tokenizer_dir: str, num_fewshot: int | None,
                  seed: int = 1234) -> dict[str, list[tuple[int, int, int, int]]]:
    """{leaf task: per item (requests, forward passes, tokens, squared tokens)} of one benchmark,
    built by lm-eval (the datasets must be readable: fetched, or local files) and tokenized with
    ``tokenizer_dir``'s tokenizer."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's and datasets' progress bars
    import datasets
    from lm_eval.tasks import TaskManager, get_task_dict
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()

    tm = None
    if include_path:
        tm = TaskManager(include_path=str(include_path), include_defaults=False)
        if name not in tm.all_tasks:
            tm = None
    tm = tm or TaskManager(include_path=str(include_path) if include_path else None)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for task in _leaves(get_task_dict([name], tm)):
        if num_fewshot is not None:
            task.set_config(key="num_fewshot", value=num_fewshot)
        task.set_fewshot_seed(seed=seed)
        task.build_all_requests()
        per_doc: dict[int, list[tuple[str, str]]] = {}
        for inst in task.instances:
            per_doc.setdefault(int(inst.doc_id), []).append(tuple(inst.arguments[:2]))
        rows = []
        for doc in sorted(per_doc):
            keys = set()
            for ctx, cont in per_doc[doc]:
                c, k = _pair_tokens(tok, ctx, cont)
                keys.add(tuple(c + k[:-1]))
            lens = [len(k) for k in keys]
            rows.append((len(per_doc[doc]), len(keys), sum(lens), sum(n * n for n in lens)))
        out[task.config.task] = rows
    return out


def stats_of_items(per_task: Mapping[str, Sequence[Sequence[int]]], budget: float | int | None, seed: int,
                   source: str) -> BenchStats:
    """A measured benchmark's work under ``budget``: the items of its exact seeded sample."""
    from wildmerge.evaluation.budget import sample_ids

    sizes = {t: len(rows) for t, rows in per_task.items()}
    sample = sample_ids(sizes, budget, seed) if budget is not None else {t: range(n) for t, n in sizes.items()}
    tot = [0.0] * 4
    items = 0
    for t, ids in sample.items():
        for i in ids:
            items += 1
            for j in range(4):
                tot[j] += per_task[t][i][j]
    return BenchStats(items, tot[0], tot[1], tot[2], tot[3], source + (f"; budget {budget}" if budget else ""))


class TokenCache:
    """``<results>/plan/tokens.json``: measured per-item counts, keyed by benchmark, few-shot,
    tokenizer and data (the data index records or the include_path task's definition)."""

    def __init__(self, results: str) -> None:
        self.path = Path(results) / "plan" / "tokens.json"
        try:
            self.entries: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    @staticmethod
    def key(name: str, num_fewshot: int | None, tokenizer: str, data: Any) -> str:
        return stable_hash({"benchmark": name, "num_fewshot": num_fewshot, "tokenizer": tokenizer, "data": data}, 16)

    def get(self, key: str) -> dict[str, list[list[int]]] | None:
        return self.entries.get(key)

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        self.entries[key] = value

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries))
        tmp.replace(self.path)


def tokenizer_identity(tokenizer_dir: str) -> str | None:
    """A tokenizer folder's content (its tokenizer files' sizes and names), or None if absent."""
    p = Path(tokenizer_dir)
    files = sorted(f for f in p.glob("tokenizer*")) if p.is_dir() else []
    return stable_hash([(f.name, f.stat().st_size) for f in files], 16) if files else None


def data_identity(name: str, include_path: str | None) -> Any:
    """What a benchmark's items come from: its fetched data record, or the include_path task's files."""
    rec = Path("resources/data") / f"{name}.json"
    if rec.is_file():
        return json.loads(rec.read_text())
    if include_path and Path(include_path).is_dir():
        return stable_hash(sorted((str(p.relative_to(include_path)), p.stat().st_size)
                                  for p in Path(include_path).rglob("*") if p.is_file()), 16)
    return None
