"""The study a config describes: bases, expert pools, subsets, merges, models to score.

Everything here is computed at DAG-build time from the (schema-validated) config
alone: no model is downloaded or read.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from wildmerge.hub_lock import read_lock, recorded_commits
from wildmerge.provenance import cache_dir, stable_hash
from wildmerge.subsets import Subset, draw_subsets, merge_id

if TYPE_CHECKING:
    from wildmerge.ablations import AblationPoint
    from wildmerge.homogeneous import SuiteEval

DEMO_PREFIX = "demo:"
DEMO_ROOT = Path("resources/demo")
HUB_ROOT = Path("resources/hub")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def canonical(obj: Any) -> Any:
    """``obj`` with every mapping's keys sorted (recursively): the form given to Snakemake as
    params, so reordering keys in the config plans no job."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


class ConfigError(ValueError):
    """A config value the study cannot run with; the message names the key."""


@dataclass(frozen=True)
class Checkpoint:
    """Where one model's weights come from."""

    name: str
    source: str  # "demo:<name>", a local directory, or a hub id
    revision: str | None = None
    trust_remote_code: bool = False
    key: str = field(default="", compare=False, repr=False)  # config key named in errors; not in params

    @property
    def kind(self) -> str:
        if self.source.startswith(DEMO_PREFIX):
            return "demo"
        if os.path.isdir(self.source) or self.source.startswith(("/", "./", "../")):
            return "local"
        if _HUB_ID.match(self.source):
            return "hub"
        return "local"

    @property
    def identity(self) -> str:
        """Stable identity used in content hashes (source plus revision)."""
        return self.source + (f"@{self.revision}" if self.revision else "")

    @property
    def path(self) -> str:
        """Local directory the workflow reads the weights from."""
        kind = self.kind
        if kind == "demo":
            name = self.source[len(DEMO_PREFIX):]
            return str(DEMO_ROOT / "base") if name == "base" else str(DEMO_ROOT / "experts" / name)
        if kind == "hub":
            return str(HUB_ROOT / hub_dirname(self.source, self.revision))
        return self.source


def hub_dirname(repo_id: str, revision: str | None) -> str:
    return repo_id.replace("/", "--") + (f"@{revision}" if revision else "")


@dataclass(frozen=True)
class Merge:
    base: str
    merge_id: str
    subset: Subset
    method: str  # config method name, e.g. "ta"
    mergekit_method: str
    params: Mapping[str, Any]


@dataclass
class Base:
    name: str
    model: Checkpoint
    experts: dict[str, Checkpoint]
    subsets: list[Subset] = field(default_factory=list)
    merges: dict[str, Merge] = field(default_factory=dict)
    # merges only the ablations need (sweep points equal to a main method share its merge)
    ablation_merges: dict[str, Merge] = field(default_factory=dict)
    # homogeneous-merge experiments (Appendix E): their experts outside the main pool, merges
    group_experts: dict[str, Checkpoint] = field(default_factory=dict)
    homogeneous_merges: dict[str, Merge] = field(default_factory=dict)

    @property
    def model_ids(self) -> list[str]:
        return ["base"] + [f"expert-{e}" for e in sorted(self.experts)] + sorted(self.merges)


def parse_checkpoint(name: str, spec: Any, key: str) -> Checkpoint:
    if isinstance(spec, str):
        return Checkpoint(name=name, source=spec, key=key)
    if isinstance(spec, Mapping) and "source" in spec:
        return Checkpoint(
            name=name,
            source=str(spec["source"]),
            revision=spec.get("revision"),
            trust_remote_code=bool(spec.get("trust_remote_code", False)),
            key=key,
        )
    raise ConfigError(f"{key}: expected a source string or a mapping with 'source', got {spec!r}")


def merge_sizes(raw: list[Any], pool: int, base: str, key: str = "subsets.sizes") -> list[int]:
    sizes: set[int] = set()
    for s in raw:
        n = pool if s == "all" else int(s)
        if n > pool:
            raise ConfigError(
                f"{key}: n={n} is larger than the {pool} experts of base '{base}'; "
                f"drop it or use 'all'"
            )
        if n >= 2:
            sizes.add(n)
    return sorted(sizes)


SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def with_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` validated against the schema, which fills in its defaults (the only
    place defaults live); an invalid config raises jsonschema's ValidationError."""
    import copy

    from snakemake.utils import validate

    filled = copy.deepcopy(dict(config))
    validate(filled, str(SCHEMA))
    return filled


class Study:
    """Resolved view of a validated config: its bases, subsets and merges, the paths of
    results, and the lookups the rules make. Sweeps (:mod:`wildmerge.ablations`) and
    homogeneous groups (:mod:`wildmerge.homogeneous`) are expanded by their modules."""

    def __init__(self, config: Mapping[str, Any]):
        config = with_defaults(config)  # the Snakefile's has them already; a test's or script's may not
        self.config = config
        self._records: dict[tuple[str, str], str | None] = {}  # evaluation_record, per model
        self.results = str(config["results"])
        # merged weights (temporary unless merge.keep_models): node-local scratch on a cluster
        self.models_dir = str(config["merge"]["models_dir"] or f"{self.results}/models")
        sub = config["subsets"]
        self.seed = int(sub["seed"])
        self.per_size = int(sub["per_size"])
        self.methods: dict[str, dict[str, Any]] = {
            name: {"method": spec["method"], "params": dict(spec.get("params") or {})}
            for name, spec in config["methods"].items()
        }
        self.benchmarks: list[dict[str, Any]] = [
            b if isinstance(b, Mapping) else {"name": b} for b in config["evaluation"]["benchmarks"]
        ]
        ev = config["evaluation"]
        if ev.get("budget") is not None:
            from wildmerge.budget import check_budget

            try:
                check_budget(ev["budget"])
            except ValueError as err:
                raise ConfigError(str(err)) from None
            if ev.get("limit") is not None:
                raise ConfigError("evaluation.budget and evaluation.limit: set one of them (a budget samples "
                                  "items across each benchmark; limit takes the first N)")
        names = [b["name"] for b in self.benchmarks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"evaluation.benchmarks: listed twice: {dup}")
        self.bases: dict[str, Base] = {}
        for bname, bspec in config["bases"].items():
            model = parse_checkpoint("base", bspec["model"], f"bases.{bname}.model")
            experts = {
                e: parse_checkpoint(e, s, f"bases.{bname}.experts.{e}")
                for e, s in (bspec.get("experts") or {}).items()
            }
            if not experts:
                raise ConfigError(f"bases.{bname}.experts: at least one expert is needed")
            base = Base(name=bname, model=model, experts=experts)
            pool = {e: c.identity for e, c in experts.items()}
            for n in merge_sizes(sub["sizes"], len(pool), bname):
                try:
                    base.subsets += draw_subsets(bname, pool, n, self.per_size, self.seed)
                except ValueError as err:
                    raise ConfigError(f"subsets.per_size: {err}") from None
            for s in base.subsets:
                for mname, mspec in self.methods.items():
                    mid = merge_id(model.identity, s, mspec["method"], mspec["params"])
                    base.merges[mid] = Merge(bname, mid, s, mname, mspec["method"], mspec["params"])
            self.bases[bname] = base
        # the sweeps' and the homogeneous groups' merges (here, not at the top: those modules
        # import this one)
        from wildmerge.ablations import ablation_points
        from wildmerge.homogeneous import homogeneous_evals

        self.ablations: dict[str, list[AblationPoint]] = {}
        for name, spec in (config.get("ablations") or {}).items():
            self.ablations[name], merges = ablation_points(name, spec, self.bases, self.per_size, self.seed)
            for m in merges:
                self.bases[m.base].ablation_merges[m.merge_id] = m
        self.suites: dict[tuple[str, str], list[str]] = {}  # (base, group) -> benchmarks
        self.suite_evals: list[SuiteEval] = []
        for bname, spec in (config.get("homogeneous") or {}).items():
            if bname not in self.bases:
                raise ConfigError(f"homogeneous.{bname}: no base '{bname}' under bases")
            groups = homogeneous_evals(bname, spec, self.bases[bname], self.methods)
            self.suites.update(groups.suites)
            self.suite_evals += groups.evals
            self.bases[bname].group_experts.update(groups.experts)
            for m in groups.merges:
                self.bases[bname].homogeneous_merges[m.merge_id] = m

    # ---- lookups used by the rules -------------------------------------------------
    def ablation_merge_ids(self, name: str) -> list[tuple[str, str]]:
        """(base, merge id) of every merge a sweep needs, each once, in order."""
        return list(dict.fromkeys((p.base, p.merge_id) for p in self.ablations[name]))

    @property
    def benchmark_names(self) -> list[str]:
        return [b["name"] for b in self.benchmarks]

    def checkpoint(self, base: str, model: str) -> Checkpoint:
        """The checkpoint behind a 'base' or 'expert-<name>' model id."""
        b = self.bases[base]
        if model == "base":
            return b.model
        name = model.removeprefix("expert-")
        return b.experts[name] if name in b.experts else b.group_experts[name]

    def model_dir(self, base: str, model: str) -> str:
        if model.startswith("m-"):
            return f"{self.models_dir}/{base}/{model}"
        return self.checkpoint(base, model).path

    def all_checkpoints(self) -> list[Checkpoint]:
        out: list[Checkpoint] = []
        for b in self.bases.values():
            out.append(b.model)
            out.extend(b.experts.values())
            out.extend(b.group_experts.values())
        return out

    def hub_checkpoints(self) -> dict[str, Checkpoint]:
        return {Path(c.path).name: c for c in self.all_checkpoints() if c.kind == "hub"}

    def result(self, path: str) -> str:
        """A path inside the study's results directory (config key ``results``)."""
        return f"{self.results}/{path}"

    def score_dir(self, base: str, model: str) -> str:
        """Folder of a model's score files, one ``<benchmark>.json`` per benchmark."""
        return self.result(f"scores/{base}/{model}")

    def manifest_file(self, base: str, merge_id: str) -> str:
        """A merged model's manifest (wildmerge.merged_model): its inputs, output hash and norm."""
        return self.result(f"manifests/{base}/{merge_id}.json")

    def score_file(self, base: str, model: str, bench: str) -> str:
        return f"{self.score_dir(base, model)}/{bench}.json"

    # ---- per-item outcomes (issue 13) ------------------------------------------------
    @property
    def per_item(self) -> bool:
        """Whether evaluations also write per-item outcome files (evaluation.per_item)."""
        return bool(self.config["evaluation"]["per_item"])

    def item_file(self, base: str, model: str, bench: str) -> str:
        """Per-item outcomes of one (model, benchmark): written by the job of its score file."""
        return self.result(f"items/{base}/{model}/{bench}.parquet")

    # ---- incremental reruns ----------------------------------------------------------
    def benchmark_spec(self, name: str) -> dict[str, Any]:
        """One benchmark's settings in canonical form (what a score depends on)."""
        return dict(self._benchmark_specs[name])

    @functools.cached_property
    def _benchmark_specs(self) -> dict[str, dict[str, Any]]:
        return {b["name"]: canonical({"name": b["name"], "num_fewshot": b.get("num_fewshot"), "metric": b.get("metric")})
                for b in self.benchmarks}

    def score_settings(self) -> dict[str, Any]:
        """Evaluation settings that can change a score (execution-only ones -- batch size,
        device, resources, threads -- are left out; they are only recorded in provenance)."""
        ev = self.config["evaluation"]
        return {
            "include_path": ev.get("include_path"),
            "dtype": ev["dtype"],
            "seed": ev["seed"],
            "limit": ev.get("limit"),
            # the budget only where set: score keys of studies without one stay as they were
            **({"budget": ev["budget"]} if ev.get("budget") is not None else {}),
        }

    def score_key(self, base: str, model: str, bench: str, settings: Mapping[str, Any] | None = None) -> str:
        """Hash of everything one (model, benchmark) score depends on, stored in its score
        file: a file whose key differs from the config's is recomputed."""
        if model.startswith("m-"):
            ident: Any = {"merge": model, "merge_dtype": self.config["merge"]["dtype"]}
        else:
            ident = {"checkpoint": self.checkpoint(base, model).identity}
        return stable_hash({"model": ident, "benchmark": self.benchmark_spec(bench),
                            "settings": self.score_settings() if settings is None else dict(settings)}, 16)

    def outcome_key(self, base: str, model: str, bench: str) -> str:
        """The score key without the budget: the per-item outcomes of two budgets with the same
        outcome key are interchangeable (a grown budget reuses them, wildmerge.budget)."""
        settings = {k: v for k, v in self.score_settings().items() if k != "budget"}
        return self.score_key(base, model, bench, settings)

    def evaluated_models(self) -> list[tuple[str, str]]:
        """(base, model) of every model scored on the study's benchmarks, each once."""
        pairs = [(b.name, m) for b in self.bases.values() for m in b.model_ids]
        for name in self.ablations:
            bases = dict.fromkeys(b for b, _ in self.ablation_merge_ids(name))
            pairs += [(b, "base") for b in bases] + self.ablation_merge_ids(name)
        return list(dict.fromkeys(pairs))

    @functools.cached_property
    def locked_commits(self) -> dict[str, str]:
        """Lock key -> commit of the study's hub lock (``<results>/hub.lock``); {} before any fetch."""
        try:
            return {k: e.commit for k, e in read_lock(Path(self.results) / "hub.lock").items()}
        except ValueError:
            return {}  # a damaged lock is reported, naming the line, by the fetch jobs

    def _moved_in_lock(self, record: Mapping[str, Any], bench: str) -> list[str]:
        """The hub commits (``key -> commit``) the score was computed from that are no longer
        the locked ones."""
        lock = self.locked_commits
        if not lock:
            return []
        return sorted(f"{k} -> {lock[k]}" for k, c in recorded_commits(record, bench).items() if lock.get(k, c) != c)

    def pending_benchmarks(self, base: str, model: str) -> tuple[str, ...]:
        """Benchmarks (in name order) whose score file of this model is missing or was
        computed with other score-relevant settings; () when every score is current."""
        out = []
        for name in sorted(self.benchmark_names):
            try:
                with open(self.score_file(base, model, name)) as f:
                    record = json.load(f)
                current = record.get("score_key") == self.score_key(base, model, name)
                # a hub checkpoint or dataset it used moved in the lock (`wildmerge.hub update`)
                if current and self._moved_in_lock(record, name):
                    current = False
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                current = False
            if current and self.per_item:  # its per-item file comes from the same job
                current = os.path.exists(self.item_file(base, model, name))
            if not current:
                out.append(name)
        return tuple(out)

    @functools.cached_property
    def _pending(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(base, model) -> its pending benchmarks, for every model with any."""
        out = {}
        for base, model in self.evaluated_models():
            names = self.pending_benchmarks(base, model)
            if names:
                out[(base, model)] = names
        return out

    def is_pending(self, base: str, model: str) -> bool:
        """Whether any benchmark of this model has to be scored (pending_benchmarks)."""
        return (base, model) in self._pending

    def record_dir(self, base: str, model: str) -> str:
        """Folder of a model's evaluation record (the last evaluation job's)."""
        return self.result(f"evaluations/{base}/{model}")

    def evaluation_record(self, base: str, model: str) -> str | None:
        """The one Snakemake output of a model's evaluation job: a record the job writes last.
        The job writes the score (and per-item) files of the benchmarks it finds pending itself,
        each atomically; they are not outputs, so the paper study's DAG tracks ~2k files, not
        ~76k.

        With pending benchmarks: a new name, a hash of the records already there (the job
        removes those), so Snakemake runs the job. Otherwise the record that is there (an input
        of the aggregation, made by no rule: pending_records), or None without one. Read from
        the folder once per model (the rules ask more than once)."""
        if (base, model) in self._records:
            return self._records[(base, model)]
        self._records[(base, model)] = self._find_record(base, model)
        return self._records[(base, model)]

    def _find_record(self, base: str, model: str) -> str | None:
        folder = self.record_dir(base, model)
        try:
            before = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        except OSError:
            before = []
        if self.is_pending(base, model):
            return f"{folder}/{stable_hash({'base': base, 'model': model, 'records': before}, 16)}.json"
        if before:
            return f"{folder}/{max(before, key=lambda f: os.stat(f'{folder}/{f}').st_mtime_ns)}"
        return None

    def pending_records(self) -> list[str] | None:
        """Names (hashes) of the records the evaluation jobs of this run write, or None when every
        evaluated model is pending: what the evaluation rule's output is constrained to, so that
        the record of a model whose scores are current is a plain file, not a job's output."""
        pending = [pair for pair in self.evaluated_models() if self.is_pending(*pair)]
        if len(pending) == len(self.evaluated_models()):
            return None
        return [Path(self.evaluation_record(b, m)).stem for b, m in pending]

    def missing_manifests(self, pairs: list[tuple[str, str]]) -> list[str]:
        """Manifests of the merges among ``pairs`` whose scores are current but whose manifest
        is gone: the aggregation's inputs, so those merges run again (the others are read)."""
        out = []
        for b, m in pairs:
            path = self.manifest_file(b, m)
            if m.startswith("m-") and not self.is_pending(b, m) and not os.path.exists(path):
                out.append(path)
        return out

    def evaluation_records(self, pairs: list[tuple[str, str]]) -> list[str]:
        """The evaluation records of ``pairs`` (of those that have one: evaluation_record)."""
        return [r for b, m in pairs if (r := self.evaluation_record(b, m))]

    def score_dirs(self, pairs: list[tuple[str, str]]) -> list[str]:
        return [self.score_dir(b, m) for b, m in pairs]

    def merge(self, base: str, mid: str) -> Merge:
        b = self.bases[base]
        for merges in (b.merges, b.ablation_merges, b.homogeneous_merges):
            if mid in merges:
                return merges[mid]
        raise ConfigError(f"merge {mid} of base '{base}' is not part of this config")


def check_study(study: Study, config: Mapping[str, Any]) -> None:
    """Checks that need the libraries (not just the config): every method and its parameters
    against mergekit's registry, every benchmark against lm-eval's task index.

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
    from wildmerge.task_index import benchmark_problems, study_benchmarks

    benchmarks = study_benchmarks(study.benchmarks, study.suites)  # (config key, name, metric)
    # A check that passed is remembered (keyed by everything it depends on): importing
    # mergekit (torch, transformers) would otherwise cost every DAG build over a second.
    passed = _check_cache(
        [
            sorted((k, m, h, sorted(ns)) for (k, m, h), ns in sizes.items()),
            sorted(params_of.items()),
            sorted((n, s["method"], stable_hash(s["params"])) for n, s in study.methods.items()),
            benchmarks,
        ],
        include,
    )
    if passed is not None and passed.exists():
        return
    from wildmerge.merge import check_method

    for name, spec in study.methods.items():  # also methods no subset uses
        check_method(f"methods.{name}", spec["method"], spec["params"])
    for (key, method, h), ns in sizes.items():
        check_method(key, method, params_of[h], sorted(ns))
    problem = benchmark_problems(benchmarks, include)  # names, tags, metrics (wildmerge.task_index)
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
    code = Path(__file__).parent
    key = stable_hash(
        {
            "parts": [*parts, include],
            "versions": [version("mergekit"), version("lm_eval")],
            "code": [stable_hash((code / f).read_text()) for f in ("merge.py", "methods.py", "study.py", "evaluate.py",
                                                                     "task_index.py")],
        },
        24,
    )
    return cache_dir() / "checked" / key
