"""Benchmark datasets from the hub, fetched once at a locked revision (not by each evaluation job).

``fetch_dataset`` resolves ``path[/name]@revision`` to a commit (recorded in the lock file, like
the hub checkpoints), fills the ``datasets`` cache at that commit, and writes a small record
(benchmark, dataset, commit) for provenance. ``check_cached`` lets an evaluation job running
with the hub offline fail at once, naming the benchmark, when its data was never fetched.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from wildmerge.hub.retry import HubError, retrying
from wildmerge.hub.lock import DATASET_PREFIX, LockEntry, dataset_source, get_or_add  # noqa: F401 (DATASET_PREFIX: re-export)


HF_DATASETS_URL = "hf://datasets/"
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas"}  # data_files on disk: nothing to fetch


def task_datasets(benchmark: str, include_path: str | None) -> list[tuple[str, str | None, str | None]]:
    """The hub datasets (path, name, revision) a benchmark (task, group or tag) reads, from lm-eval's YAML.

    Local datasets (``json``/``csv``/... builders with files on disk) are left out.
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = TaskManager(include_path=include_path, include_defaults=not _all_local(benchmark, include_path))
    found: dict[tuple[str, str | None, str | None], None] = {}
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = tm.task_index.get(name)
        if entry is None:
            raise HubError(f"evaluation.benchmarks: {name!r} (in {benchmark}) is not an lm-eval task, group or tag")
        if entry.kind == Kind.TAG:
            for other, e in tm.task_index.items():
                if name in e.tags:
                    visit(other)
            return
        cfg = load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else dict(entry.cfg or {})
        if entry.kind == Kind.GROUP:
            for sub in cfg.get("task", []):
                if isinstance(sub, str):
                    visit(sub)
                elif isinstance(sub, dict) and "dataset_path" in sub:
                    _add(sub)
                elif isinstance(sub, dict) and "task" in sub:
                    visit(str(sub["task"]))
            return
        _add(cfg)

    def _add(cfg: dict[str, Any]) -> None:
        path = cfg.get("dataset_path")
        kwargs = cfg.get("dataset_kwargs") or {}
        if path and path not in LOCAL_BUILDERS and not Path(str(path)).exists():
            found[(str(path), cfg.get("dataset_name"), kwargs.get("revision"))] = None
        for repo, revision, _ in hub_data_files(kwargs.get("data_files")):  # e.g. PROST's hf://datasets/...
            found[(repo, None, revision)] = None

    visit(benchmark)
    return list(found)


def hub_data_files(data_files: Any) -> list[tuple[str, str | None, str]]:
    """(repo, revision, file in the repo) of each ``hf://datasets/<org>/<name>[@rev]/<file>`` a
    task's ``dataset_kwargs.data_files`` names (a string, a list, or split -> either)."""
    values = data_files.values() if isinstance(data_files, Mapping) else [data_files]
    out = []
    for value in values:
        for url in [value] if isinstance(value, str) else list(value or []):
            if isinstance(url, str) and url.startswith(HF_DATASETS_URL):
                org, name, *rest = url[len(HF_DATASETS_URL):].split("/")
                name, _, revision = name.partition("@")
                out.append((f"{org}/{name}", revision or None, "/".join(rest)))
    return out


def _all_local(benchmark: str, include_path: str | None) -> bool:
    if not include_path:
        return False
    from lm_eval.tasks import TaskManager

    return benchmark in TaskManager(include_path=include_path, include_defaults=False).task_index


def _source(path: str, name: str | None) -> str:
    return dataset_source(path, name)


def resolve_dataset(path: str, revision: str | None, key: str, log: logging.Logger) -> str:
    from huggingface_hub import HfApi

    info = retrying(lambda: HfApi().dataset_info(path, revision=revision), path, revision, key, log, "dataset")
    return str(info.sha)


def commit_cache_dir(path: str, commit: str) -> str:
    """The datasets cache of one commit of ``path`` (under ``HF_DATASETS_CACHE``), holding only it.

    Offline, ``datasets`` ignores ``revision`` and loads the most recently written cache of a
    dataset; a cache folder per commit is what makes the locked commit the one loaded.
    """
    import datasets

    return str(Path(datasets.config.HF_DATASETS_CACHE) / "wildmerge-commits" / path.replace("/", "___") / commit)


def fetch_dataset(
    benchmark: str,
    path: str,
    name: str | None,
    revision: str | None,
    out: Path,
    lock_path: Path,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Download benchmark ``benchmark``'s dataset at its locked commit; write its record to ``out``."""
    import datasets

    log = log or logging.getLogger(__name__)
    key = f"evaluation.benchmarks: {benchmark} (dataset {path})"
    entry = get_or_add(
        lock_path, _source(path, name), revision,
        lambda: LockEntry(_source(path, name), revision, resolve_dataset(path, revision, key, log)),
    )
    cache = commit_cache_dir(path, entry.commit)
    retrying(lambda: datasets.load_dataset(path, name, revision=entry.commit, cache_dir=cache), path, entry.commit, key, log,
             "dataset")
    record = {"benchmark": benchmark, "dataset": path, "name": name, "requested": revision, "commit": entry.commit}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log.info("fetched dataset %s@%s for %s", path, entry.commit, benchmark)
    return record


def check_cached(benchmark: str, path: str, name: str | None, commit: str) -> None:
    """With the hub offline: the dataset is in the cache at ``commit``, else a clear error."""
    import datasets

    try:
        datasets.load_dataset(path, name, revision=commit, cache_dir=commit_cache_dir(path, commit))
    except Exception as err:  # noqa: BLE001 - any failure to load offline means: not fetched
        raise HubError(
            f"benchmark {benchmark}: its dataset {path}@{commit[:12]} is not in the datasets cache "
            f"(HF_DATASETS_CACHE); fetch it (again): `snakemake --forcerun resources/data/{benchmark}.json` "
            f"({type(err).__name__})"
        ) from None


def pin_datasets(records: list[dict[str, Any]]) -> None:
    """Make every ``datasets.load_dataset`` of a fetched dataset (lm-eval's tasks call it) load its
    locked commit: ``revision`` and the commit's own cache folder are filled in."""
    import datasets

    pinned = {(d["dataset"], d["name"]): d["commit"] for rec in records for d in rec["datasets"]}
    load = getattr(datasets.load_dataset, "__wrapped__", datasets.load_dataset)

    def local_file(url: str) -> str:
        """An ``hf://datasets/`` file of a fetched dataset: its copy in the hub cache, at the
        locked commit (a file builder such as ``json`` would otherwise ask the hub)."""
        from huggingface_hub import hf_hub_download

        found = hub_data_files(url)
        commit = pinned.get((found[0][0], None)) if found else None
        if commit is None:
            return url
        return hf_hub_download(found[0][0], found[0][2], repo_type="dataset", revision=commit)

    @functools.wraps(load)
    def load_locked(path: str, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        commit = pinned.get((path, name)) or pinned.get((path, None))
        if commit is not None:
            kwargs.update(revision=commit, cache_dir=commit_cache_dir(path, commit))
        files = kwargs.get("data_files")
        if hub_data_files(files):
            if isinstance(files, Mapping):
                kwargs["data_files"] = {k: local_file(v) if isinstance(v, str) else [local_file(u) for u in v]
                                        for k, v in files.items()}
            elif isinstance(files, str):
                kwargs["data_files"] = local_file(files)
            else:
                kwargs["data_files"] = [local_file(u) for u in files]
        return load(path, name, *args, **kwargs)

    datasets.load_dataset = load_locked


def data_index_name(benchmarks: list[str], locked: Mapping[str, str], root: str | Path = "resources/data") -> str:
    """Name of the index of ``benchmarks``' records (write_index): a hash of the benchmarks, of
    each record's content (or its absence) and of the datasets' commits in the lock (``locked``:
    key -> commit), so that a record removed by `wildmerge.hub.models update` gives a new name."""
    from wildmerge.provenance import stable_hash

    records: dict[str, str | None] = {}
    for b in benchmarks:
        try:
            records[b] = Path(root, f"{b}.json").read_text()
        except OSError:
            records[b] = None
    lock = {k: c for k, c in sorted(locked.items()) if k.startswith(DATASET_PREFIX)}
    return stable_hash({"benchmarks": list(benchmarks), "records": records, "lock": lock}, 12)


def write_index(record_files: list[str], out: str | Path) -> None:
    """The records of a study's benchmarks in one file: the one data input of each evaluation
    job (16 inputs per job would be ~38k DAG edges at paper scale)."""
    records = [json.loads(Path(f).read_text()) for f in record_files]
    tmp = Path(f"{out}.tmp")
    tmp.write_text(json.dumps({"records": records}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)


def use_fetched_data(record_files: list[str]) -> list[dict[str, Any]]:
    """In an evaluation job: hub offline, every fetched dataset checked in the cache and pinned to
    its locked commit (``pin_datasets``); returns the records (for the score files' provenance).

    Call before lm-eval (or ``datasets``) is imported: their offline switches are read at import.
    """
    import os

    import sys

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # forked from the warm worker (wildmerge.warm), the libraries have read these already
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    if "datasets" in sys.modules:
        sys.modules["datasets"].config.HF_DATASETS_OFFLINE = True
        sys.modules["datasets"].config.HF_HUB_OFFLINE = True
    records = []
    for f in record_files:  # a record, or an index of records (write_index)
        obj = json.loads(Path(f).read_text())
        records += obj["records"] if "records" in obj else [obj]
    for rec in records:
        for d in rec["datasets"]:
            check_cached(rec["benchmark"], d["dataset"], d["name"], d["commit"])
    if records:
        pin_datasets(records)
    return records


def check_locked(benchmark: str, dataset: str, name: str | None, revision: str | None, lock: Path) -> None:
    """Check, offline, that the locked commit of one benchmark dataset is in the datasets cache."""
    from wildmerge.hub.lock import lock_key, read_lock

    entry = read_lock(lock).get(lock_key(_source(dataset, name), revision))
    if entry is None:
        raise HubError(f"benchmark {benchmark}: dataset {dataset} is not in the lock {lock}; fetch it first")
    check_cached(benchmark, dataset, name, entry.commit)
