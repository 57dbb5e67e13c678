"""Provenance: content hashes of checkpoints, library versions, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = ("mergekit", "lm_eval", "torch", "transformers", "safetensors", "wildmerge")
WEIGHT_SUFFIXES = (".safetensors",)


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hex digest of the canonical JSON form of ``obj`` (ids of subsets and merges, score keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _weight_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))


def model_hash(model_dir: str | Path) -> str:
    """sha256 over the model's safetensors files (name + content), in name order.

    A hub snapshot records its revision instead when ``.wildmerge_revision`` exists.
    """
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    files = _weight_files(model_dir)
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights found")
    for p in files:
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def checkpoint_record(model_dir: str | Path, source: str, revision: str | None = None) -> dict[str, Any]:
    model_dir = Path(model_dir)
    rec: dict[str, Any] = {"source": source, "path": str(model_dir)}
    rev_file = model_dir / ".wildmerge_revision"
    if rev_file.exists():
        rec["revision"] = rev_file.read_text().strip()
    elif revision:
        rec["revision"] = revision
    lock_file = model_dir / ".wildmerge_lock.json"  # hub checkpoints: locked commit and file hashes
    if lock_file.exists():
        rec["hub"] = json.loads(lock_file.read_text())
    rec["sha256"] = model_hash(model_dir)
    return rec


def cache_dir() -> Path:
    """wildmerge's per-user cache (``$XDG_CACHE_HOME/wildmerge``, default ``~/.cache``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wildmerge"


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                out[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                out[pkg] = "not installed"
    return out


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON via a temp file + rename so a killed job never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)
