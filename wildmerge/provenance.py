"""Provenance: content hashes of checkpoints, library versions, atomic writes."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

TRACKED_PACKAGES = ("mergekit", "lm_eval", "torch", "transformers", "safetensors", "wildmerge")
WEIGHT_SUFFIXES = (".safetensors",)
#: Besides the weights, the files of a checkpoint's folder that change what it computes: config
#: (and a sharded checkpoint's index), custom code, tokenizer and chat template.
MODEL_FILE_PATTERNS = ("*.json", "*.py", "tokenizer*", "*.model", "*.tiktoken", "vocab.*", "merges.txt", "*.jinja")


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


def _model_file(name: str) -> bool:
    """Whether a file of a checkpoint's folder is part of what it computes: its weights, config,
    custom code or tokenizer (not a README, a log or wildmerge's own dot files)."""
    return not name.startswith(".") and (
        name.endswith(WEIGHT_SUFFIXES) or any(fnmatch.fnmatchcase(name, pat) for pat in MODEL_FILE_PATTERNS)
    )


def model_files(model_dir: str | Path) -> list[Path]:
    """The files of a checkpoint's folder that make the model (weights, config, custom code,
    tokenizer), in name order."""
    return sorted(p for p in Path(model_dir).iterdir() if _model_file(p.name) and p.is_file())


def fingerprint(model_dir: str | Path) -> dict[str, list[int]]:
    """A cheap stand-in for the content of a checkpoint's folder: size, mtime_ns and inode of
    each of its :func:`model_files` (stat calls only). Equal fingerprints: the same files, unless
    rewritten in place within the file system's timestamp resolution; a changed one (a copy, a
    `touch`, new weights) is hashed again (:func:`checkpoint_content`)."""
    out = {}
    for p in model_files(model_dir):
        st = p.stat()
        out[p.name] = [st.st_size, st.st_mtime_ns, st.st_ino]
    return out


def checkpoint_content(model_dir: str | Path) -> dict[str, Any]:
    """What a checkpoint's folder holds: ``sha256`` of its weights (:func:`model_hash`) and
    ``files``, the sha256 of each other model file (config, custom code, tokenizer)."""
    files = {p.name: file_sha256(p) for p in model_files(model_dir) if not p.name.endswith(WEIGHT_SUFFIXES)}
    return {"sha256": model_hash(model_dir), "files": files}


def same_content(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether two checkpoint records hold the same content: the weights' sha256, and the other
    model files' hashes where both record them (records from before they were kept have none)."""
    if recorded.get("sha256") != now.get("sha256"):
        return False
    a, b = recorded.get("files"), now.get("files")
    return a is None or b is None or a == b


def checkpoint_record(model_dir: str | Path, source: str, revision: str | None = None) -> dict[str, Any]:
    """A checkpoint's record (its pre-flight's output): source, path, hub revision and lock, its
    content (:func:`checkpoint_content`) and the :func:`fingerprint` of the files hashed, taken
    before hashing (a file changed meanwhile shows as a changed fingerprint next time)."""
    model_dir = Path(model_dir)
    rec: dict[str, Any] = {"source": source, "path": str(model_dir), "fingerprint": fingerprint(model_dir)}
    rev_file = model_dir / ".wildmerge_revision"
    if rev_file.exists():
        rec["revision"] = rev_file.read_text().strip()
    elif revision:
        rec["revision"] = revision
    lock_file = model_dir / ".wildmerge_lock.json"  # hub checkpoints: locked commit and file hashes
    if lock_file.exists():
        rec["hub"] = json.loads(lock_file.read_text())
    rec.update(checkpoint_content(model_dir))
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
