"""Overhead of wildmerge's merge step over bare ``mergekit-yaml`` and over plain file I/O.

Builds (seeded, no training; reused when already there) a Llama-architecture base
checkpoint of >= 1 GB -- by default TinyLlama-shaped: hidden 2048, intermediate 5632,
12 layers, 32 heads / 4 KV heads, vocab 32000, bfloat16, ~1.3 GB -- plus two "experts"
(base + small seeded perturbations), each a complete HF model directory (config.json,
model.safetensors, a word-level tokenizer with exactly ``vocab`` tokens).

Then, for Table 1's methods with the parameters of the repo's ``config.yaml`` (ta, ties,
model_stock), it times in the same run, interleaved, with a warm page cache (all inputs
read once first), the median of ``--repeats`` repetitions of:

* ``wildmerge``  -- ``wildmerge.merging.mergekit_run.merge(...)`` in a fresh Python process (startup +
  imports + config building/validation + mergekit's ``run_merge`` + the finiteness check
  of every output tensor + the atomic rename), as the Snakemake merge job runs it;
* ``job``        -- the whole merge job: ``scripts/merge.py`` run in a fresh process with a
  stand-in ``snakemake`` object (adds ``task_vector_norm``, ``model_hash`` and the manifest);
  by default for the first method only (``--job-methods``): its extra cost is method-independent;
* ``mergekit``   -- the bare ``mergekit-yaml`` CLI on the very YAML wildmerge builds
  (``wildmerge.merging.mergekit_run.build_config``) with the options wildmerge passes to ``run_merge``;
* ``floor``      -- the I/O floor: read every input safetensors file fully and write one
  output-sized file (``shutil.copyfile`` of the base weights).

Goals: wildmerge / mergekit <= 1.05 (wildmerge adds no real cost to mergekit) and
wildmerge / floor <= 1.5 for task_arithmetic, ties and model_stock (a merge is I/O bound).
Every process gets ``--threads`` torch threads (default 1, as the merge rule's
``threads: 1``). Only ratios from one run are comparable; nothing is asserted. Wall-clock
and CPU (user+sys) medians are printed; the merged weights of wildmerge, the job and
mergekit-yaml are checked identical (sha256). The default run takes ~15 min on 2 cores,
most of it TIES (mergekit argsorts every tensor); ``--methods ta,model_stock`` ~4 min.

    .venv/bin/python perf/merge_overhead.py [--repeats 3] [--layers 12] [--hidden 2048]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
TABLE1 = ("ta", "ties", "model_stock")
#: Used when config.yaml lacks a method (the paper's Table 1 settings).
FALLBACK_METHODS: dict[str, dict[str, Any]] = {
    "ta": {"method": "task_arithmetic", "params": {"lambda": 1.0, "normalize": True}},
    "ties": {"method": "ties", "params": {"lambda": 0.1, "density": 0.1, "normalize": True}},
    "model_stock": {"method": "model_stock", "params": {}},
}
VARIANTS = ("wildmerge", "job", "mergekit", "floor")
GOAL_VS_MERGEKIT = 1.05
GOAL_VS_FLOOR = 1.5

WM_MERGE = """
import json, sys
a = json.loads(sys.argv[1])
import torch
torch.set_num_threads(a["threads"])
from wildmerge.merging.mergekit_run import merge
merge(a["base"], a["experts"], a["method"], a["params"], a["out"], dtype=a["dtype"], device="cpu")
"""

WM_JOB = """
import json, runpy, sys
from types import SimpleNamespace as NS


class Params(NS):  # a rule param the script reads but the benchmark does not set is None
    def __getattr__(self, name):
        return None


a = json.loads(sys.argv[1])
smk = NS(
    input=NS(base=a["base"], experts=a["experts"], info=a["info"]),
    output=NS(model=a["out"], manifest=a["manifest"]),
    params=Params(spec=a["spec"], dtype=a["dtype"], device="cpu", lazy_unpickle=False),
    log=[a["log"]], rule="merge", threads=a["threads"], wildcards=NS(base="bench", merge=a["spec"]["merge_id"]),
)
runpy.run_path(a["script"], init_globals={"snakemake": smk}, run_name="__main__")
"""


# --------------------------------------------------------------------------- checkpoints


def llama_config(args: argparse.Namespace) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype=args.dtype,
    )


def tensor_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    h, i, v = args.hidden, args.intermediate, args.vocab
    kv = args.hidden // args.heads * args.kv_heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for layer in range(args.layers):
        p = f"model.layers.{layer}."
        shapes |= {
            p + "self_attn.q_proj.weight": (h, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
        }
    shapes |= {"model.norm.weight": (h,), "lm_head.weight": (v, h)}
    return shapes


def save_tokenizer(out_dir: Path, vocab_size: int) -> None:
    """A word-level tokenizer with exactly ``vocab_size`` tokens (matches the embeddings)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    fast.save_pretrained(str(out_dir))


def build_models(work: Path, args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """Write base + experts under ``work`` (skipped when a complete set is already there)."""
    import torch
    from safetensors.torch import save_file

    from wildmerge.provenance import atomic_write_json, checkpoint_record

    base = work / "base"
    experts = [work / f"expert{k}" for k in range(1, args.experts + 1)]
    marker = work / "models.done"
    if marker.exists():
        return base, experts
    dtype = getattr(torch, args.dtype)
    shapes = tensor_shapes(args)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    base_sd: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            base_sd[name] = torch.ones(shape, dtype=dtype)
        else:
            base_sd[name] = (torch.randn(shape, generator=gen) * 0.02).to(dtype)
    for k, model_dir in enumerate([base, *experts]):
        if model_dir.exists():
            shutil.rmtree(model_dir)
        model_dir.mkdir(parents=True)
        if k == 0:
            sd = base_sd
        else:  # expert = base + a small dense perturbation (a "fine-tune" delta)
            sd = {n: (t.float() + torch.randn(t.shape, generator=gen) * args.delta).to(dtype) for n, t in base_sd.items()}
        save_file(sd, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
        del sd
        llama_config(args).save_pretrained(str(model_dir))
        save_tokenizer(model_dir, args.vocab)
        atomic_write_json(model_dir.with_suffix(".json"), checkpoint_record(model_dir, f"bench:{model_dir.name}"))
    marker.write_text(json.dumps(vars(args), default=str))
    print(f"built base + {len(experts)} experts in {time.perf_counter() - t0:.0f} s under {work}")
    return base, experts


def write_info(work: Path, base: Path, models: list[Path]) -> list[Path]:
    """The checkpoint records the merge job reads (``rule preflight``'s JSONs).

    Content hash from the build; the pre-flight report is made fresh with
    ``wildmerge.preflight.checks.check_checkpoint`` when that exists (cheap: headers only).
    """
    from wildmerge.provenance import atomic_write_json, read_json

    try:
        from wildmerge.preflight.checks import check_checkpoint
    except ImportError:
        check_checkpoint = None
    paths = []
    for model_dir in models:
        rec = read_json(model_dir.with_suffix(".json"))
        rec["name"] = model_dir.name
        if check_checkpoint is not None:
            rec["preflight"] = check_checkpoint(base, model_dir, name=model_dir.name, base_name="bench")
        else:
            rec["preflight"] = {"status": "ok", "warnings": [], "resolution": None}
        path = work / "info" / f"{model_dir.name}.json"
        atomic_write_json(path, rec)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- measurements


def read_fully(path: Path, buf: bytearray) -> int:
    n = 0
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while got := f.readinto(view):
            n += got
    return n


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_checked(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with open(log, "w") as out:
        proc = subprocess.run(cmd, check=False, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}), log {log}:\n{tail}")


def method_specs(names: list[str]) -> dict[str, dict[str, Any]]:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text()) or {}
    methods = cfg.get("methods") or {}
    out = {}
    for name in names:
        spec = methods.get(name) or FALLBACK_METHODS.get(name)
        if spec is None:
            raise SystemExit(f"unknown method {name!r} (config.yaml methods: {', '.join(methods)})")
        out[name] = {"method": spec["method"], "params": dict(spec.get("params") or {})}
    return out


def print_table(methods: dict[str, dict[str, Any]], med: dict[tuple[str, str], float], missed: list[str] | None) -> None:
    cols = ["method", "mergekit method", "wildmerge", "job", "mergekit", "floor",
            "wm/mergekit", "job/mergekit", "wm/floor"]
    rows = []

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.3f}" if a is not None and b else "-"

    for key, spec in methods.items():
        wm, job, mk, fl = (med.get((key, v)) for v in VARIANTS)
        rows.append([key, spec["method"], *("-" if x is None else f"{x:.2f}" for x in (wm, job, mk, fl)),
                     ratio(wm, mk), ratio(job, mk), ratio(wm, fl)])
        if missed is not None and wm is not None:
            if mk and wm / mk > GOAL_VS_MERGEKIT:
                missed.append(f"{key}: wildmerge/mergekit {wm / mk:.3f} > {GOAL_VS_MERGEKIT}")
            if fl and wm / fl > GOAL_VS_FLOOR:
                missed.append(f"{key}: wildmerge/floor {wm / fl:.3f} > {GOAL_VS_FLOOR}")
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(x.rjust(w) for x, w in zip(r, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--repeats", type=int, default=3, help="repetitions per variant; the median is reported (default 3)")
    ap.add_argument("--methods", default=",".join(TABLE1), help="config.yaml method keys (default ta,ties,model_stock)")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, help="default: 5632 for hidden 2048, else ~8/3 hidden")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--experts", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                    help="checkpoint dtype and mergekit dtype (default bfloat16, as config/paper.yaml)")
    ap.add_argument("--delta", type=float, default=0.002, help="std of the experts' perturbation (base std 0.02)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1 = the merge rule's)")
    ap.add_argument("--job-methods", default=TABLE1[0],
                    help="methods that also get the whole-job row (its extra cost does not depend on the "
                         "method; default ta; 'all' for every method)")
    ap.add_argument("--skip", default="", help="comma-separated variants to skip, of " + ",".join(VARIANTS))
    ap.add_argument("--workdir", type=Path, help="checkpoints and outputs (default: a reusable dir in $TMPDIR)")
    args = ap.parse_args()
    if args.intermediate is None:
        args.intermediate = 5632 if args.hidden == 2048 else round(args.hidden * 8 / 3 / 256) * 256
    skip = {s for s in args.skip.split(",") if s}
    if skip - set(VARIANTS):
        ap.error(f"--skip: unknown variant(s) {sorted(skip - set(VARIANTS))}")
    variants = [v for v in VARIANTS if v not in skip]
    job_methods = {m for m in args.job_methods.split(",") if m}

    tag = (f"h{args.hidden}-i{args.intermediate}-l{args.layers}-a{args.heads}-{args.kv_heads}-v{args.vocab}"
           f"-e{args.experts}-{args.dtype}-s{args.seed}")
    work = args.workdir or Path(tempfile.gettempdir()) / f"wildmerge-bench-merge-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    base, experts = build_models(work, args)
    inputs = [f for d in (base, *experts) for f in weight_files(d)]
    model_bytes = sum(f.stat().st_size for f in weight_files(base))
    n_params = sum(math.prod(s) for s in tensor_shapes(args).values())

    from wildmerge.merging.mergekit_run import DEFAULT_OUT_SHARD_SIZE, build_config

    methods = method_specs([m for m in args.methods.split(",") if m])
    configs: dict[str, Path] = {}
    for key, spec in methods.items():
        cfg = build_config(base, experts, spec["method"], spec["params"], dtype=args.dtype)
        configs[key] = work / f"{key}.yml"
        configs[key].write_text(yaml.safe_dump(cfg, sort_keys=False))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    info = write_info(work, base, [base, *experts])
    out_root = work / "out"
    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir()
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    buf = bytearray(16 << 20)

    def clean() -> None:
        for p in out_root.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def runner(key: str, variant: str) -> Callable[[], None]:
        spec = methods[key]
        out = out_root / f"{key}-{variant}"
        log = logs / f"{key}-{variant}.log"
        common = {"base": str(base), "experts": [str(e) for e in experts], "method": spec["method"],
                  "params": spec["params"], "out": str(out), "dtype": args.dtype, "threads": args.threads}
        if variant == "wildmerge":
            cmd = [sys.executable, "-c", WM_MERGE, json.dumps(common)]
            return lambda: run_checked(cmd, env, log)
        if variant == "job":
            members = [e.name for e in experts]
            job = {**common, "info": [str(p) for p in info],
                   "manifest": str(out_root / f"{key}-manifest.json"), "log": str(logs / f"{key}-job-smk.log"),
                   "script": str(REPO / "scripts" / "merge.py"),
                   "spec": {"base": "bench", "merge_id": f"m-{key}-bench", "method": key,
                            "mergekit_method": spec["method"], "params": spec["params"], "n": len(members),
                            "subset_id": "bench", "members": members}}
            cmd = [sys.executable, "-c", WM_JOB, json.dumps(job)]
            return lambda: run_checked(cmd, env, log)
        if variant == "mergekit":
            cmd = [str(VENV_BIN / "mergekit-yaml"), str(configs[key]), str(out),
                   "--device", "cpu", "--lazy-unpickle", "--safe-serialization", "--copy-tokenizer",
                   "--write-model-card", "--out-shard-size", str(DEFAULT_OUT_SHARD_SIZE),
                   "--random-seed", "0", "--quiet"]
            return lambda: run_checked(cmd, env, log)

        def floor() -> None:  # read every input, write one output-sized file
            for f in inputs[len(weight_files(base)):]:
                read_fully(f, buf)
            out.mkdir()
            for f in weight_files(base):
                shutil.copyfile(f, out / f.name)

        return floor

    # warm the page cache: read every input weight file once
    t0 = time.perf_counter()
    for f in inputs:
        read_fully(f, buf)
    warm = time.perf_counter() - t0
    print(f"model: {n_params / 1e6:.0f} M params, {args.dtype}, {model_bytes / 1e9:.2f} GB per checkpoint, "
          f"{len(experts)} experts, {(1 + len(experts)) * model_bytes / 1e9:.2f} GB read per merge "
          f"(warm-up read {warm:.1f} s); {args.threads} torch thread(s); median of {args.repeats}")
    print(f"work dir: {work}", flush=True)

    from wildmerge.provenance import model_hash

    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    digests: dict[tuple[str, str], str] = {}
    started = time.perf_counter()
    for rep in range(args.repeats):
        for key in methods:
            order = variants[rep % len(variants):] + variants[: rep % len(variants)]  # rotate to spread drift
            for variant in order:
                if variant == "job" and not (job_methods == {"all"} or key in job_methods):
                    continue
                fn = runner(key, variant)
                os.sync()  # no dirty pages of the previous run are flushed during this one
                c = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF)
                t = time.perf_counter()
                try:
                    fn()
                except Exception as error:  # noqa: BLE001 -- report and fail the benchmark
                    print(f"FAILED {key}/{variant} (repeat {rep + 1}): {error}", file=sys.stderr)
                    return 1
                dt = time.perf_counter() - t
                dc = cpu_seconds(resource.RUSAGE_CHILDREN) + cpu_seconds(resource.RUSAGE_SELF) - c
                times.setdefault((key, variant), []).append(dt)
                cpu.setdefault((key, variant), []).append(dc)
                out = out_root / f"{key}-{variant}"
                if rep == 0 and variant != "floor":  # same merge? (untimed)
                    digests[(key, variant)] = model_hash(out)
                clean()
                print(f"  repeat {rep + 1} {key:12s} {variant:9s} {dt:7.2f} s wall {dc:7.2f} s cpu", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s\n")

    missed: list[str] = []
    for label, data in (("wall-clock", times), ("CPU (user+sys)", cpu)):
        med = {k: statistics.median(v) for k, v in data.items()}
        print(f"{label} seconds, median of {args.repeats}:")
        print_table(methods, med, missed if data is times else None)
        print()
    print(f"model size {model_bytes / 1e9:.2f} GB per checkpoint ({n_params / 1e6:.0f} M params, {args.dtype}); "
          f"goals: wildmerge/mergekit <= {GOAL_VS_MERGEKIT}, wildmerge/floor <= {GOAL_VS_FLOOR} (wall-clock)")
    print("all runs, wall s: " + json.dumps({f"{k}/{v}": [round(x, 2) for x in t] for (k, v), t in times.items()}))
    for key in methods:
        found = {v: d for (k, v), d in digests.items() if k == key}
        if len(set(found.values())) > 1:
            print(f"WARNING {key}: merged weights differ between variants: {found}")
        elif len(found) > 1:
            print(f"{key}: {', '.join(found)} wrote identical weights (sha256 {next(iter(found.values()))[:12]})")
    for m in missed:
        print(f"goal not met: {m}")
    shutil.rmtree(out_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
