"""The config checks, all at DAG build, each naming the file or key:

* before the schema's defaults: duplicate YAML keys and short schema errors (file, key path, what
  is allowed, a close match): :func:`check_config_files`, :func:`check_schema`;
* on the study: checkpoint sources that are neither an existing local directory nor a hub id,
  and the same checkpoint under two names (:func:`check_sources`);
* against the libraries: every method and its parameters against mergekit's registry,
  merge.options against mergekit's MergeOptions, every benchmark (name, tag, metric) against
  lm-eval's index (:func:`check_study`).

The first two raise :class:`ConfigFileError`, the last :class:`ConfigError`; a message is a few
lines at most.
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
from wildmerge.study.model import DEMO_PREFIX, ConfigError
from wildmerge.study.plan import Study

__all__ = ["ConfigFileError", "check_config_files", "check_sources", "check_study", "close_match", "schema_problems"]

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
    """Parse one YAML file, raising ConfigFileError on a duplicate key (naming both lines)."""
    with open(path, encoding="utf-8") as f:
        loader = _StrictLoader(f)
        loader.name = str(path)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Duplicate keys in any of the config files (JSON files are YAML too)."""
    for p in paths:
        if Path(p).is_file():
            load_strict(p)


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


def check_sources(study: Study) -> None:
    """Every checkpoint source is demo:, an existing directory or a hub id; no checkpoint is
    listed twice under different names in one base's pool."""
    problems: list[str] = []
    for bname, b in study.bases.items():
        named = [(f"bases.{bname}.model", b.model)] + [
            (f"bases.{bname}.experts.{e}", c) for e, c in b.experts.items()
        ]
        for key, ck in named:
            why = _source_problem(ck.source)
            if why:
                problems.append(f"{key}: {why}")
        by_id: dict[str, str] = {}
        for e, c in b.experts.items():
            first = by_id.setdefault(c.identity, e)
            if first != e:
                problems.append(
                    f"bases.{bname}.experts: {first!r} and {e!r} are the same checkpoint "
                    f"({c.identity}); subsets would hold it twice: remove one"
                )
    if problems:
        raise ConfigFileError("\n  ".join(problems[:SHOW * 2]))
    _say_unfetched_hub_ids(study)


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
