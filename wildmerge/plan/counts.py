"""What a study's jobs are and what they handle, counted from the config alone (DAG time).

* :func:`study_jobs`: every job of the study, one :class:`PlannedJob` each, from the same
  :class:`~wildmerge.study.plan.Study` the Snakefile builds (``snakemake -n`` lists the same
  jobs per rule: ``tests/test_plan.py``).
* :class:`Layout`: a base's tensor layout (hidden and intermediate size, layers, heads, vocabulary,
  tying), from its ``config.json`` when it is on disk, else from :data:`PAPER_LAYOUTS` (the paper's
  four bases), else (a demo checkpoint) from the demo's own model config.
* :func:`svds`: the SVDs a merge method computes per merge, with their shapes
  (``wildmerge/merging/methods.py``: TSV-M n + 2 per matrix, Iso-C one, Subspace Boosting one
  per boosted matrix; the other methods none).
* :func:`checkpoint_bytes`: a checkpoint's download size: the lock file's file list, else the
  hub's listing (online only), else its ``config.json`` parameter count, else the paper's table.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from wildmerge.study.model import Checkpoint
from wildmerge.study.plan import Study

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2}

#: the matrices of a decoder layer that the SVD methods decompose (every 2-D tensor of a
#: Llama/Qwen3 layer; Subspace Boosting's targets: wildmerge.merging.methods.SUBSPACE_BOOST_TARGETS)
LAYER_MATRICES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Layout:
    """A decoder-only transformer's tensor layout (the config.json keys of Llama/Qwen)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qk_norm: bool = False  # Qwen3's q_norm/k_norm
    dtype: str = "bfloat16"  # the checkpoint's torch_dtype
    source: str = ""

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], source: str) -> Layout:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return cls(
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab=int(cfg["vocab_size"]),
            tied=bool(cfg.get("tie_word_embeddings", False)),
            qk_norm=cfg.get("model_type") == "qwen3",
            dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "float32"),
            source=source,
        )

    def matrices(self) -> list[tuple[str, int, int]]:
        """(name, rows, cols) of one layer's matrices (torch's (out, in) shapes)."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        shapes = {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
                  "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}
        return [(n, *shapes[n]) for n in LAYER_MATRICES]

    @property
    def layer_params(self) -> int:
        """Parameters of the layers' matrices (what a token's forward pass multiplies)."""
        return self.layers * sum(r * c for _, r, c in self.matrices())

    @property
    def params(self) -> int:
        """Every parameter saved in the checkpoint (tied: one embedding matrix)."""
        norms = self.layers * (2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)) + self.hidden
        return self.layer_params + self.vocab * self.hidden * (1 if self.tied else 2) + norms

    def nbytes(self, dtype: str | None = None) -> int:
        return self.params * DTYPE_BYTES.get(dtype or self.dtype, 4)

    def forward_flops(self, context: float = 0.0) -> float:
        """FLOPs of one token's forward pass: 2 per matrix weight (the LM head over the whole
        vocabulary included) plus causal attention over ``context`` earlier tokens."""
        attn = 4 * self.layers * self.heads * self.head_dim * context / 2
        return 2.0 * self.layer_params + self.head_flops + attn

    @property
    def head_flops(self) -> float:
        """FLOPs of one row of vocabulary logits (the LM head on one position)."""
        return 2.0 * self.vocab * self.hidden


# The paper's four bases (their hub config.json; bf16 weights). Checked by tests/test_plan.py
# against the parameter counts their model cards state (3.21 B, 8.03 B, 4.02 B, 8.19 B).
_LLAMA = dict(model_type="llama", num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
              torch_dtype="bfloat16")
_QWEN = dict(model_type="qwen3", num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
             torch_dtype="bfloat16", num_hidden_layers=36)
PAPER_LAYOUTS: dict[str, dict[str, Any]] = {
    "meta-llama/Llama-3.2-3B-Instruct": {**_LLAMA, "hidden_size": 3072, "intermediate_size": 8192,
                                         "num_hidden_layers": 28, "num_attention_heads": 24, "tie_word_embeddings": True},
    "meta-llama/Llama-3.1-8B-Instruct": {**_LLAMA, "hidden_size": 4096, "intermediate_size": 14336,
                                         "num_hidden_layers": 32, "tie_word_embeddings": False},
    "Qwen/Qwen3-4B": {**_QWEN, "hidden_size": 2560, "intermediate_size": 9728, "tie_word_embeddings": True},
    "Qwen/Qwen3-8B": {**_QWEN, "hidden_size": 4096, "intermediate_size": 12288, "tie_word_embeddings": False},
}
PAPER_LAYOUT_SOURCE = "shipped table (the hub config.json of {}; bf16)"


def local_config(ck: Checkpoint) -> dict[str, Any] | None:
    """The checkpoint's config.json when its folder is on disk (fetched, built or local)."""
    path = Path(ck.path) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def layout(ck: Checkpoint, like: Layout | None = None) -> Layout | None:
    """A checkpoint's layout: its config.json, the paper's table, the demo's model config, or
    (an expert not on disk) its base's layout ``like``."""
    cfg = local_config(ck)
    if cfg is not None and "hidden_size" in cfg:
        return Layout.from_config(cfg, f"{ck.path}/config.json")
    if ck.source in PAPER_LAYOUTS:
        return Layout.from_config(PAPER_LAYOUTS[ck.source], PAPER_LAYOUT_SOURCE.format(ck.source))
    if ck.kind == "demo":
        from wildmerge.demo.train import MODEL_CONFIG
        from wildmerge.demo.skills import VOCAB

        return Layout.from_config({**MODEL_CONFIG, "vocab_size": len(VOCAB), "model_type": "llama",
                                   "torch_dtype": "float32"}, "wildmerge.demo.train.MODEL_CONFIG")
    if like is not None:
        return Layout(**{**like.__dict__, "source": f"assumed: its base's layout ({like.source})"})
    return None


# ---- SVDs ------------------------------------------------------------------------------


def svd_flops(rows: int, cols: int) -> float:
    """FLOPs of a thin SVD with singular vectors (R-SVD: 6 m n^2 + 20 n^3, m >= n; Golub & Van
    Loan, Matrix Computations, 4th ed., Fig. 8.6.1)."""
    m, n = max(rows, cols), min(rows, cols)
    return 6.0 * m * n * n + 20.0 * n**3


def svds(method: str, n: int, lay: Layout) -> list[tuple[int, int, int]]:
    """(count, rows, cols) of the SVDs one merge of ``n`` experts computes (float32), from
    wildmerge.merging.methods: TSV-M per matrix n SVDs of the task vectors and 2 of the
    concatenated bases (Procrustes: rows x T*k and T*k x cols, k = max(1, r // n)); Iso-C one of
    the summed task vector; TA/TIES + Subspace Boosting one of the merged update per boosted
    matrix; the others none."""
    out: list[tuple[int, int, int]] = []
    for _, r, c in lay.matrices():
        if method == "tsv_merge":
            tk = max(1, min(r, c) // n) * n
            out += [(n * lay.layers, r, c), (lay.layers, r, tk), (lay.layers, tk, c)]
        elif method in ("iso_c", "ta_subspace_boosting", "ties_subspace_boosting"):
            out.append((lay.layers, r, c))
    merged: dict[tuple[int, int], int] = {}
    for k, r, c in out:
        merged[(r, c)] = merged.get((r, c), 0) + k
    return [(k, r, c) for (r, c), k in merged.items()]


#: elementwise passes over the float32 task vectors per expert (memory traffic of a merge
#: beside reading and SVDs): an assumption, calibrated away (the "tensor" efficiency)
METHOD_PASSES = {"ties": 4, "ties_subspace_boosting": 4, "model_stock": 3, "dare_ties": 4, "della": 4}


# ---- bytes ------------------------------------------------------------------------------


@dataclass
class CheckpointSize:
    nbytes: int
    source: str


def lock_entries(study: Study) -> dict[str, Any]:
    from wildmerge.hub.lock import read_lock

    try:
        return read_lock(Path(study.results) / "hub.lock")
    except ValueError:
        return {}


def hub_listing(ck: Checkpoint) -> int | None:
    """Bytes of the files a fetch downloads, from the hub's file listing (None offline)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    try:
        from huggingface_hub import HfApi

        from wildmerge.hub.models import ALLOW
        import fnmatch

        info = HfApi().model_info(ck.source, revision=ck.revision, files_metadata=True, timeout=10)
        return sum(int(s.size or 0) for s in info.siblings or []
                   if any(fnmatch.fnmatch(Path(s.rfilename).name, p) for p in ALLOW))
    except Exception:  # noqa: BLE001 - offline, gated, unknown: the next source is used
        return None


@dataclass
class SizeResolver:
    """A checkpoint's size on disk, from the best source at hand (see the module doc)."""

    study: Study
    online: bool = False
    lock: dict[str, Any] = field(default_factory=dict)
    _offline_seen: bool = False

    def __post_init__(self) -> None:
        self.lock = lock_entries(self.study)

    def size(self, ck: Checkpoint, like: Layout | None) -> CheckpointSize:
        if ck.kind == "hub":
            from wildmerge.hub.lock import lock_key
            from wildmerge.hub.models import wanted_files

            entry = self.lock.get(lock_key(ck.source, ck.revision))
            if entry is not None:
                try:
                    names = wanted_files(entry, ck.key)
                except Exception:  # noqa: BLE001 - a refused repository: all its files
                    names = list(entry.files)
                return CheckpointSize(sum(entry.files[n].size for n in names), "lock file")
            if self.online and not self._offline_seen:
                got = hub_listing(ck)
                if got is not None:
                    return CheckpointSize(got, "hub file listing")
                self._offline_seen = True  # one failed listing: offline, the rest from tables
        if ck.kind == "local":
            files = [p for p in Path(ck.path).glob("*.safetensors")]
            if files:
                return CheckpointSize(sum(p.stat().st_size for p in files), "files on disk")
        lay = layout(ck, like)
        if lay is None:
            return CheckpointSize(0, "unknown (no config.json, not in the paper's table)")
        return CheckpointSize(lay.nbytes(), f"parameter count x {lay.dtype} ({lay.source})")


# ---- jobs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedJob:
    """One job of the study, as the rules make it."""

    rule: str
    base: str  # "" for study-wide jobs (aggregation, benchmark data)
    model: str = ""  # model id ("base", "expert-x", "m-..."), a hub folder, a benchmark
    n: int = 0  # experts merged
    method: str = ""  # mergekit method of a merge
    benchmarks: tuple[str, ...] = ()  # benchmarks scored
    members: tuple[str, ...] = ()  # the experts merged (model ids)
    suite: str = ""  # evaluate_suite: the homogeneous group whose suite is scored

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(rule, base, model, suite): what names the job's benchmark file (wildmerge.plan.calibrate)."""
        return (self.rule, self.base, self.model, self.suite)


#: the stages a rule belongs to, in pipeline order (the plan's per-stage shares)
STAGE_OF = {
    "demo_base": "demo", "demo_expert": "demo", "demo_tasks": "demo",
    "fetch_hub_model": "fetch", "fetch_benchmark_data": "fetch", "benchmark_data_index": "fetch",
    "preflight": "preflight", "geometry": "geometry",
    "merge": "merge", "merge_evaluate": "merge+evaluate", "evaluate": "evaluate", "evaluate_suite": "evaluate",
    "collect": "aggregate", "tables": "aggregate", "item_tables": "aggregate", "figures": "aggregate",
    "ablations": "aggregate", "homogeneous": "aggregate",
}
#: rules whose jobs hold a GPU (profiles/slurm: gpu: 1)
GPU_RULES = ("merge", "merge_evaluate", "evaluate", "evaluate_suite")


def study_jobs(study: Study) -> list[PlannedJob]:
    """Every job the study's DAG has from scratch (``all`` left out: it runs nothing)."""
    jobs: list[PlannedJob] = []
    cks = study.all_checkpoints()
    demo = sorted({c.source for c in cks if c.kind == "demo"})
    if "demo:base" in demo:
        jobs.append(PlannedJob("demo_base", "", "base"))
    jobs += [PlannedJob("demo_expert", "", s.removeprefix("demo:")) for s in demo if s != "demo:base"]
    include = study.config["evaluation"].get("include_path")
    if include == "demo":
        jobs.append(PlannedJob("demo_tasks", ""))
    seen: set[str] = set()
    for b in study.bases.values():
        for c in [b.model, *b.experts.values(), *b.group_experts.values()]:
            if c.kind == "hub" and c.path not in seen:
                seen.add(c.path)
                jobs.append(PlannedJob("fetch_hub_model", b.name, c.path))
    data = sorted(set(study.benchmark_names).union(*study.suites.values()))
    if include != "demo":
        jobs += [PlannedJob("fetch_benchmark_data", "", d) for d in data]
        jobs.append(PlannedJob("benchmark_data_index", ""))
    benches = tuple(sorted(study.benchmark_names))
    for b in study.bases.values():
        jobs.append(PlannedJob("preflight", b.name, "base"))
        jobs += [PlannedJob("preflight", b.name, f"expert-{e}") for e in [*sorted(b.experts), *sorted(b.group_experts)]]
        jobs.append(PlannedJob("geometry", b.name, "", n=len(b.experts)))
    for base, model in study.evaluated_models():
        if model.startswith("m-"):
            m = study.merge(base, model)
            jobs.append(PlannedJob("merge_evaluate", base, model, m.subset.n, m.mergekit_method, benches,
                                   tuple(f"expert-{e}" for e in m.subset.members)))
        else:
            jobs.append(PlannedJob("evaluate", base, model, 0 if model == "base" else 1, "", benches))
    for b in study.bases.values():
        for m in b.homogeneous_merges.values():
            jobs.append(PlannedJob("merge", b.name, m.merge_id, m.subset.n, m.mergekit_method, (),
                                   tuple(f"expert-{e}" for e in m.subset.members)))
    for e in study.suite_evals:
        jobs.append(PlannedJob("evaluate_suite", e.base, e.model_id, 0, "", tuple(study.suites[(e.base, e.suite)]),
                               suite=e.suite))
    jobs += [PlannedJob(r, "") for r in ("collect", "tables", "figures")]
    if study.per_item:
        jobs.append(PlannedJob("item_tables", ""))
    jobs += [PlannedJob("ablations", "", a) for a in study.ablations]
    if study.suite_evals:
        jobs.append(PlannedJob("homogeneous", ""))
    return jobs


def job_counts(jobs: Iterable[PlannedJob]) -> dict[str, dict[str, int]]:
    """rule -> base ("" study-wide) -> jobs."""
    out: dict[str, dict[str, int]] = {}
    for j in jobs:
        out.setdefault(j.rule, {}).setdefault(j.base, 0)
        out[j.rule][j.base] += 1
    return out
