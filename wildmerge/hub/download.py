"""Resumable download of a hub checkpoint's LFS files, across jobs, into huggingface_hub's cache.

huggingface_hub (2.x) writes each download to a process-unique temporary file and deletes it
on failure, so a fetch job killed by SIGKILL or a SLURM time limit left nothing the next job
could use. Here each LFS file (the weights) goes to a stable partial file next to its blob,
``blobs/<sha256>.wildmerge-partial``; the next job asks the hub only for the bytes missing
(``Range: bytes=<size>-``) and checks the whole file's sha256 against the lock before the
blob and its snapshot link are put in place. A partial holding wrong bytes fails that check
and is downloaded again from the start. huggingface_hub then finds the files cached.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from wildmerge.hub.lock import LockEntry
from wildmerge.provenance import file_sha256 as sha256_file

PARTIAL = ".wildmerge-partial"


class HashMismatch(RuntimeError):
    """A freshly downloaded file whose sha256 is not the locked one."""


def _storage(repo_id: str) -> Path:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def partial_size(entry: LockEntry, name: str) -> int:
    """Bytes of ``name`` already in its partial file (0 for none, or for a non-LFS file)."""
    sha = entry.files[name].sha256
    partial = _storage(entry.source) / "blobs" / f"{sha}{PARTIAL}"
    return partial.stat().st_size if sha and partial.is_file() else 0


def _get(url: str, partial: Path, size: int, name: str) -> None:
    """Append the bytes of ``url`` missing from ``partial`` (a Range request when some are there)."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    with open(partial, "ab") as fh:
        http_get(url, fh, resume_size=fh.tell(), headers=build_hf_headers(), expected_size=size, displayed_filename=name)


def download_lfs(entry: LockEntry, name: str, log: logging.Logger) -> None:
    """Put LFS file ``name`` of ``entry`` into the hub cache at the locked commit, resuming a partial."""
    from huggingface_hub import hf_hub_url

    locked = entry.files[name]
    assert locked.sha256, name
    storage = _storage(entry.source)
    pointer = storage / "snapshots" / entry.commit / name
    if pointer.exists():
        return
    blob = storage / "blobs" / locked.sha256
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + PARTIAL)
    with open(blob.with_name(blob.name + ".wildmerge-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer per partial (the lock dies with a killed job)
        if not blob.exists():
            url = hf_hub_url(entry.source, name, revision=entry.commit)
            have = partial.stat().st_size if partial.exists() else 0
            if have > locked.size:
                partial.unlink()
                have = 0
            if have:
                log.info("%s: resuming %s at byte %d of %d (left by an earlier job)", entry.source, name, have, locked.size)
            _get(url, partial, locked.size, name)
            if sha256_file(partial) != locked.sha256:
                partial.unlink()
                if not have:
                    raise HashMismatch(f"{entry.source}@{entry.commit[:12]}: {name} as served has a sha256 that differs from the lock")
                log.warning("%s: %s resumed from an earlier job does not match the lock's sha256 (a corrupt partial "
                            "download); downloading it again from the start", entry.source, name)
                _get(url, partial, locked.size, name)
                if sha256_file(partial) != locked.sha256:
                    partial.unlink()
                    raise HashMismatch(f"{entry.source}@{entry.commit[:12]}: {name} as served has a sha256 that differs from the lock")
            os.replace(partial, blob)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(f"{pointer.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(blob, pointer.parent))
    os.replace(tmp, pointer)
