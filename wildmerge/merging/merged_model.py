"""One merged model and its manifest: made by the merge rule (for the homogeneous groups' suites
and a lost manifest) and by the job that merges and then scores a merged model
(rules/evaluate.smk: merge_evaluate), which reuses a kept one (merge.keep_models)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wildmerge.failures import clear, record, refuse_if_recorded
from wildmerge.provenance import atomic_write_json, read_json

__all__ = ["make_merged_model", "merged_model_to_score", "reusable_manifest"]


def make_merged_model(
    spec: Mapping[str, Any],
    checkpoints: Mapping[str, Any],
    info_files: Sequence[str],
    out_dir: str | Path,
    manifest_path: str | Path,
    *,
    dtype: str,
    device: str,
    options: Mapping[str, Any] | None = None,
    marker: str | Path,
    log: logging.Logger,
) -> dict[str, Any]:
    """Merge ``spec``'s members into the base with mergekit into ``out_dir`` and write its
    manifest (inputs' pre-flight records, output hash, task-vector L2 norm, versions, and the
    execution-only ``device`` and mergekit ``options``: merge.device, merge.options) to
    ``manifest_path``, last and atomically. ``checkpoints``: the base's and members' folders
    in the order of ``info_files`` (their pre-flight records). A deterministic failure (non-finite
    merged weights) is recorded in ``marker`` and not retried until an input changes."""
    from wildmerge.preflight.finite import NonFiniteWeightsError, explain_nonfinite_merge
    from wildmerge.geometry import task_vector_norm
    from wildmerge.merging.mergekit_run import NonFiniteTensorError, merge
    from wildmerge.provenance import model_hash, versions

    out_dir = Path(out_dir)
    info = [read_json(p) for p in info_files]
    # pre-flight resolved a vocabulary mismatch of a member: let mergekit reconcile the tokenizers
    tokenizer_source = next(
        (res["tokenizer_source"] for i in info[1:] if (res := i["preflight"].get("resolution"))), None
    )
    t0 = time.time()
    log.info(
        "merging %d experts %s into %s with %s %s",
        len(spec["members"]), spec["members"], checkpoints["base"], spec["mergekit_method"], spec["params"],
    )
    refuse_if_recorded(marker, [checkpoints["base"], *checkpoints["experts"], *info_files])
    try:
        merge(
            checkpoints["base"],
            list(checkpoints["experts"]),
            spec["mergekit_method"],
            spec["params"],
            out_dir,
            dtype=dtype,
            device=device,
            options=dict(options or {}),
            tokenizer_source=tokenizer_source,
        )
    except NonFiniteTensorError as err:
        cause = explain_nonfinite_merge(
            getattr(err, "tensors", []), checkpoints["base"], dict(zip(spec["members"], checkpoints["experts"]))
        )
        message = (
            f"merge {spec['merge_id']} of base '{spec['base']}' (method {spec['method']} "
            f"{spec['params']}, experts {spec['members']}): {err}; {cause}"
        )
        record(marker, message)
        raise NonFiniteWeightsError(message) from None
    clear(marker)
    t_merge = time.time() - t0
    norm = task_vector_norm(checkpoints["base"], out_dir)
    manifest = {
        **spec,
        "inputs": _inputs_record(spec, info),
        "output": {
            "path": str(out_dir),
            "sha256": model_hash(out_dir),
            "bytes": sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
        },
        "task_vector_l2": norm,
        "merge_seconds": round(t_merge, 3),
        "dtype": dtype,
        "device": device,
        "options": dict(options or {}),
        "versions": versions(),
    }
    atomic_write_json(Path(manifest_path), manifest)
    log.info("merged in %.1fs, ||merged - base||_2 = %.4f", t_merge, norm)
    return manifest


def _inputs_record(spec: Mapping[str, Any], info: Sequence[Any]) -> dict[str, Any]:
    """The manifest's ``inputs``: the base's and each member's pre-flight record."""
    return {"base": info[0], "experts": dict(zip(spec["members"], info[1:]))}


def _same_inputs(recorded: Any, current: Mapping[str, Any]) -> bool:
    """Whether a manifest's ``inputs`` are these pre-flight records: equal but for the files'
    fingerprints (re-recorded after a copy or `touch` of the same content) and for the other
    model files' hashes where only one of them has them (records from before they were kept)."""

    def comparable(a: Any, b: Any) -> tuple[Any, Any]:
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)):
            return a, b
        drop = {"fingerprint"} | ({"files"} if "files" not in a or "files" not in b else set())
        return ({k: v for k, v in a.items() if k not in drop}, {k: v for k, v in b.items() if k not in drop})

    if not isinstance(recorded, Mapping) or set(recorded) != set(current):
        return False
    experts, now = recorded.get("experts"), current["experts"]
    if not isinstance(experts, Mapping) or set(experts) != set(now):
        return False
    pairs = [(recorded["base"], current["base"])] + [(experts[e], now[e]) for e in now]
    return all(a == b for a, b in (comparable(x, y) for x, y in pairs))


def reusable_manifest(
    manifest_path: str | Path, out_dir: str | Path, spec: Mapping[str, Any], info_files: Sequence[str], dtype: str
) -> dict[str, Any] | None:
    """The manifest of a merged model already in ``out_dir`` (kept: merge.keep_models, or left
    by a killed job after its merge) that is this merge, from these inputs (pre-flight records)
    in this dtype -- or None, and the model is merged again. A folder is only ever complete
    (wildmerge.merging.mergekit_run writes ``<out_dir>.partial`` and renames it)."""
    if not Path(out_dir).is_dir():
        return None
    try:
        manifest = read_json(manifest_path)
        info = [read_json(p) for p in info_files]
    except (OSError, ValueError):
        return None
    same = (
        all(manifest.get(k) == v for k, v in spec.items())
        and manifest.get("dtype") == dtype
        and _same_inputs(manifest.get("inputs"), _inputs_record(spec, info))
        and (manifest.get("output") or {}).get("path") == str(out_dir)
    )
    return manifest if same else None


def merged_model_to_score(
    job: Mapping[str, Any], info_files: Sequence[str], out_dir: str | Path, manifest_path: str | Path,
    *, needed: bool, device: str, options: Mapping[str, Any] | None = None, marker: str | Path,
    log: logging.Logger,
) -> dict[str, Any]:
    """The manifest of the merged model a merge_evaluate job scores: a kept one whose manifest
    matches is reused; else the model is merged (``job``: spec, checkpoint folders, dtype), unless
    nothing is to be scored (not ``needed``) and its manifest is there already."""
    manifest = reusable_manifest(manifest_path, out_dir, job["spec"], info_files, job["dtype"])
    if manifest is not None:
        log.info("reusing the merged model in %s (its manifest matches)", out_dir)
        return manifest
    if needed or not Path(manifest_path).exists():
        return make_merged_model(job["spec"], job["checkpoints"], info_files, out_dir, manifest_path,
                                 dtype=job["dtype"], device=device, options=options, marker=marker, log=log)
    return read_json(manifest_path)
