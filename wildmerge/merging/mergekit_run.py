"""Run one mergekit merge: config building, validation, atomic output, NaN check.

``merge()`` turns (base, experts, method, params) into a mergekit
``MergeConfiguration`` -- global ``parameters`` from ``params``, per-model
``weight: 1.0`` for methods that take a per-model weight -- and runs it with
mergekit's ``run_merge`` (lazy loading, safetensors, tokenizer copied from the
base).  The configuration is also written as ``mergekit_config.yml``, so
``mergekit-yaml`` can reproduce a merge of a built-in method (the wildmerge
methods additionally need ``import wildmerge.merging.methods``).

Parameters are validated against mergekit's own ``ParameterSpec``s and the ranges its
documentation gives (:data:`PARAM_RANGES`: TIES-family ``density`` in (0, 1], ...).
``available_methods()`` and ``method_parameters()`` only import
``mergekit.merge_methods`` (not the heavy ``mergekit.merge`` / transformers /
peft stack), so they are cheap enough for workflow config validation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

LOG = logging.getLogger(__name__)

__all__ = [
    "NoSpaceError",
    "NonFiniteTensorError",
    "PARAM_RANGES",
    "check_free_space",
    "check_method",
    "merged_model_bytes",
    "available_methods",
    "method_parameters",
    "build_config",
    "check_merge_options",
    "merge",
    "merge_options",
]

#: Parameters per output shard (mergekit counts elements, not bytes):
#: ~2 GB shards in bfloat16, ~4 GB in float32.
DEFAULT_OUT_SHARD_SIZE = 1_000_000_000

_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model")

#: MergeOptions fields a config may not set (merge.options), and why: each would make a merge
#: id's weights depend on something not in the id, or is wildmerge's to set. Every other field
#: is execution-only (memory, devices, threads, shard layout, logging).
REFUSED_OPTIONS = {
    "device": "use merge.device",
    "cuda": "use merge.device",
    "gpu_rich": "use merge.device (and low_cpu_memory, read_to_gpu, multi_gpu)",
    "random_seed": "wildmerge fixes it (0) so that randomized methods (DARE, DELLA) give one model per merge id",
    "allow_crimes": "pre-flight requires the base's architecture",
    "unsafe_truncate_embeddings": "it changes the merged embeddings; use merge.tokenizer_source",
    "lora_merge_cache": "adapter checkpoints are refused (pre-flight)",
    "lora_merge_dtype": "adapter checkpoints are refused (pre-flight)",
    "copy_tokenizer": "the merged model is scored with the base's tokenizer",
    "safe_serialization": "wildmerge reads safetensors only",
    "trust_remote_code": "set trust_remote_code on the checkpoint",
}


class NonFiniteTensorError(FloatingPointError):
    """A merged tensor contains NaN or Inf values."""


def _methods_module():
    import mergekit.merge_methods as merge_methods

    import wildmerge.merging.methods  # noqa: F401  (registers tsv_merge, iso_c, ...)

    return merge_methods


def available_methods() -> list[str]:
    """Names of all merge methods registered with mergekit (incl. wildmerge's)."""
    return sorted(m.spec.name for m in _methods_module().registered_methods())


def _get_method(name: str):
    merge_methods = _methods_module()
    names = available_methods()
    if name not in names:
        raise ValueError(
            f"Unknown merge method {name!r}; available mergekit methods: "
            + ", ".join(names)
        )
    return merge_methods.get(name)


def check_method(key: str, method: str, params: Mapping[str, Any] | None, sizes: Sequence[int] = ()) -> None:
    """Validate a configured method and its parameters against mergekit's own spec, and that
    it can merge ``n`` experts into the base for every ``n`` in ``sizes`` (e.g. SLERP-family
    methods take exactly two models, Model Stock at least three).

    ``key`` is the config path (``methods.<name>``) named in the error, so a bad entry
    fails the workflow at DAG build instead of in a merge job hours later.
    """
    try:
        method_obj = _get_method(method)
        _validate_params(method_obj, dict(params or {}))
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None
    for n in sorted(set(sizes)):
        try:
            method_obj.validate_inputs(["base", *(f"expert{i}" for i in range(n))], "base")
        except ValueError as error:
            raise ValueError(
                f"{key}: {method!r} cannot merge n={n} experts into the base ({error}); "
                f"use it only with subset sizes it accepts"
            ) from None


def _type_name(value_type: Any) -> str:
    return getattr(value_type, "__name__", None) or str(value_type)


def method_parameters(name: str) -> dict[str, dict[str, Any]]:
    """Parameters of a mergekit method, from its spec.

    Returns ``{param: {"type", "default", "required", "per_model", "scope",
    "description"}}``; ``per_model`` is True for parameters bound per input
    model (e.g. ``weight``, ``density``), which may still be given globally.
    """
    from mergekit.merge_methods.base import ParameterScope

    method = _get_method(name)
    return {
        p.name: {
            "type": _type_name(p.value_type),
            "default": None if p.required else p.default,
            "required": p.required,
            "per_model": p.scope != ParameterScope.SHARED,
            "scope": p.scope.value,
            "description": p.description,
        }
        for p in method.spec.parameters
    }


def _per_model_weight_scope(method):
    """Scope of the method's per-model ``weight`` parameter, or None."""
    from mergekit.merge_methods.base import ParameterScope

    for p in method.spec.parameters:
        if p.name == "weight" and p.scope != ParameterScope.SHARED:
            return p.scope
    return None


@dataclass(frozen=True)
class Range:
    """An interval of allowed values of a method parameter, and what the parameter means."""

    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    meaning: str

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        low = "(-inf" if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        high = "inf)" if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        return f"{low}, {high}"


_FRACTION_KEPT = Range(0, 1, True, False, "the fraction of each task vector kept; 0 keeps nothing, i.e. the base itself")
#: Ranges of method parameters, as mergekit's docs (docs/merge_methods.md) and code
#: (mergekit/sparsify.py) define them and as wildmerge's methods (methods.py) do; keyed by
#: (method, parameter), method None for every method declaring the parameter. ``lambda`` and
#: ``weight`` have none: a negative one negates a task vector, which is meant.
PARAM_RANGES: dict[tuple[str | None, str], Range] = {
    (None, "density"): _FRACTION_KEPT,
    (None, "beta"): Range(0, 1, False, False, "the cumulative singular-value share after which values are boosted"),
    ("breadcrumbs", "gamma"): Range(0, 1, False, False, "the fraction of largest-magnitude entries removed"),
    ("breadcrumbs_ties", "gamma"): Range(0, 1, False, False, "the fraction of largest-magnitude entries removed"),
    # and density +/- epsilon in (0, 1) where density < 1: _della_problem
    ("della", "epsilon"): Range(0, None, False, True, "the half-width of the keep probabilities around density"),
    ("della_linear", "epsilon"): Range(0, None, False, True, "the half-width of the keep probabilities around density"),
    ("sce", "select_topk"): Range(0, 1, True, False, "the fraction of highest-variance positions kept"),
    ("slerp", "t"): Range(0, 1, False, False, "the interpolation factor: 0 is the base, 1 the other model"),
    ("nearswap", "t"): Range(0, None, True, True, "the similarity threshold; t <= 0 returns the base"),
    ("karcher", "max_iter"): Range(1, None, False, True, "the number of iterations"),
    ("karcher", "tol"): Range(0, None, True, True, "the convergence tolerance"),
    ("multislerp", "eps"): Range(0, None, True, True, "a constant for numerical stability"),
}


def _range_problem(method: str, pname: str, value: Any) -> str | None:
    allowed = PARAM_RANGES.get((method, pname)) or PARAM_RANGES.get((None, pname))
    if allowed is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value in allowed:
        return None
    return (
        f"parameter `{pname}` of merge method {method!r} must be in {allowed} "
        f"({allowed.meaning}), got {value!r}"
    )


def _scalars(value: Any) -> list[Any]:
    """The plain values of a parameter setting: a value, a gradient (list) or conditional
    ``{value:, filter:}`` settings."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, Mapping):
            item = item.get("value")
        out += item if isinstance(item, list) else [item]
    return out


def _della_problem(method, params: Mapping[str, Any]) -> str | None:
    """DELLA's keep probabilities run from density - epsilon to density + epsilon: both must
    lie in (0, 1) where density < 1 (mergekit raises only when merging)."""
    if (method.spec.name, "epsilon") not in PARAM_RANGES:
        return None
    for density in _scalars(params.get("density", 1.0)):
        for eps in _scalars(params.get("epsilon", 0.15)):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (density, eps)):
                continue
            if density < 1 and not (density - eps > 0 and density + eps < 1):
                return (
                    f"parameters `density` {density!r} and `epsilon` {eps!r} of merge method {method.spec.name!r}: "
                    f"density - epsilon and density + epsilon must both be in (0, 1) (the keep "
                    f"probabilities), so epsilon < min(density, 1 - density) = {min(density, 1 - density):g}"
                )
    return None


def _validate_params(method, params: Mapping[str, Any]) -> None:
    specs = {p.name: p for p in method.spec.parameters}
    auto_weight = _per_model_weight_scope(method) is not None
    name = method.spec.name
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {', '.join(map(repr, unknown))} for merge method "
            f"{name!r}; accepted: {', '.join(sorted(specs)) or '(none)'}"
        )
    for pname, spec in specs.items():
        if pname not in params:
            if spec.required and not (pname == "weight" and auto_weight):
                raise ValueError(
                    f"Missing required parameter {pname!r} for merge method {name!r}"
                )
            continue
        value = params[pname]
        values = value if isinstance(value, list) else [value]  # list = gradient
        for v in _scalars(value):  # conditional {value:, filter:} settings too
            problem = _range_problem(name, pname, v)
            if problem:
                raise ValueError(problem)
        for item in values:
            if isinstance(item, Mapping):  # conditional {value:, filter:} settings
                continue
            try:
                valid = spec.validate(item)
            except Exception as error:
                raise ValueError(
                    f"Invalid value {item!r} for parameter {pname!r} of merge method "
                    f"{name!r} (expects {_type_name(spec.value_type)}): {error}"
                ) from None
            problem = _range_problem(name, pname, valid)  # a value given as a string, "1.5"
            if problem:
                raise ValueError(problem)
    problem = _della_problem(method, params)
    if problem:
        raise ValueError(problem)


def _model_path(path: str | Path) -> str:
    """Local paths become absolute; anything else (a hub id) is kept verbatim."""
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else str(path)


def build_config(
    base: str | Path,
    experts: Sequence[str | Path],
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    dtype: str = "float32",
    tokenizer_source: str | None = None,
) -> dict[str, Any]:
    """Validate the inputs and return the mergekit YAML configuration as a dict.

    ``tokenizer_source`` ("base" or "union") lets mergekit reconcile experts whose
    vocabulary differs from the base's (resized embeddings); None keeps the base's.
    """
    method_obj = _get_method(method)
    params = dict(params or {})
    _validate_params(method_obj, params)
    if not experts:
        raise ValueError("At least one expert model is required")

    base_ref = _model_path(base)
    expert_refs = [_model_path(e) for e in experts]
    try:
        method_obj.validate_inputs([base_ref, *expert_refs], base_ref)
    except ValueError as error:
        raise ValueError(f"Invalid inputs for merge method {method!r}: {error}") from None

    from mergekit.merge_methods.base import ParameterScope

    weight_scope = _per_model_weight_scope(method_obj)
    per_model_weight = "weight" not in params and weight_scope is not None
    # A per-*input* weight (e.g. linear) also binds the base, which mergekit
    # adds to the inputs anyway; list it explicitly so it gets a weight too.
    refs = expert_refs
    if per_model_weight and weight_scope == ParameterScope.INPUT:
        refs = [base_ref, *expert_refs]
    config: dict[str, Any] = {
        "merge_method": method,
        "base_model": base_ref,
        "models": [
            {"model": ref, **({"parameters": {"weight": 1.0}} if per_model_weight else {})}
            for ref in refs
        ],
        "dtype": dtype,
    }
    if params:
        config["parameters"] = params
    if tokenizer_source:
        config["tokenizer_source"] = tokenizer_source
    return config


def merge_options(device: str, options: Mapping[str, Any] | None = None, key: str = "merge.options"):
    """mergekit's ``MergeOptions`` of a merge: wildmerge's settings, ``device`` (merge.device) and
    ``options`` over them (merge.options, which :func:`check_merge_options` checked). An unknown
    option or a value of the wrong type is a ValueError naming ``<key>.<option>``."""
    import difflib

    from mergekit.options import MergeOptions
    from pydantic import ValidationError

    options = dict(options or {})
    fields = sorted(MergeOptions.model_fields)
    for name in sorted(options):
        if name not in fields:
            allowed = [f for f in fields if f not in REFUSED_OPTIONS]
            close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            raise ValueError(f"{key}.{name}: not a mergekit option{f' (did you mean `{close[0]}`?)' if close else ''}; "
                             f"allowed: {', '.join(allowed)}")
    settings: dict[str, Any] = {
        "device": device,
        "lazy_unpickle": True,
        "safe_serialization": True,
        "out_shard_size": DEFAULT_OUT_SHARD_SIZE,
        "copy_tokenizer": True,
        "write_model_card": True,
        "random_seed": 0,  # reproducible DARE-style random sparsification
        "quiet": True,
        **options,
    }
    try:
        return MergeOptions(**settings)
    except ValidationError as err:
        problems = [f"{key}.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in err.errors()]
        raise ValueError("; ".join(problems)) from None


def check_merge_options(options: Mapping[str, Any] | None, device: str, key: str = "merge.options") -> None:
    """merge.options at DAG build: no refused option (REFUSED_OPTIONS), each a MergeOptions field
    of the right type (merge_options)."""
    for name in sorted(options or {}):
        if name in REFUSED_OPTIONS:
            raise ValueError(f"{key}.{name}: not allowed: {REFUSED_OPTIONS[name]}")
    merge_options(device, options, key)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """MergeOptions.num_threads for the merge only (mergekit's run_merge does not apply it;
    its command line does), then the job's own thread count again."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _copy_named_chat_templates(base: str, out: Path) -> None:
    """The base's named chat templates (``additional_chat_templates/``, evaluation.apply_chat_template:
    "<name>"), which mergekit's tokenizer copy leaves out."""
    src = Path(base) / "additional_chat_templates"
    if src.is_dir() and (out / "tokenizer_config.json").exists() and not (out / src.name).exists():
        shutil.copytree(src, out / src.name)


def _tensor_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin"))


def _drop_head_the_base_ties(directory: Path, base: Path) -> bool:
    """mergekit writes ``lm_head.weight`` when an expert saved one, even where the base (and so
    the merged config) ties the head to ``model.embed_tokens.weight``: transformers would ignore
    it on load, so it is removed to keep the base's tied layout.  True if one was removed."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    head = "lm_head.weight"
    try:
        tied = json.loads((Path(base) / "config.json").read_text()).get("tie_word_embeddings")
    except (OSError, ValueError):
        return False
    if not tied:
        return False
    for file in Path(base).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            if head in handle.keys():
                return False
    removed = False
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            if head not in handle.keys():
                continue
            metadata = handle.metadata()
            kept = {n: handle.get_tensor(n) for n in handle.keys() if n != head}
        save_file(kept, str(file), metadata=metadata)
        removed = True
    index = directory / "model.safetensors.index.json"
    if removed and index.exists():
        data = json.loads(index.read_text())
        data.get("weight_map", {}).pop(head, None)
        index.write_text(json.dumps(data, indent=2))
    return removed


def _check_finite(directory: Path) -> int:
    """Raise NonFiniteTensorError naming every tensor with NaN/Inf; return the tensor count."""
    import torch
    from safetensors import safe_open

    bad: list[str] = []
    count = 0

    def check(name: str, tensor: torch.Tensor) -> None:
        nonlocal count
        count += 1
        if not tensor.is_floating_point() or tensor.numel() == 0:
            return
        # min and max are NaN/Inf whenever any element is: one cheap reduction per tensor
        lo, hi = torch.aminmax(tensor)
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            bad.append(f"{name} ({nan} NaN, {inf} Inf of {tensor.numel()})")

    for file in _tensor_files(directory):
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    check(name, handle.get_tensor(name))
        else:
            for name, tensor in torch.load(file, map_location="cpu", weights_only=True).items():
                check(name, tensor)
    if bad:
        err = NonFiniteTensorError(
            f"Merged model has non-finite values in {len(bad)} tensor(s): " + "; ".join(bad)
        )
        err.tensors = bad  # type: ignore[attr-defined]  # which inputs to re-check
        raise err
    if count == 0:
        raise RuntimeError(f"Merge wrote no tensors to {directory}")
    return count


#: Bytes per element of mergekit's output dtypes (``merge.dtype``), and of safetensors' codes.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "U64": 8,
                      "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class NoSpaceError(OSError):
    """The folder a merged model goes to lacks room for it (checked before merging)."""


def merged_model_bytes(base: str | Path, dtype: str) -> int:
    """Bytes a merge into ``base`` writes: each tensor of the base's safetensors (read from
    their headers) in ``dtype`` (floating tensors; others as saved), plus the base's other
    files that are copied along (config, tokenizer)."""
    base = Path(base)
    if not base.is_dir():
        return 0
    total = 0
    for f in sorted(base.glob("*.safetensors")):
        with open(f, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        for name, t in header.items():
            if name != "__metadata__":
                code = str(t["dtype"])
                size = DTYPE_BYTES[dtype] if code.startswith(("F", "BF")) else _SAFETENSORS_BYTES.get(code, 8)
                total += math.prod(t["shape"]) * size
    others = [p for p in base.iterdir() if p.is_file() and not p.name.endswith((".safetensors", *_PICKLE_SUFFIXES))]
    return total + sum(p.stat().st_size for p in others)


def check_free_space(base: str | Path, out_dir: str | Path, dtype: str, key: str = "merge.models_dir") -> None:
    """Raise :class:`NoSpaceError` (naming the folder, the config ``key``, the bytes needed and
    free) when the file system of ``out_dir`` lacks room for the merge of ``base`` in ``dtype``."""
    folder = Path(out_dir).absolute().parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    needed = merged_model_bytes(base, dtype)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise NoSpaceError(
            f"{key}: {folder} has {free:,} bytes free but the merged model needs {needed:,} "
            f"(the base's tensors in {dtype}); nothing was merged or written: free space there "
            f"or set {key} to a folder with room"
        )


class PartialMergeError(RuntimeError):
    """mergekit truncated or skipped an input tensor: the merge would be partial."""


#: Fragments of mergekit log warnings that mean an input was truncated or dropped.
_PARTIAL_MARKERS = ("vocabulary truncation", "skipping", "shape mismatch", "size mismatch")


class _PartialMergeGuard(logging.Handler):
    """Collects mergekit warnings that announce a partial merge."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return
        if any(m in text.lower() for m in _PARTIAL_MARKERS):
            self.messages.append(text)


def _has_tokenizer(path: str) -> bool:
    p = Path(path)
    return not p.is_dir() or any((p / f).exists() for f in _TOKENIZER_FILES)


def merge(
    base: str | Path,
    experts: list[str | Path],
    method: str,
    params: dict,
    out_dir: Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    options: dict | None = None,
    tokenizer_source: str | None = None,
) -> dict:
    """Merge ``experts`` into ``base`` with mergekit method ``method``.

    ``params`` become the config's global ``parameters`` (``lambda``,
    ``normalize``, ``density``, ``beta``, ...); methods with a per-model
    ``weight`` get ``weight: 1.0`` per expert unless ``params`` sets one.
    ``dtype`` is mergekit's ``dtype`` (load dtype, compute dtype of the
    built-in methods, output dtype; wildmerge methods compute in float32).
    ``options``: execution-only ``mergekit.options.MergeOptions`` fields (merge.options,
    checked by :func:`merge_options`).

    The merge is written to ``<out_dir>.partial`` and renamed to ``out_dir``
    (replacing an existing one) only after every tensor was checked finite.
    Raises ValueError for unknown methods/parameters, NoSpaceError (before
    writing anything) when the output's file system lacks room for the merged
    model, NonFiniteTensorError if a merged tensor has NaN/Inf.  Returns a
    provenance dict.
    """
    started = time.perf_counter()
    config = build_config(base, experts, method, params, dtype=dtype, tokenizer_source=tokenizer_source)
    config_yaml = yaml.safe_dump(config, sort_keys=False)

    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge

    mergekit_options = merge_options(device, options)
    if mergekit_options.copy_tokenizer and not _has_tokenizer(config["base_model"]):
        LOG.warning("Base model %s has no tokenizer; none is copied", config["base_model"])
        mergekit_options = mergekit_options.model_copy(update={"copy_tokenizer": False})

    merge_config = MergeConfiguration.model_validate(config)

    out_dir = Path(out_dir)
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    check_free_space(base, out_dir, dtype)  # before mergekit writes anything
    partial.parent.mkdir(parents=True, exist_ok=True)
    guard = _PartialMergeGuard()
    root = logging.getLogger()
    root.addHandler(guard)
    try:
        try:
            with _torch_threads(mergekit_options.num_threads):
                run_merge(merge_config, str(partial), mergekit_options, config_source=config_yaml)
        finally:
            root.removeHandler(guard)
        if guard.messages:
            raise PartialMergeError(
                f"mergekit merged only part of the inputs into {out_dir} (nothing written): "
                + "; ".join(guard.messages[:5])
                + ". Fix: run pre-flight and set `merge.tokenizer_source` (base/union) for "
                "resized vocabularies; experts whose other tensors differ in shape cannot be merged."
            )
        (partial / "mergekit_config.yml").write_text(config_yaml, encoding="utf-8")
        _copy_named_chat_templates(config["base_model"], partial)
        if _drop_head_the_base_ties(partial, Path(base)):
            LOG.info("dropped lm_head.weight from the merge: the base ties it to the embeddings")
        n_tensors = _check_finite(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)

    from importlib.metadata import version

    experts_out = [m["model"] for m in config["models"] if m["model"] != config["base_model"]]
    return {
        "out_dir": str(out_dir),
        "method": method,
        "base": config["base_model"],
        "experts": experts_out,
        "n_experts": len(experts_out),
        "parameters": dict(params or {}),
        "dtype": dtype,
        "device": device,
        "options": dict(options or {}),
        "config": config,
        "n_tensors": n_tensors,
        "seconds": round(time.perf_counter() - started, 3),
        "mergekit_version": version("mergekit"),
    }
