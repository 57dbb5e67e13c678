"""Download hub checkpoints as jobs (never at DAG-build time), pinned by the hub lock file.

The first fetch of ``source@revision`` resolves it to a commit and its file list (sizes, LFS
sha256) and records that in the lock file; every later fetch downloads exactly that commit.
Downloads go into huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``, so a shared
cluster cache is reused); the weights (LFS files) through ``hub_download``, so a download cut
within a job, or a job killed mid-file, continues where it stopped. The job's output folder
only links to the cached files, verified against the lock.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path

from wildmerge.hub.download import HashMismatch, download_lfs, partial_size
from wildmerge.hub.ids import hub_dirname
from wildmerge.hub.lock import LockedFile, LockEntry, get_or_add
from wildmerge.hub.retry import HubError, retrying
from wildmerge.provenance import file_sha256 as sha256_file

ALLOW = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]
PICKLE = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"]
ADAPTER = ["adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"]
REVISION_FILE = ".wildmerge_revision"
LOCK_RECORD = ".wildmerge_lock.json"


def resolve(repo_id: str, revision: str | None, key: str, log: logging.Logger) -> LockEntry:
    """Ask the hub for the commit of ``repo_id@revision`` and its files (sizes, LFS sha256)."""
    from huggingface_hub import HfApi

    info = retrying(lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True), repo_id, revision, key, log)
    files = {
        s.rfilename: LockedFile(size=int(s.size or 0), sha256=(s.lfs.sha256 if s.lfs else None))
        for s in (info.siblings or [])
    }
    return LockEntry(repo_id, revision, str(info.sha), files)


def wanted_files(entry: LockEntry, key: str) -> list[str]:
    """The files to download; refuses pickle-only and adapter-only repositories from the file list."""
    names = list(entry.files)
    has = lambda pats: [n for n in names if any(fnmatch.fnmatch(Path(n).name, p) for p in pats)]  # noqa: E731
    weights = [n for n in has(["*.safetensors"]) if Path(n).name != "adapter_model.safetensors"]
    if not weights and has(ADAPTER):
        raise HubError(
            f"{key}: {entry.source}@{entry.commit[:12]} holds only a LoRA/PEFT adapter ({', '.join(has(ADAPTER))}); "
            f"adapters are refused - merge it into its base first (peft merge_and_unload) and point the key at that"
        )
    if not weights:
        found = ", ".join(has(PICKLE)) or "no weight files"
        raise HubError(
            f"{key}: {entry.source}@{entry.commit[:12]} has no .safetensors weights ({found}); pickle checkpoints "
            f"are refused - convert it to safetensors or pick another checkpoint"
        )
    adapter = set(has(ADAPTER))
    return [n for n in names if any(fnmatch.fnmatch(Path(n).name, p) for p in ALLOW) and n not in adapter]


def check_disk(entry: LockEntry, files: list[str], target: Path, key: str) -> None:
    """Refuse to start when the cache's file system cannot hold the files still missing."""
    from huggingface_hub import try_to_load_from_cache

    cached = lambda f: isinstance(try_to_load_from_cache(entry.source, f, revision=entry.commit), str)  # noqa: E731
    need = sum(entry.files[f].size - partial_size(entry, f) for f in files if not cached(f))
    probe = target
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise HubError(
            f"{key}: {entry.source} needs {need / 1e9:.2f} GB but {probe} has {free / 1e9:.2f} GB free; "
            f"free space or point HF_HUB_CACHE (or HF_HOME) at a larger scratch file system"
        )


def verify(snapshot: Path, entry: LockEntry, files: list[str]) -> None:
    """Every file present with its locked size and (LFS files) sha256, else an error naming it."""
    for name in files:
        path, locked = snapshot / name, entry.files[name]
        if not path.is_file():
            raise HubError(f"{entry.source}@{entry.commit[:12]}: {name} missing after download")
        size = path.stat().st_size
        if size != locked.size:
            raise HubError(f"{entry.source}@{entry.commit[:12]}: {name} is {size} bytes, the lock says {locked.size}")
        if locked.sha256 and sha256_file(path) != locked.sha256:
            raise HubError(f"{entry.source}@{entry.commit[:12]}: {name} sha256 differs from the lock; delete it from the hub cache and rerun")


def fetch(
    repo_id: str,
    revision: str | None,
    out_dir: Path,
    lock_path: Path,
    key: str = "checkpoint",
    log: logging.Logger | None = None,
) -> LockEntry:
    """Fetch ``repo_id`` at its locked commit into the hub cache and link it into ``out_dir``."""
    from huggingface_hub import constants, snapshot_download

    log = log or logging.getLogger(__name__)
    entry = get_or_add(lock_path, repo_id, revision, lambda: resolve(repo_id, revision, key, log))
    files = wanted_files(entry, key)
    check_disk(entry, files, Path(constants.HF_HUB_CACHE), key)
    for name in (f for f in files if entry.files[f].sha256):  # weights: resumable across jobs
        try:
            retrying(lambda: download_lfs(entry, name, log), repo_id, entry.commit, key, log)  # noqa: B023
        except HashMismatch as err:
            raise HubError(f"{key}: {err}; the hub serves other bytes than the lock records") from None
    snapshot = Path(
        retrying(
            lambda: snapshot_download(repo_id, revision=entry.commit, allow_patterns=files),
            repo_id, entry.commit, key, log,
        )
    )
    verify(snapshot, entry, files)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for name in files:
        link = partial / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((snapshot / name).resolve())
    (partial / REVISION_FILE).write_text(entry.commit + "\n")
    record = {"source": entry.source, "requested": entry.requested, "commit": entry.commit,
              "files": {f: vars(entry.files[f]) for f in files}}
    (partial / LOCK_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
    log.info("fetched %s@%s (%d files) into %s", repo_id, entry.commit, len(files), out_dir)
    return entry


def update_lock(lock_path: Path, hub_root: Path, data_root: Path | None = None,
                log: logging.Logger | None = None) -> list[LockEntry]:
    """Move every locked checkpoint and benchmark dataset forward to its revision's current commit.

    The fetched folders of the checkpoints (and the records of the benchmarks) whose commit
    changed are removed, so the next run fetches them again and reruns exactly their
    downstream jobs (Snakemake sees newer inputs).
    """
    from wildmerge.hub.datasets import DATASET_PREFIX, resolve_dataset
    from wildmerge.hub.lock import read_lock, replace

    log = log or logging.getLogger(__name__)
    fresh = []
    for e in read_lock(lock_path).values():
        if e.source.startswith(DATASET_PREFIX):
            path = e.source[len(DATASET_PREFIX):].split(":")[0]
            fresh.append(LockEntry(e.source, e.requested, resolve_dataset(path, e.requested, e.key, log)))
        else:
            fresh.append(resolve(e.source, e.requested, e.key, log))
    changed = replace(lock_path, fresh)
    for entry in changed:
        log.warning("lock moved: %s -> %s", entry.key, entry.commit)
        if not entry.source.startswith(DATASET_PREFIX):
            shutil.rmtree(hub_root / hub_dirname(entry.source, entry.requested), ignore_errors=True)
            continue
        path = entry.source[len(DATASET_PREFIX):].split(":")[0]
        for rec_file in sorted(data_root.glob("*.json")) if data_root and data_root.is_dir() else []:
            rec = json.loads(rec_file.read_text())
            if any(d.get("dataset") == path for d in rec.get("datasets", [rec])):  # a job record or one dataset
                rec_file.unlink()
    return changed
