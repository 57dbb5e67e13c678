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
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from wildmerge.hub_download import HashMismatch, download_lfs, partial_size
from wildmerge.hub_lock import LockedFile, LockEntry, get_or_add
from wildmerge.provenance import file_sha256 as sha256_file

ALLOW = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]
PICKLE = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl"]
ADAPTER = ["adapter_model.safetensors", "adapter_model.bin", "adapter_config.json"]
RETRY_STATUS = (429, 500, 502, 503, 504)
MAX_TRIES = 5
REVISION_FILE = ".wildmerge_revision"
LOCK_RECORD = ".wildmerge_lock.json"
T = TypeVar("T")


class HubError(RuntimeError):
    """A hub checkpoint that cannot be fetched; the message says which config key and how to fix it."""


def _status(err: BaseException) -> int | None:
    resp = getattr(err, "response", None)
    return getattr(resp, "status_code", None)


def _explain(err: BaseException, repo_id: str, revision: str | None, key: str) -> HubError | None:
    """A clear error for a failure that retrying cannot fix (401/403/404), else None."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if type(err).__name__ == "OfflineModeIsEnabled":
        local = "" if os.path.isabs(repo_id) else f" (read as a hub id: no local directory {repo_id} exists here)"
        return HubError(
            f"{key}: {repo_id!r}{local} is not fetched yet and the hub is offline (HF_HUB_OFFLINE=1): "
            f"for a local checkpoint give an existing directory; to download it unset HF_HUB_OFFLINE"
        )
    status = _status(err)
    access = (
        f"accept its license at https://huggingface.co/{repo_id} and export HF_TOKEN with a token that has "
        f"read access (or run `hf auth login`), then rerun"
    )
    if isinstance(err, GatedRepoError) or status == 403:
        return HubError(f"{key}: hub repository {repo_id!r} is gated (HTTP {status}): {access}")
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{key}: revision {revision!r} of hub repository {repo_id!r} does not exist (HTTP 404); fix the revision")
    if isinstance(err, RepositoryNotFoundError) or status in (401, 404):
        return HubError(
            f"{key}: hub repository {repo_id!r} not found, or private/gated (HTTP {status}): fix the source, "
            f"or if it is private or gated, {access}"
        )
    return None


def _dropped(err: BaseException) -> bool:
    """A connection refused, reset or cut mid-transfer (huggingface_hub's HTTP client or the OS)."""
    if _status(err) is not None:
        return False
    lib = type(err).__module__.split(".")[0]
    return isinstance(err, (ConnectionError, TimeoutError)) or lib in ("httpx", "httpx2", "httpcore", "h11")


def _retrying(what: Callable[[], T], repo_id: str, revision: str | None, key: str, log: logging.Logger) -> T:
    """Run ``what``; back off and retry on 429/5xx and dropped connections, at most MAX_TRIES times."""
    delay = float(os.environ.get("WILDMERGE_HUB_BACKOFF_S", "2"))
    for attempt in range(1, MAX_TRIES + 1):
        try:
            return what()
        except Exception as err:  # classified below; anything else propagates unchanged
            clear = _explain(err, repo_id, revision, key)
            if clear is not None:
                raise clear from None
            transient = _status(err) in RETRY_STATUS or _dropped(err)
            if not transient or attempt == MAX_TRIES:
                raise
            log.warning("%s: %s (try %d/%d), retrying in %.1fs", repo_id, type(err).__name__, attempt, MAX_TRIES, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def resolve(repo_id: str, revision: str | None, key: str, log: logging.Logger) -> LockEntry:
    """Ask the hub for the commit of ``repo_id@revision`` and its files (sizes, LFS sha256)."""
    from huggingface_hub import HfApi

    info = _retrying(lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True), repo_id, revision, key, log)
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
            _retrying(lambda: download_lfs(entry, name, log), repo_id, entry.commit, key, log)  # noqa: B023
        except HashMismatch as err:
            raise HubError(f"{key}: {err}; the hub serves other bytes than the lock records") from None
    snapshot = Path(
        _retrying(
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
    from wildmerge.benchmark_data import DATASET_PREFIX, resolve_dataset
    from wildmerge.hub_lock import read_lock, replace
    from wildmerge.study import hub_dirname

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


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m wildmerge.hub", description="Fetch one hub checkpoint, or move the lock forward.")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help=update_lock.__doc__.splitlines()[0])
    fe = sub.add_parser("fetch", help=fetch.__doc__)
    fe.add_argument("repo_id")
    fe.add_argument("--revision")
    fe.add_argument("--out", type=Path, required=True)
    fe.add_argument("--key", default="checkpoint", help="the config key named in errors")
    for p in (up, fe):
        p.add_argument("--lock", type=Path, default=Path("results/hub.lock"), help="the study's lock file")
    up.add_argument("--hub-root", type=Path, default=Path("resources/hub"), help="fetched checkpoint folders")
    up.add_argument("--data-root", type=Path, default=Path("resources/data"), help="fetched benchmark records")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "fetch":
            fetch(args.repo_id, args.revision, args.out, args.lock, args.key)
            return 0
        changed = update_lock(args.lock, args.hub_root, args.data_root)
    except HubError as err:
        print(f"error: {err}", file=__import__("sys").stderr)
        return 2
    print(f"{len(changed)} lock entr(y/ies) moved forward" + "".join(f"\n  {e.key} -> {e.commit}" for e in changed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
