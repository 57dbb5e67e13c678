"""The study a config describes: bases, expert pools, subsets, merges, models to score.

Everything here is computed at DAG-build time from the (schema-validated) config alone: no
model, score or record is read (what is on disk already: wildmerge.study.rerun).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

from wildmerge.provenance import stable_hash
from wildmerge.study.ablations import AblationPoint, ablation_points
from wildmerge.study.homogeneous import SuiteEval, homogeneous_evals
from wildmerge.study.model import (
    Base,
    Checkpoint,
    ConfigError,
    Merge,
    MethodSpec,
    Sweep,
    canonical,
    merge_sizes,
    parse_checkpoint,
)
from wildmerge.study.subsets import draw_subsets, merge_id


SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
#: lm-eval's prompt options: evaluation.<option> (the study's), or a benchmark entry's own
PROMPT_OPTIONS = ("apply_chat_template", "system_instruction", "fewshot_as_multiturn", "gen_kwargs")


@functools.cache
def prompt_defaults() -> dict[str, Any]:
    """The prompt options' defaults, read from the schema (the only place defaults live)."""
    import yaml

    props = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))["properties"]["evaluation"]["properties"]
    return {k: props[k]["default"] for k in PROMPT_OPTIONS}


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
    results, and the lookups the rules make. Sweeps (:mod:`wildmerge.study.ablations`) and
    homogeneous groups (:mod:`wildmerge.study.homogeneous`) are expanded by their modules."""

    def __init__(self, config: Mapping[str, Any]):
        config = with_defaults(config)  # the Snakefile's has them already; a test's or script's may not
        self.config = config
        self.results = str(config["results"])
        # merged weights (temporary unless merge.keep_models): node-local scratch on a cluster
        self.models_dir = str(config["merge"]["models_dir"] or f"{self.results}/models")
        sub = config["subsets"]
        self.seed = int(sub["seed"])
        self.per_size = int(sub["per_size"])
        self.methods: dict[str, MethodSpec] = {name: MethodSpec.parse(spec) for name, spec in config["methods"].items()}
        self.benchmarks: list[dict[str, Any]] = [
            b if isinstance(b, Mapping) else {"name": b} for b in config["evaluation"]["benchmarks"]
        ]
        ev = config["evaluation"]
        #: the budget as the code and the score key have it: a fraction (float) or items (int)
        self.budget: float | int | None = None
        if ev.get("budget") is not None:
            from wildmerge.evaluation.budget import check_budget

            try:
                self.budget = check_budget(ev["budget"])
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
                    mid = merge_id(model.identity, s, mspec.method, mspec.params)
                    base.merges[mid] = Merge(bname, mid, s, mname, mspec.method, mspec.params)
            self.bases[bname] = base
        # the sweeps' and the homogeneous groups' merges
        self.sweeps: dict[str, Sweep] = {n: Sweep.parse(n, s) for n, s in (config.get("ablations") or {}).items()}
        self.ablations: dict[str, list[AblationPoint]] = {}
        for name, sweep in self.sweeps.items():
            self.ablations[name], merges = ablation_points(sweep, self.bases, self.per_size, self.seed)
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
        """A merged model's manifest (wildmerge.merging.merged_model): its inputs, output hash and norm."""
        return self.result(f"manifests/{base}/{merge_id}.json")

    def score_file(self, base: str, model: str, bench: str) -> str:
        return f"{self.score_dir(base, model)}/{bench}.json"

    def preflight_record(self, base: str, checkpoint: str) -> str:
        """A checkpoint's pre-flight record (``base`` or ``expert-<name>``): its report and content hash."""
        return self.result(f"checkpoints/{base}/{checkpoint}.json")

    def suite_score_dir(self, base: str, suite: str, model: str) -> str:
        """Folder of a model's score files on a homogeneous group's suite (Appendix E)."""
        return self.result(f"homogeneous/scores/{base}/{suite}/{model}")

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
        """One benchmark's settings in canonical form, as its evaluation job gets them: name,
        num_fewshot, metric and every prompt option (prompt_settings)."""
        return dict(self._benchmark_specs[name])

    @functools.cached_property
    def _benchmark_specs(self) -> dict[str, dict[str, Any]]:
        return {b["name"]: canonical({"name": b["name"], "num_fewshot": b.get("num_fewshot"), "metric": b.get("metric"),
                                      **self.prompt_settings(b)})
                for b in self.benchmarks}

    def prompt_settings(self, bench: Mapping[str, Any]) -> dict[str, Any]:
        """A benchmark's lm-eval prompt options: those its entry sets, else the study's
        (``evaluation.<option>``). A homogeneous suite's benchmarks (``{"name": ...}``) get the study's."""
        ev = self.config["evaluation"]
        return {k: bench[k] if k in bench else ev[k] for k in PROMPT_OPTIONS}

    @staticmethod
    def prompt_key(spec: Mapping[str, Any]) -> dict[str, Any]:
        """The prompt options of ``spec`` that are part of its score key: those set away from
        their default (a study that sets none keeps its keys), fewshot_as_multiturn only with a
        chat template (it has no effect without one)."""
        defaults = prompt_defaults()
        key = {k: spec[k] for k in PROMPT_OPTIONS if k in spec and spec[k] != defaults[k]}
        if not spec.get("apply_chat_template"):
            key.pop("fewshot_as_multiturn", None)
        return canonical(key)

    def suite_benchmarks(self, base: str, suite: str) -> list[dict[str, Any]]:
        """A homogeneous group's suite as its evaluation job gets it (names, the study's prompt options)."""
        return [{"name": n, **self.prompt_settings({})} for n in self.suites[(base, suite)]]

    def score_settings(self) -> dict[str, Any]:
        """Evaluation settings that can change a score (execution-only ones -- batch size,
        device, resources, threads -- are left out; they are only recorded in provenance)."""
        ev = self.config["evaluation"]
        return {
            "include_path": ev.get("include_path"),
            "dtype": ev["dtype"],
            "seed": ev["seed"],
            "limit": ev.get("limit"),
            # the budget only where set: score keys of studies without one stay as they were;
            # {items: 500} is keyed as 500, the key it had when written `budget: 500`
            **({"budget": self.budget} if self.budget is not None else {}),
        }

    @functools.cached_property
    def task_definitions(self) -> dict[str, str]:
        """Benchmark -> hash of its task's definition, for the study's benchmarks (and suites')
        defined in an ``evaluation.include_path`` folder (YAML, the code and local data files it
        reads: wildmerge.evaluation.task_index.task_definitions), read once per DAG build; {} for
        lm-eval's built-in tasks and for ``include_path: demo`` (generated by a job, and tracked
        as its output), whose score keys stay as they were."""
        include = self.config["evaluation"].get("include_path")
        if not include or include == "demo" or not Path(include).is_dir():
            return {}
        from wildmerge.evaluation.task_index import task_definitions

        names = set(self.benchmark_names).union(*self.suites.values())
        return {n: h for n, h in task_definitions(include).items() if n in names}

    def score_key(self, base: str, model: str, bench: str, settings: Mapping[str, Any] | None = None) -> str:
        """Hash of everything one (model, benchmark) score depends on, stored in its score
        file: a file whose key differs from the config's is recomputed. A task defined in the
        include_path folder adds its definition (``task``): editing it reruns that benchmark."""
        if model.startswith("m-"):
            ident: Any = {"merge": model, "merge_dtype": self.config["merge"]["dtype"]}
        else:
            ident = {"checkpoint": self.checkpoint(base, model).identity}
        spec = self.benchmark_spec(bench)
        key_spec = {k: spec[k] for k in ("name", "num_fewshot", "metric")} | self.prompt_key(spec)
        key = {"model": ident, "benchmark": key_spec,
               "settings": self.score_settings() if settings is None else dict(settings)}
        if bench in self.task_definitions:
            key["task"] = self.task_definitions[bench]
        return stable_hash(key, 16)

    def outcome_key(self, base: str, model: str, bench: str) -> str:
        """The score key without the budget: the per-item outcomes of two budgets with the same
        outcome key are interchangeable (a grown budget reuses them, wildmerge.evaluation.budget)."""
        settings = {k: v for k, v in self.score_settings().items() if k != "budget"}
        return self.score_key(base, model, bench, settings)

    def evaluated_models(self) -> list[tuple[str, str]]:
        """(base, model) of every model scored on the study's benchmarks, each once."""
        pairs = [(b.name, m) for b in self.bases.values() for m in b.model_ids]
        for name in self.ablations:
            bases = dict.fromkeys(b for b, _ in self.ablation_merge_ids(name))
            pairs += [(b, "base") for b in bases] + self.ablation_merge_ids(name)
        return list(dict.fromkeys(pairs))

    def record_dir(self, base: str, model: str) -> str:
        """Folder of a model's evaluation record (the last evaluation job's)."""
        return self.result(f"evaluations/{base}/{model}")

    def record_file(self, base: str, model: str, record: str) -> str:
        """One evaluation record (Reruns.evaluation_record names it)."""
        return f"{self.record_dir(base, model)}/{record}.json"

    def score_dirs(self, pairs: list[tuple[str, str]]) -> list[str]:
        return [self.score_dir(b, m) for b, m in pairs]

    def merge(self, base: str, mid: str) -> Merge:
        b = self.bases[base]
        for merges in (b.merges, b.ablation_merges, b.homogeneous_merges):
            if mid in merges:
                return merges[mid]
        raise ConfigError(f"merge {mid} of base '{base}' is not part of this config")


