"""Benchmark datasets from the hub, fetched once at a locked revision (not by each evaluation job).

``fetch_dataset`` resolves ``path[/name]@revision`` to a commit (recorded in the lock file, like
the hub checkpoints), fills the ``datasets`` cache at that commit, and writes a small record
(benchmark, dataset, commit) for provenance. ``check_cached`` lets an evaluation job running
with the hub offline fail at once, naming the benchmark, when its data was never fetched.

A task may instead name files of a dataset repository by URL in its ``dataset_kwargs.data_files``
(``hf://datasets/<repo>[@revision]/<file>``, read by a local builder such as ``json``: PROST).
Such a file is locked as its repository is, downloaded into the hub cache at the locked commit,
and at evaluation its URL is replaced by the cached file (``pin_datasets``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple
from urllib.parse import unquote

from wildmerge.hub.retry import HubError, retrying
from wildmerge.hub.lock import DATASET_PREFIX, LockEntry, dataset_source, get_or_add  # noqa: F401 (DATASET_PREFIX: re-export)


LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow", "pandas"}  # their data_files: on disk or by URL
HUB_FILE_URL = "hf://datasets/"  # a data_files entry read from a dataset repository on the hub


class HubData(NamedTuple):
    """One piece of hub data a benchmark reads: the dataset ``path`` (config ``name``) loaded by
    ``datasets.load_dataset``, or, with ``file``, one file of the dataset repository ``path``."""

    path: str
    name: str | None
    revision: str | None
    file: str | None = None


def hub_file(url: str) -> HubData | None:
    """The repository file a ``hf://datasets/<owner>/<repo>[@revision]/<file>`` URL names (None:
    another kind of path)."""
    if not url.startswith(HUB_FILE_URL):
        return None
    parts = url[len(HUB_FILE_URL):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise HubError(f"data_files: {url!r} is not hf://datasets/<owner>/<repo>[@revision]/<file>")
    owner, repo, file = parts
    repo, _, revision = repo.partition("@")
    return HubData(f"{owner}/{repo}", None, unquote(revision) or None, file)


def data_file_urls(data_files: Any) -> list[str]:
    """Every path of a ``data_files`` argument (a path, a list, or split -> path(s))."""
    if isinstance(data_files, Mapping):
        return [u for v in data_files.values() for u in data_file_urls(v)]
    if isinstance(data_files, (list, tuple)):
        return [str(u) for u in data_files]
    return [] if data_files is None else [str(data_files)]


#: lm-eval's kinds of index entry (its ``Kind`` enum's names) -> the names wildmerge uses
INDEX_KINDS = {"TASK": "task", "PY_TASK": "python_task", "GROUP": "group", "TAG": "tag"}


class IndexEntry(NamedTuple):
    """One name of lm-eval's task index, as :func:`task_datasets` reads it: ``kind`` (``task``,
    ``python_task``, ``group`` or ``tag``), the YAML defining it (None: ``cfg`` holds it; a tag
    has neither) and, for a tag, its tasks."""

    kind: str
    yaml_path: str | None
    cfg: Mapping[str, Any] | None = None
    members: tuple[str, ...] = ()


def task_manager_index(include_path: str | None, benchmark: str) -> dict[str, IndexEntry]:
    """lm-eval's own task index as :class:`IndexEntry` rows (building it parses every built-in
    task YAML: seconds; a job can pass a cached one to :func:`task_datasets` instead)."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=include_path, include_defaults=not _all_local(benchmark, include_path))
    out = {}
    for name, e in tm.task_index.items():
        kind = INDEX_KINDS.get(e.kind.name, e.kind.name.lower())
        # a tag entry's `tags` are its tasks (what lm-eval loads for it); a task's, its tags
        out[name] = IndexEntry(kind, str(e.yaml_path) if e.yaml_path else None, e.cfg,
                               tuple(sorted(e.tags)) if kind == "tag" else ())
    return out


def task_datasets(benchmark: str, include_path: str | None,
                  index: Mapping[str, IndexEntry] | None = None) -> list[HubData]:
    """The hub data a benchmark (task, group or tag) reads, from lm-eval's YAML: its datasets, and
    the repository files its ``dataset_kwargs.data_files`` name by ``hf://datasets/`` URL.
    ``index``: lm-eval's task index (default: :func:`task_manager_index`, built here).

    Local datasets (``json``/``csv``/... builders with files on disk) are left out.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    index = task_manager_index(include_path, benchmark) if index is None else index
    found: dict[HubData, None] = {}
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = index.get(name)
        if entry is None:
            raise HubError(f"evaluation.benchmarks: {name!r} (in {benchmark}) is not an lm-eval task, group or tag")
        if entry.kind == "tag":
            for other in entry.members:
                visit(other)
            return
        cfg = load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else dict(entry.cfg or {})
        if entry.kind == "group":
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
        found.update(dict.fromkeys(config_data(cfg)))

    visit(benchmark)
    return list(found)


def config_data(cfg: Mapping[str, Any]) -> list[HubData]:
    """The hub data one task config reads: its ``dataset_path`` (a hub id: not a local builder nor
    a folder here), and the files its ``dataset_kwargs.data_files`` name by ``hf://datasets/`` URL."""
    path = cfg.get("dataset_path")
    kwargs = cfg.get("dataset_kwargs") or {}
    found = []
    if path and path not in LOCAL_BUILDERS and not Path(str(path)).exists():
        found.append(HubData(str(path), cfg.get("dataset_name"), kwargs.get("revision")))
    files = [hub_file(url) for url in data_file_urls(kwargs.get("data_files"))]
    return found + [f for f in files if f is not None]


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
    file: str | None = None,
) -> dict[str, Any]:
    """Download benchmark ``benchmark``'s dataset at its locked commit; write its record to ``out``.

    With ``file``: only that file of the dataset repository ``path`` (a task's ``hf://datasets/``
    data file), into the hub cache; it is locked as its repository is.
    """
    import datasets
    from huggingface_hub import hf_hub_download

    log = log or logging.getLogger(__name__)
    key = f"evaluation.benchmarks: {benchmark} (dataset {path}" + (f", file {file})" if file else ")")
    entry = get_or_add(
        lock_path, _source(path, name), revision,
        lambda: LockEntry(_source(path, name), revision, resolve_dataset(path, revision, key, log)),
    )
    if file is None:
        cache = commit_cache_dir(path, entry.commit)
        retrying(lambda: datasets.load_dataset(path, name, revision=entry.commit, cache_dir=cache), path, entry.commit,
                 key, log, "dataset")
    else:
        retrying(lambda: hf_hub_download(path, file, repo_type="dataset", revision=entry.commit), path, entry.commit,
                 key, log, "dataset")
    record = {"benchmark": benchmark, "dataset": path, "name": name, "requested": revision, "commit": entry.commit}
    if file is not None:
        record["file"] = file
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    log.info("fetched dataset %s%s@%s for %s", path, f" file {file}" if file else "", entry.commit, benchmark)
    return record


def cached_file(path: str, file: str, commit: str) -> str:
    """The hub cache's copy of ``file`` of dataset repository ``path`` at ``commit`` (never downloads)."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(path, file, repo_type="dataset", revision=commit, local_files_only=True)


def check_cached(benchmark: str, path: str, name: str | None, commit: str, file: str | None = None) -> None:
    """With the hub offline: the dataset (or its ``file``) is in the cache at ``commit``, else a clear error."""
    if file is not None:
        try:
            cached_file(path, file, commit)
        except Exception as err:  # noqa: BLE001 - any failure to find it offline means: not fetched
            raise HubError(
                f"benchmark {benchmark}: its data file {HUB_FILE_URL}{path}@{commit[:12]}/{file} is not in the hub "
                f"cache (HF_HUB_CACHE); fetch it (again): `snakemake --forcerun resources/data/{benchmark}.json` "
                f"({type(err).__name__})"
            ) from None
        return
    try:
        load_locked_dataset(path, name, commit)
    except Exception as err:  # noqa: BLE001 - any failure to load offline means: not fetched
        raise HubError(
            f"benchmark {benchmark}: its dataset {path}@{commit[:12]} is not in the datasets cache "
            f"(HF_DATASETS_CACHE); fetch it (again): `snakemake --forcerun resources/data/{benchmark}.json` "
            f"({type(err).__name__})"
        ) from None


#: datasets loaded at their locked commit in this process: (path, config name, commit) -> what
#: ``datasets.load_dataset`` returned. Each is loaded once (the check of an evaluation job and its
#: lm-eval tasks read it twice), and a warm worker's jobs inherit those it loaded (preload_fetched)
_LOADED: dict[tuple[str, str | None, str], Any] = {}


def load_locked_dataset(path: str, name: str | None, commit: str) -> Any:
    """Dataset ``path`` (config ``name``) at ``commit`` from that commit's cache folder, loaded once
    per process (so the cache is checked once: a folder deleted later goes unnoticed until the next
    process). Each call gets its own ``DatasetDict``; its splits (memory-mapped ``Dataset``\ s) are
    shared by every caller and must not be changed in place (lm-eval's tasks map them to new ones)."""
    import datasets

    key = (path, name, commit)
    if key not in _LOADED:
        _LOADED[key] = _dataset_loader()(path, name, revision=commit, cache_dir=commit_cache_dir(path, commit))
    loaded = _LOADED[key]
    return datasets.DatasetDict(dict(loaded)) if isinstance(loaded, datasets.DatasetDict) else loaded


def _dataset_loader() -> Any:
    """``datasets.load_dataset`` itself, under any wrapper (pin_datasets' among them)."""
    import datasets

    load = datasets.load_dataset
    while hasattr(load, "__wrapped__"):
        load = load.__wrapped__
    return load


def preload_fetched(index_file: str) -> None:
    """In the warm worker (wildmerge.warm), before it forks an evaluation job: every dataset of
    the job's data index (write_index) loaded once (:func:`load_locked_dataset`), for this job and
    the later ones to inherit. A dataset that fails to load is left to the job, which names it."""
    records = json.loads(Path(index_file).read_text())["records"]
    for rec in records:
        for d in rec["datasets"]:
            if not d.get("file"):
                try:
                    load_locked_dataset(d["dataset"], d["name"], d["commit"])
                except Exception:  # noqa: BLE001, S112 - check_cached, in the job, reports it
                    continue


def pin_datasets(records: list[dict[str, Any]]) -> None:
    """Make every ``datasets.load_dataset`` of a fetched dataset (lm-eval's tasks call it) load its
    locked commit: ``revision`` and the commit's own cache folder are filled in, and each fetched
    ``hf://datasets/`` data file is replaced by its cached copy at the locked commit."""
    import datasets

    fetched = [d for rec in records for d in rec["datasets"]]
    pinned = {(d["dataset"], d["name"]): d["commit"] for d in fetched if not d.get("file")}
    files = {HubData(d["dataset"], None, d["requested"], d["file"]): cached_file(d["dataset"], d["file"], d["commit"])
             for d in fetched if d.get("file")}
    load = _dataset_loader()

    def cached(url: Any) -> Any:
        file = hub_file(url) if isinstance(url, str) else None
        return files.get(file, url) if file is not None else url

    def local_data_files(data_files: Any) -> Any:
        if isinstance(data_files, Mapping):
            return {split: local_data_files(v) for split, v in data_files.items()}
        if isinstance(data_files, (list, tuple)):
            return [cached(u) for u in data_files]
        return cached(data_files)

    @functools.wraps(load)
    def load_locked(path: str, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        commit = pinned.get((path, name)) or pinned.get((path, None))
        if commit is not None and not args and not kwargs:  # what lm-eval's tasks pass: loaded once
            return load_locked_dataset(path, name, commit)
        if commit is not None:
            kwargs.update(revision=commit, cache_dir=commit_cache_dir(path, commit))
        if files and kwargs.get("data_files") is not None:
            kwargs["data_files"] = local_data_files(kwargs["data_files"])
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
            check_cached(rec["benchmark"], d["dataset"], d["name"], d["commit"], d.get("file"))
    if records:
        pin_datasets(records)
    return records


def check_locked(benchmark: str, dataset: str, name: str | None, revision: str | None, lock: Path,
                 file: str | None = None) -> None:
    """Check, offline, that the locked commit of one benchmark dataset (or its ``file``) is in the cache."""
    from wildmerge.hub.lock import lock_key, read_lock

    entry = read_lock(lock).get(lock_key(_source(dataset, name), revision))
    if entry is None:
        raise HubError(f"benchmark {benchmark}: dataset {dataset} is not in the lock {lock}; fetch it first")
    check_cached(benchmark, dataset, name, entry.commit, file)
