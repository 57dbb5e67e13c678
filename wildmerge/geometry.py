"""Task-vector geometry, streamed tensor by tensor from safetensors checkpoints.

Nothing here holds a whole model in memory: tensors are read one name at a time through
``safetensors.safe_open`` (memory-mapped), large tensors in row blocks of at most
``chunk_elems`` elements, across shards (``model.safetensors.index.json`` or any set of
``*.safetensors`` files in the directory). Differences are taken in float32 per block and
summed across blocks in float64.

* :func:`task_vector_norm` -- ||theta_model - theta_base||_2.
* :func:`pairwise_cosine` -- cosine similarity of the task vectors of several models with
  respect to one base (a Gram matrix accumulated in one pass), overall and per layer.

Only floating-point tensors present in the base are used. A tensor that a model lacks, or
has with another shape (e.g. a resized vocabulary), is skipped for that model with a
warning -- for the cosine it counts as an unchanged (zero) task-vector block of that model.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

log = logging.getLogger(__name__)

INDEX_NAME = "model.safetensors.index.json"
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FN", "F8_E5M2FNUZ", "F8_E4M3FNUZ"}
DEFAULT_CHUNK_ELEMS = 1 << 25  # 32 Mi elements = 128 MiB per model in float32
OTHER_LAYER = "other"
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)(?:\.|$)")


def layer_of(name: str) -> str:
    """Layer index of a tensor name (``model.layers.7.mlp.up_proj.weight`` -> ``"7"``) or "other"."""
    m = _LAYER_RE.search(name)
    return m.group(1) if m else OTHER_LAYER


def _layer_sort_key(layer: str) -> tuple[int, int]:
    return (0, int(layer)) if layer.isdigit() else (1, 0)


# --------------------------------------------------------------------------- checkpoint access


@dataclass
class WeightStore:
    """Tensor name -> shard file of one safetensors checkpoint directory (handles opened lazily)."""

    path: Path
    files: dict[str, Path]  # tensor name -> shard
    _handles: dict[Path, object] = field(default_factory=dict, repr=False)
    _stack: ExitStack = field(default_factory=ExitStack, repr=False)

    @classmethod
    def open(cls, directory: str | Path) -> "WeightStore":
        directory = Path(directory)
        if directory.is_file() and directory.suffix == ".safetensors":
            shards = [directory]
            directory = directory.parent
            index = None
        else:
            index = directory / INDEX_NAME
            shards = sorted(directory.glob("*.safetensors"))
        files: dict[str, Path] = {}
        if index is not None and index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            for name, shard in weight_map.items():
                shard_path = directory / shard
                if not shard_path.is_file():
                    raise FileNotFoundError(f"{index}: shard {shard} of tensor {name} not found")
                files[name] = shard_path
        else:
            if not shards:
                raise FileNotFoundError(f"{directory}: no *.safetensors weights found")
            for shard in shards:
                with safe_open(str(shard), framework="pt") as handle:
                    for name in handle.keys():
                        if name in files:
                            raise ValueError(f"{directory}: tensor {name} is in both {files[name].name} and {shard.name}")
                        files[name] = shard
        return cls(directory, files)

    def _handle(self, name: str):
        shard = self.files[name]
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._stack.enter_context(safe_open(str(shard), framework="pt"))
            self._handles[shard] = handle
        return handle

    def info(self, name: str) -> tuple[str, tuple[int, ...]]:
        """(safetensors dtype string, shape) without reading the data."""
        sl = self._handle(name).get_slice(name)
        return sl.get_dtype(), tuple(int(s) for s in sl.get_shape())

    def block(self, name: str, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        """Rows ``start:stop`` of tensor ``name`` (whole tensor if None), as float32."""
        handle = self._handle(name)
        if start is None:
            t = handle.get_tensor(name)
        else:
            t = handle.get_slice(name)[start:stop]
        return t.to(torch.float32)

    def close(self) -> None:
        self._stack.close()
        self._handles.clear()

    def __enter__(self) -> "WeightStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _row_blocks(shape: tuple[int, ...], chunk_elems: int) -> Iterator[tuple[int | None, int | None]]:
    numel = int(np.prod(shape)) if shape else 1
    if not shape or numel <= chunk_elems:
        yield None, None
        return
    row = max(1, numel // shape[0])
    step = max(1, chunk_elems // row)
    for start in range(0, shape[0], step):
        yield start, min(start + step, shape[0])


def _ordered_names(base: WeightStore) -> list[str]:
    """Base tensor names grouped by shard (sequential reads), then by name."""
    return sorted(base.files, key=lambda n: (str(base.files[n]), n))


def _usable(base: WeightStore, model: WeightStore, name: str, base_info, label: str, warned: list[str]) -> bool:
    if name not in model.files:
        warned.append(f"{label}: lacks {name}")
        return False
    dtype, shape = model.info(name)
    if dtype not in FLOAT_DTYPES:
        warned.append(f"{label}: {name} is {dtype} in the model but floating in the base")
        return False
    if shape != base_info[1]:
        warned.append(f"{label}: {name} has shape {shape}, base {base_info[1]}")
        return False
    return True


def _report_skips(warned: list[str], what: str) -> None:
    if warned:
        log.warning("%s: %d tensor(s) skipped: %s%s", what, len(warned), "; ".join(warned[:10]),
                    " ..." if len(warned) > 10 else "")


# --------------------------------------------------------------------------- norm


def task_vector_norm(base_dir: str | Path, model_dir: str | Path, *, chunk_elems: int = DEFAULT_CHUNK_ELEMS) -> float:
    """||theta_model - theta_base||_2 over the floating tensors both checkpoints share.

    Streams one tensor (row block) at a time; float32 differences, float64 sum.
    """
    total = 0.0
    used = 0
    warned: list[str] = []
    with WeightStore.open(base_dir) as base, WeightStore.open(model_dir) as model:
        for name in _ordered_names(base):
            binfo = base.info(name)
            if binfo[0] not in FLOAT_DTYPES:
                continue
            if not _usable(base, model, name, binfo, str(model_dir), warned):
                continue
            for start, stop in _row_blocks(binfo[1], chunk_elems):
                d = torch.sub(model.block(name, start, stop), base.block(name, start, stop))
                if d.numel():  # one temporary: square in place, float32 pairwise sum, float64 total
                    total += float(d.square_().sum())
                del d
            used += 1
        extra = sorted(set(model.files) - set(base.files))
        if extra:
            warned.append(f"{model_dir}: {len(extra)} tensor(s) not in the base, e.g. {extra[0]}")
    _report_skips(warned, "task_vector_norm")
    if used == 0:
        raise ValueError(f"{model_dir} shares no floating tensor with base {base_dir}")
    return float(np.sqrt(total))


# --------------------------------------------------------------------------- cosine


def pairwise_cosine(
    base_dir: str | Path,
    model_dirs: Mapping[str, str | Path],
    *,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    with_norms: bool = False,
) -> tuple[pd.DataFrame, ...]:
    """Cosine similarity between the task vectors (model - base) of every pair of models.

    One streaming pass over the base's tensor names: for each tensor (row block) the block of
    the base and of every model is read, the task-vector blocks are stacked and their Gram
    matrix is added (float64) to the tensor's layer; the total is the sum over layers.
    Peak memory is about (models + 1) x ``chunk_elems`` float32 values.

    Returns ``(cos, layers)``:

    * ``cos`` -- square DataFrame indexed and columned by the model names (input order);
      NaN where a task vector is zero.
    * ``layers`` -- long form, one row per layer and unordered pair (``model_a`` before
      ``model_b`` in input order): ``layer`` ("0", "1", ... or "other" for tensors outside
      ``*.layers.<i>.*``), ``model_a``, ``model_b``, ``cosine``, ``dot``, ``norm_a``, ``norm_b``,
      ``n_tensors`` (base tensors of that layer).
    * with ``with_norms``, also ``norms`` -- indexed by model: ``total`` (||model - base||_2)
      and one column per layer, from the diagonal of the same Gram matrices.
    """
    names = list(model_dirs)
    if len(names) < 1:
        raise ValueError("pairwise_cosine needs at least one model")
    m = len(names)
    grams: dict[str, np.ndarray] = {}
    tensor_counts: dict[str, int] = {}
    warned: list[str] = []
    with ExitStack() as stack:
        base = stack.enter_context(WeightStore.open(base_dir))
        models = [stack.enter_context(WeightStore.open(model_dirs[n])) for n in names]
        for name in _ordered_names(base):
            binfo = base.info(name)
            if binfo[0] not in FLOAT_DTYPES:
                continue
            idx = [i for i, ck in enumerate(models) if _usable(base, ck, name, binfo, names[i], warned)]
            layer = layer_of(name)
            tensor_counts[layer] = tensor_counts.get(layer, 0) + 1
            gram = grams.setdefault(layer, np.zeros((m, m), dtype=np.float64))
            if not idx:
                continue
            sel = np.ix_(idx, idx)
            for start, stop in _row_blocks(binfo[1], chunk_elems):
                b = base.block(name, start, stop).reshape(-1)
                if b.numel() == 0:
                    continue
                d = torch.empty((len(idx), b.numel()), dtype=torch.float32)
                for r, i in enumerate(idx):
                    torch.sub(models[i].block(name, start, stop).reshape(-1), b, out=d[r])
                del b
                gram[sel] += (d @ d.T).double().numpy()
                del d
    _report_skips(warned, "pairwise_cosine")
    if not grams:
        raise ValueError(f"base {base_dir} has no floating tensors")

    def cosine(g: np.ndarray) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
        denom = np.outer(norms, norms)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(denom > 0, g / np.where(denom > 0, denom, 1.0), np.nan)
        return np.clip(c, -1.0, 1.0)

    total = sum(grams.values())
    cos = pd.DataFrame(cosine(total), index=pd.Index(names, name="model"), columns=pd.Index(names, name="model"))

    rows = []
    for layer in sorted(grams, key=_layer_sort_key):
        g = grams[layer]
        c = cosine(g)
        norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
        for i in range(m):
            for j in range(i + 1, m):
                rows.append(
                    {
                        "layer": layer,
                        "model_a": names[i],
                        "model_b": names[j],
                        "cosine": float(c[i, j]),
                        "dot": float(g[i, j]),
                        "norm_a": float(norms[i]),
                        "norm_b": float(norms[j]),
                        "n_tensors": tensor_counts[layer],
                    }
                )
    layers = pd.DataFrame(
        rows, columns=["layer", "model_a", "model_b", "cosine", "dot", "norm_a", "norm_b", "n_tensors"]
    )
    if not with_norms:
        return cos, layers
    ordered = sorted(grams, key=_layer_sort_key)
    norms = pd.DataFrame(
        {layer: np.sqrt(np.clip(np.diag(grams[layer]), 0.0, None)) for layer in ordered},
        index=pd.Index(names, name="model"),
    )
    norms.insert(0, "total", np.sqrt(np.clip(np.diag(total), 0.0, None)))
    return cos, layers, norms


def layer_sign_counts(layers: pd.DataFrame, *, tol: float = 1e-6) -> pd.DataFrame:
    """Per pair: how many numbered layers have cosine > tol, < -tol, or |cos| <= tol / NaN
    (paper Figs. 23-26). Excludes the "other" (non-layer) group."""
    num = layers[layers["layer"].astype(str) != OTHER_LAYER]
    c = num["cosine"]
    out = num.assign(positive=(c > tol).astype(int), negative=(c < -tol).astype(int),
                     neutral=(~((c > tol) | (c < -tol))).astype(int))
    return (out.groupby(["model_a", "model_b"], sort=False)[["positive", "negative", "neutral"]]
            .sum().reset_index())
