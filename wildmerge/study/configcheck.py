"""The config checks, all at DAG build, each naming the file or key:

* before the schema's defaults: YAML syntax errors (file, line, PyYAML's problem and its cause:
  a tab, an unclosed bracket or quote), duplicate YAML keys and short schema errors (file, key
  path, what is allowed, a close match): :func:`check_config_files`, :func:`check_schema`;
* on the study: checkpoint sources that are neither an existing local directory nor a hub id,
  the same checkpoint under two names, as two bases, or as an expert of itself
  (:func:`check_sources`); names that must exist: the methods under ``tables``, ``demo:``
  checkpoints (:func:`check_names`); ``results`` and ``merge.models_dir`` that are files or
  not writable (:func:`check_output_dirs`);
* against the libraries: every method and its parameters (names, types, ranges) against
  mergekit's registry, ``merge.options`` against mergekit's MergeOptions, every benchmark
  (name, tag, metric) against lm-eval's index (:func:`check_study`).

Those raise :class:`ConfigFileError`, the last :class:`ConfigError`; a message is a few lines
at most. Snakemake reads ``--configfile`` files itself before the workflow runs, and its loader
names neither the file nor the line of a YAML error: ``python -m wildmerge.study.configcheck
[snakemake arguments]`` checks them first (``make run`` does).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from wildmerge.evaluation.task_index import benchmark_problems, study_benchmarks
from wildmerge.hub.ids import HUB_ID
from wildmerge.provenance import cache_dir, stable_hash
from wildmerge.study.model import DEMO_PREFIX, Checkpoint, ConfigError
from wildmerge.study.plan import Study

__all__ = ["ConfigFileError", "check_config_files", "check_names", "check_output_dirs", "check_sources", "check_study",
           "close_match", "schema_problems", "yaml_error"]

_HUB_URL = re.compile(r"^https?://(?:www\.)?huggingface\.co/([^/]+/[^/?#]+)")
#: How many schema errors are shown (each is one line).
SHOW = 3


class ConfigFileError(ValueError):
    """A config file the study cannot run with; the message names the file and key."""


# --------------------------------------------------------------------------- duplicate keys


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # unhashable key: PyYAML reports it itself
            continue
        if first is not None:
            raise ConfigFileError(
                f"{loader.name}: key {key!r} appears twice in one mapping (lines {first} and "
                f"{line}); YAML would silently keep only the second: rename or remove one"
            )
        seen[key] = line
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_strict(path: str | Path) -> Any:
    """Parse one YAML file, raising ConfigFileError on a duplicate key (naming both lines) and
    on a syntax error (naming the line and YAML's own account of it, :func:`yaml_error`)."""
    with open(path, encoding="utf-8") as f:
        loader = _StrictLoader(f)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        except yaml.YAMLError as err:
            raise ConfigFileError(yaml_error(path, err)) from None
        finally:
            loader.dispose()


#: What an unclosed construct is opened with, by the context PyYAML names.
_OPENERS = {"flow mapping": "`{`", "flow sequence": "`[`", "quoted scalar": "quote"}


def yaml_error(path: str | Path, err: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the file, line and column, that line's text, PyYAML's
    own problem, and the cause: a tab in the indentation, or the bracket or quote (the context
    PyYAML names) left open and the line it was opened on."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    context, cmark = getattr(err, "context", None), getattr(err, "context_mark", None)
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()

    def line(m: Any) -> str:
        return f" ({lines[m.line]!r})" if m is not None and m.line < len(lines) else ""

    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    cause = ""
    if "'\\t'" in problem:
        cause = "; YAML indents with spaces only: replace the tab(s) with spaces"
    elif context and cmark is not None:
        opener = next((o for k, o in _OPENERS.items() if k in context), None)
        at = f"line {cmark.line + 1}, column {cmark.column + 1}{line(cmark)}"
        if opener == "quote":
            cause = f"; inside the quote opened at {at}: is it closed?"
        elif opener:
            cause = f"; inside the {opener} opened at {at}: is it closed, and are its items separated by commas?"
        elif "block" in context:
            cause = f"; the indentation does not fit the block begun at {at}"
        else:
            cause = f"; {context} at {at}"
    elif context:
        cause = f"; {context}"
    return f"{where}: YAML syntax error: {problem}{line(mark)}{cause}"


def check_config_files(paths: Iterable[str | Path]) -> None:
    """YAML syntax errors and duplicate keys in any of the config files (JSON files are YAML too)."""
    for p in paths:
        if Path(p).is_file():
            load_strict(p)


def main(argv: list[str] | None = None) -> int:
    """``python -m wildmerge.study.configcheck [snakemake arguments]``: check the YAML of the
    config files named by ``--configfile``/``--configfiles`` (default: config.yaml) before
    Snakemake reads them -- Snakemake's own loader names neither the file nor the line."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    files: list[str] = []
    taking = False
    for a in args:
        if a in ("--configfile", "--configfiles"):
            taking = True
        elif a.startswith(("--configfile=", "--configfiles=")):
            files.append(a.split("=", 1)[1])
            taking = False
        elif taking and not a.startswith("-"):
            files.append(a)
        else:
            taking = False
    try:
        check_config_files(files or ["config.yaml"])
    except ConfigFileError as err:
        print(f"invalid config: {err}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- schema


def close_match(word: str, options: Iterable[str]) -> str:
    """' (did you mean `x`?)' for a close option, else ''."""
    found = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean `{found[0]}`?)" if found else ""


def _key_path(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _allowed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    return str(t) if t else "see schemas/config.schema.yaml"


def _describe(err: Any) -> str:
    """One line for one jsonschema error, descending into oneOf/anyOf to the branch meant."""
    if err.validator in ("oneOf", "anyOf") and err.context:
        inst = err.instance
        # the branch of the instance's own type (a mapping -> the object branch)
        branches = err.schema[err.validator]
        meant = [e for e in err.context if _type_ok(branches[e.schema_path[0]], inst)]
        if meant:
            deepest = max(meant, key=lambda e: len(e.absolute_path))
            return _describe(deepest)
        kinds = " or ".join(_allowed(s) for s in err.schema[err.validator])
        return f"{_key_path(err.absolute_path)}: expected {kinds}, got {inst!r:.60}"
    where = _key_path(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        allowed = list((err.schema.get("properties") or {}))
        extra = [k for k in err.instance if k not in allowed]
        if allowed:
            shown = ", ".join(allowed)
            return "; ".join(
                f"{where}: unknown key `{k}`{close_match(k, allowed)}; allowed: {shown}" for k in extra
            )
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "propertyNames":
        return f"{where}: name {err.instance!r} is not allowed ({err.message})"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed{close_match(err.instance, err.validator_value)}; allowed: " + ", ".join(map(repr, err.validator_value))
    return f"{where}: {err.message[:200]}"


def _type_ok(schema: Mapping[str, Any], inst: Any) -> bool:
    t = schema.get("type")
    types = t if isinstance(t, list) else [t]
    py = {"object": Mapping, "string": str, "array": list, "boolean": bool, "integer": int,
          "number": (int, float), "null": type(None)}
    return t is None or any(isinstance(inst, py.get(x, object)) for x in types)


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Short descriptions of every schema violation (empty when the config is valid)."""
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(e) for e in errors]


def check_schema(config: Mapping[str, Any], schema_path: str | Path, files: list[str]) -> None:
    schema = load_strict(schema_path)
    problems = schema_problems(config, schema)
    if problems:
        shown = problems[:SHOW] + ([f"... and {len(problems) - SHOW} more"] if len(problems) > SHOW else [])
        src = ", ".join(files) or "the config"
        raise ConfigFileError(f"{src}:\n  " + "\n  ".join(shown))


# --------------------------------------------------------------------------- sources


def _source_problem(source: str) -> str | None:
    """Why ``source`` is neither an existing local directory nor a hub id (None if it is one)."""
    if source.startswith(DEMO_PREFIX) or os.path.isdir(source):
        return None
    looks_local = source.startswith(("/", "./", "../", "~")) or os.sep in source and os.path.isdir(source.split(os.sep)[0])
    if HUB_ID.match(source) and not looks_local:
        return None
    hint = ""
    url = _HUB_URL.match(source)
    if url:
        hint = f"; for a hub URL write only the id: {url.group(1)}"
    elif looks_local and HUB_ID.match(source):
        hint = f"; it is read as a local path because {source.split(os.sep)[0]}/ exists here"
    return (
        f"{source!r} is not a local directory ({source} does not exist) and not a hub id "
        f"(org/name: one '/', letters, digits, '-', '_', '.'){hint}"
    )


def _same_checkpoint(ck: Checkpoint) -> str:
    """What makes two checkpoints the same: a local folder by its resolved path (``./m`` and
    ``m``), others by source and revision."""
    return os.path.realpath(ck.source) if ck.kind == "local" else ck.identity


def check_sources(study: Study) -> None:
    """Every checkpoint source is demo:, an existing directory or a hub id; no checkpoint is
    listed twice under different names in one base's pool, no expert is its base, and no two
    bases are the same checkpoint."""
    problems: list[str] = []
    bases: dict[str, str] = {}
    for bname, b in study.bases.items():
        named = [(f"bases.{bname}.model", b.model)] + [
            (f"bases.{bname}.experts.{e}", c) for e, c in b.experts.items()
        ]
        for key, ck in named:
            why = _source_problem(ck.source)
            if why:
                problems.append(f"{key}: {why}")
        first_base = bases.setdefault(_same_checkpoint(b.model), bname)
        if first_base != bname:
            problems.append(
                f"bases: {first_base!r} and {bname!r} are the same checkpoint ({b.model.identity}); every "
                f"job would run twice and the averages would count it as two bases: remove one"
            )
        by_id: dict[str, str] = {}
        for e, c in b.experts.items():
            first = by_id.setdefault(c.identity, e)
            if first != e:
                problems.append(
                    f"bases.{bname}.experts: {first!r} and {e!r} are the same checkpoint "
                    f"({c.identity}); subsets would hold it twice: remove one"
                )
        base_is = _same_checkpoint(b.model)
        for c in [*b.experts.values(), *b.group_experts.values()]:
            if _same_checkpoint(c) == base_is:
                problems.append(
                    f"{c.key or f'bases.{bname}.experts.{c.name}'}: {c.identity!r} is the base itself "
                    f"(bases.{bname}.model: {b.model.identity}); its task vector is zero and every "
                    f"subset holding it would merge nothing from it: remove it, or name the fine-tune"
                )
    if problems:
        raise ConfigFileError("\n  ".join(problems[:SHOW * 2]))
    _say_unfetched_hub_ids(study)


def check_names(study: Study, config: Mapping[str, Any]) -> None:
    """Names the config refers to exist: every method listed under ``tables`` is under
    ``methods`` (and no table is named ``paired``, the name of the paired-comparison table),
    and every ``demo:<name>`` is a checkpoint of the demo zoo (wildmerge.demo)."""
    from wildmerge.demo import EXPERTS

    problems: list[str] = []
    methods = list(study.methods)
    for table, listed in (config.get("tables") or {}).items():
        if table == "paired":
            problems.append("tables.paired: `paired` is the name of the paired method comparison "
                            "(tables/paired.csv): give this table another name")
        for m in listed:
            if m not in study.methods:
                problems.append(f"tables.{table}: {m!r} is not a method under methods{close_match(m, methods)}; "
                                f"known: {', '.join(methods)}")
    zoo = ["base", *EXPERTS]
    for ck in study.all_checkpoints():
        name = ck.source[len(DEMO_PREFIX):] if ck.source.startswith(DEMO_PREFIX) else None
        if name is not None and name not in zoo:
            problems.append(
                f"{ck.key or ck.name}: {ck.source!r} is not in the demo zoo"
                f"{close_match(DEMO_PREFIX + name, [DEMO_PREFIX + z for z in zoo])}; it has: "
                + ", ".join(DEMO_PREFIX + z for z in zoo)
            )
    if problems:
        raise ConfigFileError("\n  ".join(list(dict.fromkeys(problems))[:SHOW * 2]))


def _folder_problem(path: str, key: str, check_writable: bool) -> str | None:
    """Why the folder ``path`` (config ``key``) cannot take the study's outputs: it is a file,
    a file is where one of its parents should be, or (``check_writable``) the nearest existing
    one cannot be written to."""
    p = Path(path).expanduser().absolute()
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "is a file" if existing == p else f"cannot be made: {existing} is a file"
        return f"{key}: {path!r} {what}, not a folder; point {key} at a folder (made if missing)"
    if check_writable and not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == p else f" (its nearest existing folder {existing})"
        return f"{key}: {path!r}{where} is not writable by this user; point {key} at a folder you can write to"
    return None


def check_output_dirs(study: Study, local: bool = True) -> None:
    """``results`` and ``merge.models_dir`` are folders (or can be made) that this user can write
    to; ``merge.models_dir`` only where jobs run here (``local``): on a cluster it may be a
    node-local path this machine lacks."""
    problems = [_folder_problem(study.results, "results", True)]
    if study.config["merge"].get("models_dir"):
        problems.append(_folder_problem(study.models_dir, "merge.models_dir", local))
    elif not problems[0]:
        problems.append(_folder_problem(study.models_dir, "merge.models_dir (unset: <results>/models)", local))
    found = [x for x in problems if x]
    if found:
        raise ConfigFileError("\n  ".join(found))


def _say_unfetched_hub_ids(study: Study) -> None:
    """With the hub offline, say which sources were read as hub ids and are not fetched yet
    (a typo in a local path, e.g. ``models/ghost``, shows up here before any job runs)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on"):
        return
    pending = sorted({c.source for c in study.all_checkpoints() if c.kind == "hub" and not Path(c.path).exists()})
    if pending:
        logging.getLogger("wildmerge").warning(
            "read as hub ids (no local directory of that name exists here), not fetched yet, "
            "and the hub is offline (HF_HUB_OFFLINE=1): %s%s",
            ", ".join(pending[:SHOW]),
            f" and {len(pending) - SHOW} more" if len(pending) > SHOW else "",
        )


# --------------------------------------------------------------------------- libraries


def check_study(study: Study, config: Mapping[str, Any]) -> None:
    """Checks that need the libraries (not just the config): every method and its parameters
    against mergekit's registry, merge.options against mergekit's MergeOptions, every benchmark
    against lm-eval's task index.

    Raises ValueError naming the config key; run at DAG build, before any job.
    """
    sizes: dict[tuple[str, str, str], set[int]] = {}  # (config key, method, params hash) -> n
    params_of: dict[str, Mapping[str, Any]] = {}
    for b in study.bases.values():
        for key, merges in (("methods.{}", b.merges), ("ablations.{}", b.ablation_merges),
                            (f"homogeneous.{b.name} (method {{}})", b.homogeneous_merges)):
            for m in merges.values():
                h = stable_hash(dict(m.params))
                params_of[h] = m.params
                sizes.setdefault((key.format(m.method), m.mergekit_method, h), set()).add(m.subset.n)
    include = (config.get("evaluation") or {}).get("include_path")
    benchmarks = study_benchmarks(study.benchmarks, study.suites)  # (config key, name, metric)
    # A check that passed is remembered (keyed by everything it depends on): importing
    # mergekit (torch, transformers) would otherwise cost every DAG build over a second.
    passed = _check_cache(
        [
            sorted((k, m, h, sorted(ns)) for (k, m, h), ns in sizes.items()),
            sorted(params_of.items()),
            sorted((n, s.method, stable_hash(s.params)) for n, s in study.methods.items()),
            benchmarks,
            sorted(study.config["merge"]["options"].items()),
        ],
        include,
    )
    if passed is not None and passed.exists():
        return
    from wildmerge.merging.mergekit_run import check_merge_options, check_method

    check_merge_options(study.config["merge"]["options"], study.config["merge"]["device"])
    for name, spec in study.methods.items():  # also methods no subset uses
        check_method(f"methods.{name}", spec.method, spec.params)
    for (key, method, h), ns in sizes.items():
        check_method(key, method, params_of[h], sorted(ns))
    problem = benchmark_problems(benchmarks, include)  # names, tags, metrics (wildmerge.evaluation.task_index)
    if problem:
        raise ConfigError(problem)
    if passed is not None:
        try:
            passed.parent.mkdir(parents=True, exist_ok=True)
            passed.touch()
        except OSError:  # read-only cache: check again next time
            pass


def _check_cache(parts: list[Any], include: str | None) -> Path | None:
    """Marker file of a passed :func:`check_study`, keyed by its inputs, the mergekit and
    lm-eval versions and wildmerge's method code; None where a local include path (whose
    tasks may change) is involved."""
    from importlib.metadata import version

    if include and include != "demo":
        return None
    code = Path(__file__).parents[1]
    key = stable_hash(
        {
            "parts": [*parts, include],
            "versions": [version("mergekit"), version("lm_eval")],
            "code": [stable_hash((code / f).read_text()) for f in ("merging/mergekit_run.py", "merging/methods.py", "study/plan.py",
                                                     "evaluation/lm_eval_run.py", "evaluation/task_index.py")],
        },
        24,
    )
    return cache_dir() / "checked" / key


if __name__ == "__main__":
    raise SystemExit(main())
