"""Benchmark names and metrics, settled at DAG build against lm-eval's own task index.

Every benchmark of a study (``evaluation.benchmarks`` and the ``homogeneous:`` groups'
suites) must resolve to an lm-eval **task** (a YAML or Python task) or **group** (scored by its
aggregate, ``aggregate_metric_list``). A **tag** is refused: lm-eval expands it to its tasks and
returns no result under the tag's own name, so the evaluation job would fail after scoring
everything before it (``headqa`` in lm-eval 0.4.13 is a tag for ``headqa_en`` and
``headqa_es``). The metric a benchmark's score is read from (its ``metric``, else the first of
:data:`wildmerge.evaluation.lm_eval_run.METRIC_FALLBACK` it reports, as ``pick_metric`` picks it) must be one
the task reports: its YAML's ``metric_list`` (lm-eval's defaults per ``output_type`` without
one), a group's ``aggregate_metric_list``. A Python task (``class:``) sets its metrics in code;
unless its YAML lists them they are not checked here.

lm-eval's built-in index (~15k YAMLs, seconds to parse) is kept in wildmerge's cache dir, one
file per lm-eval version; an ``evaluation.include_path`` folder is read each time (its YAMLs may
change), and ``include_path: demo`` reads the demo tasks' YAMLs as the workflow writes them.
Nothing here loads a dataset or a model.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wildmerge.evaluation.lm_eval_run import METRIC_FALLBACK
from wildmerge.hub.datasets import INDEX_KINDS
from wildmerge.provenance import cache_dir, file_sha256, stable_hash

if TYPE_CHECKING:
    from wildmerge.hub.datasets import IndexEntry

__all__ = ["TaskInfo", "benchmark_problems", "builtin_dataset_index", "builtin_index", "chosen_metric", "local_index",
           "study_benchmarks", "task_definitions"]

#: Kinds of lm-eval index entries (lm_eval.tasks._index.Kind, lower case).
TASK, PYTHON_TASK, GROUP, TAG = (INDEX_KINDS[k] for k in ("TASK", "PY_TASK", "GROUP", "TAG"))
#: Format of the cached index file (part of its name: a new format is a new file).
FORMAT = 2
#: How many problems, and how many tasks of a tag or group, a message shows.
SHOW = 6
SHOW_MEMBERS = 12
#: What to list instead of a tag, where the paper says which of its tasks it means.
TAG_HINTS = {"headqa": "the paper's Appendix E uses headqa_en"}


@dataclass(frozen=True)
class TaskInfo:
    """One name in lm-eval's index: its kind, the metrics its result reports, its members."""

    name: str
    kind: str  # TASK | PYTHON_TASK | GROUP | TAG
    # metric names its result reports (a group: its aggregates); None: set in Python code
    metrics: tuple[str, ...] | None
    members: tuple[str, ...] = ()  # a tag's tasks, a group's direct tasks and subgroups
    # its YAML, relative to lm-eval's tasks folder (built-in entries; None: a tag, or not a file)
    yaml: str | None = dataclasses.field(default=None, compare=False)

    def to_json(self) -> list[Any]:
        return [self.kind, None if self.metrics is None else list(self.metrics), list(self.members), self.yaml]

    @classmethod
    def from_json(cls, name: str, row: Sequence[Any]) -> TaskInfo:
        kind, metrics, members, yaml = row
        return cls(name, str(kind), None if metrics is None else tuple(metrics), tuple(members), yaml)


# --------------------------------------------------------------------------- reading configs


def _metric_name(spec: Mapping[str, Any]) -> str | None:
    """The name lm-eval reports a ``metric_list``/``aggregate_metric_list`` entry under."""
    metric = spec.get("metric")
    if not isinstance(metric, str):
        return None
    if "/" in metric and not spec.get("hf_evaluate"):
        # `metric: !function utils.acc_all`, read without importing it: "<dir>/utils.acc_all";
        # lm-eval reports a function's result under the function's name
        return metric.rsplit("/", 1)[1].rsplit(".", 1)[-1]
    return metric


def _names(specs: Any) -> tuple[str, ...]:
    if isinstance(specs, Mapping):
        specs = [specs]
    if not isinstance(specs, list):
        return ()
    names = (_metric_name(s) for s in specs if isinstance(s, Mapping))
    return tuple(dict.fromkeys(n for n in names if n))


def _default_metrics(output_type: str) -> tuple[str, ...]:
    from lm_eval.api.registry import DEFAULT_METRIC_REGISTRY

    return tuple(DEFAULT_METRIC_REGISTRY.get(output_type, ()))


def _members(tasks: Any) -> tuple[str, ...]:
    """A group's direct members (``task:`` holds names and inline task/group configs)."""
    items = tasks if isinstance(tasks, list) else [tasks]
    out = []
    for t in items:
        if isinstance(t, str):
            out.append(t)
        elif isinstance(t, Mapping) and isinstance(t.get("task") or t.get("group"), str):
            out.append(str(t.get("task") or t.get("group")))
    return tuple(out)


def info_from_config(name: str, kind: str, cfg: Mapping[str, Any] | None,
                     tag_tasks: Iterable[str] = ()) -> TaskInfo:
    """TaskInfo of one index entry from its YAML config (includes resolved, functions not)."""
    cfg = cfg or {}
    if kind == TAG:
        return TaskInfo(name, TAG, (), tuple(sorted(tag_tasks)))
    if kind == GROUP:
        return TaskInfo(name, GROUP, _names(cfg.get("aggregate_metric_list")), _members(cfg.get("task")))
    if cfg.get("metric_list") is not None:
        return TaskInfo(name, kind, _names(cfg["metric_list"]))
    if kind == PYTHON_TASK:
        return TaskInfo(name, kind, None)
    # TaskConfig's default output_type is generate_until
    return TaskInfo(name, kind, _default_metrics(str(cfg.get("output_type") or "generate_until")))


def _tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _from_task_manager(tm: Any) -> dict[str, TaskInfo]:
    """Name -> TaskInfo of every entry of an lm-eval TaskManager's index."""
    root = _tasks_dir()
    out = {}
    for name, entry in tm.task_index.items():
        kind = INDEX_KINDS.get(entry.kind.name)
        if kind is not None:
            # a tag entry's `tags` are its tasks; a task's are the tags it is under
            info = info_from_config(name, kind, entry.cfg, entry.tags if kind == TAG else ())
            path = Path(entry.yaml_path).resolve() if getattr(entry, "yaml_path", None) else None
            if path is not None and path.is_relative_to(root):
                info = dataclasses.replace(info, yaml=path.relative_to(root).as_posix())
            out[name] = info
    return out


def _index_of_configs(configs: Iterable[Mapping[str, Any]]) -> dict[str, TaskInfo]:
    """Name -> TaskInfo of plain YAML configs (as lm-eval's TaskIndex classifies them)."""
    out: dict[str, TaskInfo] = {}
    tags: dict[str, list[str]] = {}
    for cfg in configs:
        if "class" in cfg:
            kind, name = PYTHON_TASK, cfg.get("task")
        elif "group" in cfg:
            kind, name = GROUP, cfg.get("group")
        else:
            kind, name = TASK, cfg.get("task")
        if not isinstance(name, str):
            continue
        out[name] = info_from_config(name, kind, cfg)
        if kind != GROUP:
            tag = cfg.get("tag") or []
            for t in [tag] if isinstance(tag, str) else tag:
                tags.setdefault(str(t), []).append(name)
    for t, tasks in tags.items():
        out.setdefault(t, info_from_config(t, TAG, None, tasks))
    return out


# --------------------------------------------------------------------------- indexes


def _cache_file() -> Path:
    from importlib.metadata import version

    return cache_dir() / f"lm_eval_task_index-{FORMAT}-{version('lm_eval')}.json"


def builtin_index() -> dict[str, TaskInfo]:
    """lm-eval's built-in tasks, groups and tags, cached per lm-eval version (building it parses
    every task YAML: ~10 s; reading the cache: milliseconds)."""
    path = _cache_file()
    try:
        rows = json.loads(path.read_text())
        return {name: TaskInfo.from_json(name, row) for name, row in rows.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    from lm_eval.tasks import TaskManager

    index = _from_task_manager(TaskManager())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({n: i.to_json() for n, i in sorted(index.items())}, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:  # read-only cache: same answer, built again next time
        pass
    return index


def builtin_dataset_index() -> dict[str, IndexEntry] | None:
    """lm-eval's built-in index as ``wildmerge.hub.datasets.task_datasets`` reads it, from the
    cached :func:`builtin_index` (milliseconds, where lm-eval's TaskManager takes seconds); None
    if an entry other than a tag has no YAML file (its config is not cached), or its YAML is
    not where the cache says (another lm-eval install of the same version)."""
    from wildmerge.hub.datasets import IndexEntry

    root = _tasks_dir()
    out = {}
    for name, info in builtin_index().items():
        if info.kind != TAG and (info.yaml is None or not (root / info.yaml).is_file()):
            return None
        out[name] = IndexEntry(info.kind, str(root / info.yaml) if info.yaml else None, None, info.members)
    return out


def demo_index() -> dict[str, TaskInfo]:
    """The demo tasks and group (``include_path: demo``), from the YAMLs the workflow writes
    (``wildmerge.demo.tasks.make_tasks``; not on disk at DAG build)."""
    import yaml

    from wildmerge.demo.tasks import make_tasks

    with tempfile.TemporaryDirectory(prefix="wildmerge-demo-tasks-") as tmp:
        make_tasks(Path(tmp), n_eval=1)
        return _index_of_configs(yaml.safe_load(p.read_text()) for p in sorted(Path(tmp).glob("*.yaml")))


def local_index(include: str | None) -> dict[str, TaskInfo]:
    """The tasks of ``evaluation.include_path`` (not cached: its YAMLs may change); {} for none
    or a folder that does not exist."""
    if include == "demo":
        return demo_index()
    if not include or not Path(include).is_dir():
        return {}
    from lm_eval.tasks import TaskManager

    return _from_task_manager(TaskManager(include_path=str(include), include_defaults=False))


# --------------------------------------------------------------------------- definitions

#: Folders lm-eval's task index skips (lm_eval.tasks._index).
_IGNORE_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_FUNCTION = "!function "


def _load_task_yaml(path: Path, root: Path, seen: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """One task YAML as lm-eval reads it (its ``include:`` files merged under it, local keys
    winning), each ``!function mod.f`` kept as text: ``!function <its folder, relative to
    root>:mod.f`` (lm-eval imports ``mod.py`` from the YAML's folder)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    rel_dir = Path(os.path.relpath(path.parent, root)).as_posix()

    class Loader(base):  # type: ignore[valid-type,misc]
        pass

    def function(loader: Any, node: Any) -> str:
        return f"{_FUNCTION}{rel_dir}:{loader.construct_scalar(node)}"

    Loader.add_constructor("!function", function)
    with open(path, "rb") as f:
        cfg = yaml.load(f, Loader=Loader)  # noqa: S506 (a SafeLoader with one more tag)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: not a mapping")
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = (path.parent / str(inc)).resolve()
        if inc_path in seen:
            raise ValueError(f"{path}: include {inc} is a cycle")
        inc_cfg = _load_task_yaml(inc_path, root, seen | {path})
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update(cfg)
    return merged


def _files_read(cfg: Any, root: Path) -> tuple[list[Path], list[str]]:
    """The Python files a config's ``!function``s name, and the data files it reads
    (``dataset_kwargs.data_files``, a ``dataset_path`` that exists here; relative to the
    working directory, as lm-eval reads them)."""
    code: list[Path] = []
    data: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            files = (x.get("dataset_kwargs") or {}).get("data_files") if isinstance(x.get("dataset_kwargs"), dict) else None
            for v in files.values() if isinstance(files, dict) else [files]:
                data.extend(str(f) for f in ([v] if isinstance(v, str) else v or []) if isinstance(f, str))
            if isinstance(x.get("dataset_path"), str) and os.path.exists(x["dataset_path"]):
                data.append(x["dataset_path"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str) and x.startswith(_FUNCTION):
            folder, _, spec = x[len(_FUNCTION):].partition(":")
            module = spec.rpartition(".")[0].replace(".", "/")
            code.append(Path(os.path.normpath(root / folder / f"{module}.py")))

    walk(cfg)
    return code, data


def task_definitions(include: str | Path) -> dict[str, str]:
    """Name -> hash of the definition of each task and group in an ``evaluation.include_path``
    folder: its YAML as lm-eval reads it (includes merged; comments and formatting do not count),
    the Python files its ``!function``s name, the local data files it reads, and a group's
    members' definitions. Read at DAG build (YAML parsing and the data files' sha256), for the
    score keys: editing a task reruns the benchmarks that use it, and only those."""
    root = Path(include).resolve()
    configs: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("**/*.yaml"), key=lambda p: p.as_posix()):
        if any(part in _IGNORE_DIRS for part in path.relative_to(root).parts):
            continue
        try:
            cfg = _load_task_yaml(path, root)
        except Exception:  # noqa: BLE001 (lm-eval skips a YAML it cannot read, too)
            continue
        name = cfg.get("group") if "group" in cfg and "class" not in cfg else cfg.get("task")
        if isinstance(name, str):
            configs.setdefault(name, cfg)  # lm-eval keeps the first of a name
    sha: dict[str, str | None] = {}

    def digest(p: str | Path) -> str | None:
        key = str(p)
        if key not in sha:
            path = Path(p)
            if path.is_file():
                sha[key] = file_sha256(path)
            elif path.is_dir():
                sha[key] = stable_hash({f.relative_to(path).as_posix(): file_sha256(f)
                                        for f in sorted(path.rglob("*")) if f.is_file()}, 64)
            else:
                sha[key] = None
        return sha[key]

    out: dict[str, str] = {}

    def definition(name: str, stack: tuple[str, ...] = ()) -> str:
        if name not in out:
            cfg = configs[name]
            code, data = _files_read(cfg, root)
            members = [m for m in _members(cfg.get("task")) if "group" in cfg and m in configs and m not in stack]
            out[name] = stable_hash({
                "config": cfg,
                "code": {Path(os.path.relpath(p, root)).as_posix(): digest(p) for p in code},
                "data": {d: digest(d) for d in data},
                "members": {m: definition(m, (*stack, name)) for m in members},
            }, 16)
        return out[name]

    for name in configs:
        definition(name)
    return out


# --------------------------------------------------------------------------- checks


def chosen_metric(info: TaskInfo, wanted: str | None) -> str | None:
    """The metric a score of ``info`` is read from (as ``wildmerge.evaluation.lm_eval_run.pick_metric`` picks
    it from the result): ``wanted``, else the first of METRIC_FALLBACK the result reports; None
    when it reports no such metric."""
    reported = info.metrics or ()
    for metric in [wanted] if wanted else METRIC_FALLBACK:
        if metric in reported:
            return metric
    return None


def study_benchmarks(benchmarks: Sequence[Mapping[str, Any]],
                     suites: Mapping[tuple[str, str], Sequence[str]]) -> list[tuple[str, str, str | None]]:
    """(config key, benchmark, metric or None) of every benchmark a study scores: its
    ``evaluation.benchmarks`` and its homogeneous groups' suites (which take the default metric)."""
    out = [(f"evaluation.benchmarks[{i}]", str(b["name"]), b.get("metric")) for i, b in enumerate(benchmarks)]
    for (base, group), names in suites.items():
        out += [(f"homogeneous.{base}.groups.{group}.benchmarks[{i}]", str(n), None) for i, n in enumerate(names)]
    return out


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOW_MEMBERS])
    return shown + (f" and {len(names) - SHOW_MEMBERS} more" if len(names) > SHOW_MEMBERS else "")


def _problem(key: str, name: str, metric: str | None, info: TaskInfo) -> str | None:
    """Why ``name`` (found in the index) cannot be scored as configured; None if it can."""
    if info.kind == TAG:
        hint = f" ({TAG_HINTS[name]})" if name in TAG_HINTS else ""
        return (f"{key}: {name!r} is an lm-eval tag, not a task or group: it stands for "
                f"{_listed(info.members)}; list the tasks you mean by name, each or one of them{hint}")
    if info.metrics is None or chosen_metric(info, metric) is not None:
        return None
    section = key.rsplit("[", 1)[0]
    if info.kind == GROUP and not info.metrics:
        return (f"{key}: {name!r} is an lm-eval group without an aggregate score (its YAML has no "
                f"aggregate_metric_list), so it has no result of its own; list its tasks instead: "
                f"{_listed(info.members)}")
    what = "aggregate metrics" if info.kind == GROUP else "metrics"
    reported = ", ".join(info.metrics) or "none"
    if metric:
        return (f"{key}.metric: {name} does not report {metric!r}; its {what}: {reported}; "
                f"set metric to one of them")
    fix = (f"set {key}.metric to one of them" if section == "evaluation.benchmarks"
           else "a suite's benchmarks take the default metric: list a task that reports one")
    return (f"{key}: {name} reports none of the metrics read when no metric is set "
            f"({', '.join(METRIC_FALLBACK)}); its {what}: {reported}; {fix}")


def _unknown_message(section: str, missing: list[str], include: str | None, local: Mapping[str, TaskInfo],
                     builtin: Mapping[str, TaskInfo]) -> str:
    """What was searched for ``missing`` benchmarks, and the close matches in each index."""
    if include == "demo":
        searched = ["the demo tasks (evaluation.include_path: demo)"]
    elif include:
        found = "" if Path(include).is_dir() else " (no such directory)"
        searched = [f"evaluation.include_path={include}{found}"]
    else:
        searched = []
    searched.append(f"lm-eval's {len(builtin)} built-in tasks, groups and tags")
    lines = [f"{section}: lm-eval has no task {missing}; searched {' and '.join(searched)}"]
    known = sorted(n for n, i in {**builtin, **local}.items() if i.kind != TAG)
    for m in missing:
        near = difflib.get_close_matches(m, known, n=3, cutoff=0.6)
        if near:
            lines.append(f"  {m}: close matches {', '.join(near)}")
    if not include:
        lines.append("  for your own task YAMLs set evaluation.include_path")
    return "\n".join(lines)


def benchmark_problems(benchmarks: Sequence[tuple[str, str, str | None]], include: str | None,
                       builtin: Mapping[str, TaskInfo] | None = None) -> str | None:
    """Why the study's ``benchmarks`` ((config key, name, metric), as :func:`study_benchmarks`
    gives them) cannot be scored: names lm-eval does not know (with close matches), tags,
    groups without an aggregate, metrics the benchmark does not report; None if they all can.

    Names resolve in the ``include`` path's tasks first (lm-eval lets them override built-in
    ones), then in lm-eval's built-in index (read only when needed; ``builtin`` for tests)."""
    local = local_index(include)
    if builtin is None and any(name not in local for _, name, _ in benchmarks):
        builtin = builtin_index()
    index = {**(builtin or {}), **local}
    problems: list[str] = []
    missing: dict[str, list[str]] = {}  # config section -> unknown names
    for key, name, metric in benchmarks:
        info = index.get(name)
        if info is None:
            names = missing.setdefault(key.rsplit("[", 1)[0], [])
            if name not in names:
                names.append(name)
        elif (why := _problem(key, name, metric, info)) is not None:
            problems.append(why)
    unknown = [_unknown_message(s, names, include, local, builtin or {}) for s, names in missing.items()]
    shown = unknown + problems[:SHOW]
    if len(problems) > SHOW:
        shown.append(f"... and {len(problems) - SHOW} more")
    return "\n".join(shown) or None
