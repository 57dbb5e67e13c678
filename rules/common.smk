# Config validation, wildcard constraints and input functions shared by all rules.

import dataclasses
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)
from wildmerge.smk import export_pythonpath  # noqa: E402

# jobs (local, conda or SLURM) import the wildmerge package from this checkout
export_pythonpath(workflow.basedir)

from wildmerge.hub.datasets import data_index_name  # noqa: E402
from wildmerge.study.configcheck import (  # noqa: E402
    ConfigFileError,
    check_config_files,
    check_names,
    check_output_dirs,
    check_schema,
    check_sources,
    check_study,
)
from wildmerge.study.model import ConfigError, canonical  # noqa: E402
from wildmerge.study.plan import Study  # noqa: E402
from wildmerge.study.rerun import RECORD, Reruns  # noqa: E402

CONFIG_FILES = [str(p) for p in (workflow.overwrite_configfiles or [f"{workflow.basedir}/config.yaml"])]
try:  # short errors naming the file and key (snakemake's validate dumps the whole schema)
    check_config_files(CONFIG_FILES)
    check_schema(config, workflow.source_path("../schemas/config.schema.yaml"), CONFIG_FILES)
except ConfigFileError as err:
    raise WorkflowError(f"invalid config: {err}") from None
validate(config, workflow.source_path("../schemas/config.schema.yaml"))  # sets the defaults

try:
    STUDY = Study(config)
    check_sources(STUDY)
    check_names(STUDY, config)
    check_output_dirs(STUDY, local=workflow.local_exec)
    # what is on disk already: pending benchmarks, evaluation records; the main process compares
    # each local checkpoint's files with its pre-flight record (a cluster job reads the record)
    RERUNS = Reruns(STUDY, check_content=workflow.is_main_process)
    if workflow.is_main_process:  # not again in every cluster job
        check_study(STUDY, config)
        RERUNS.check_local_checkpoints()  # stat calls; a changed one is hashed again
except (ConfigError, ConfigFileError, ValueError) as err:
    raise WorkflowError(f"invalid config: {err}") from None

# name order: reordering evaluation.benchmarks plans no job
BENCHMARKS = sorted(STUDY.benchmark_names)
# benchmarks whose hub datasets are fetched (also the homogeneous groups' suites), and the one
# file listing their records (rules/fetch.smk: benchmark_data_index), named for the set
DATA_BENCHMARKS = sorted(set(BENCHMARKS).union(*STUDY.suites.values()))
# named for the records' state too: a record gone (`wildmerge.hub update` moved its dataset) or
# fetched again gives another name, so the index is made again (with the record fetched first)
DATA_INDEX = f"resources/data/sets/{data_index_name(DATA_BENCHMARKS, RERUNS.locked_commits)}.json"
MERGE_CFG = config["merge"]
EVAL_CFG = config["evaluation"]
DEMO_CFG = config["demo"]
KEEP_MODELS = bool(MERGE_CFG["keep_models"])
# vs-base tables (paper Tables 1 and 3) -> methods; table2 (vs best expert) has every method
TABLE_GROUPS = config.get("tables") or {"table1": list(STUDY.methods)}
TABLE_NAMES = sorted(set(TABLE_GROUPS) | {"table2"})


wildcard_constraints:
    base="[A-Za-z0-9][A-Za-z0-9_.-]*",
    merge="m-[0-9a-f]{12}",
    model="base|expert-[A-Za-z0-9][A-Za-z0-9_.-]*|m-[0-9a-f]{12}",
    checkpoint="base|expert-[A-Za-z0-9][A-Za-z0-9_.-]*",
    expert="[A-Za-z0-9][A-Za-z0-9_.-]*",
    bench="[^/]+",
    record=RECORD,
    ablation="[A-Za-z0-9][A-Za-z0-9_.-]*",
    suite="[A-Za-z0-9][A-Za-z0-9_.-]*",


def results(path):
    """A path inside this study's results directory (config key `results`): the one way
    rules build result paths (Study.result, which also names the score files)."""
    return STUDY.result(path)


TABLE_FILES = expand(results("tables/{table}.{ext}"), table=TABLE_NAMES + ["paired"], ext=["md", "csv"])
# paired per-item tables (rules/item_tables.smk)
ITEM_TABLE_FILES = [
    results(f"tables/{t}.{ext}") for t in ("items_vs_base", "items_vs_best_expert") for ext in ("csv", "md")
] + [results("tables/items_merges.csv")]
FIGURE_FILES = {
    "accuracy": results("figures/accuracy_vs_n.png"),
    "taskwise": expand(results("figures/taskwise_{base}.png"), base=list(STUDY.bases)),
    "norm": results("figures/norm_vs_n.png"),
}


def merged_model_dir(path):
    """Merged weights are temporary (deleted once scored) unless merge.keep_models."""
    return directory(path) if KEEP_MODELS else temp(directory(path))


def rule_resources(rule_name, **defaults):
    """Cluster resources for a rule: defaults overridden by config['resources'][rule]."""
    res = dict(defaults)
    res.update(config["resources"].get(rule_name, {}))
    return res


# resources.planned: runtime and mem_mb per job from the plan (wildmerge.plan.runtimes), calibrated
# on the jobs finished before this run; a cluster job keeps what it was submitted with
PLANNED = config["resources"].get("planned")
if PLANNED is not None and not workflow.remote_exec:
    from wildmerge.plan.runtimes import PlannedResources  # noqa: E402

    PLANNER = PlannedResources(STUDY, PLANNED, RERUNS)


def planned_resources(rule_name, res):
    """A rule's resources with runtime and mem_mb planned per job (resources.planned), or as they are."""
    if PLANNED is None or workflow.remote_exec:
        return res
    return {
        **res,
        "runtime": lambda wildcards, attempt: PLANNER.runtime(rule_name, wildcards.base, wildcards.model, attempt),
        "mem_mb": lambda wildcards: PLANNER.mem_mb(rule_name, wildcards.base, wildcards.model, PLANNED["mem_floor_mb"]),
    }


def merge_eval_resources():
    """A merged model's job (merge_evaluate: merge, then evaluation) asks for evaluate's
    resources, at least merge's memory and CPUs, and both runtimes; resources.merge_evaluate
    overrides."""
    merge, ev = rule_resources("merge", gpu=1), rule_resources("evaluate", gpu=1)
    res = {**merge, **ev}
    for key, combine in (("mem_mb", max), ("cpus_per_task", max), ("runtime", sum)):
        if isinstance(merge.get(key), int) and isinstance(ev.get(key), int):
            res[key] = combine([merge[key], ev[key]])
    res.update(config["resources"].get("merge_evaluate", {}))
    return planned_resources("merge_evaluate", res)


def eval_settings():
    """lm-eval settings shared by every evaluation rule that can change a score (Snakemake
    params: a change reruns the evaluations). Execution-only ones (batch size, device) are
    read by the job from the config and only recorded in each score file."""
    return {**STUDY.score_settings(), "include_path": include_path()}


def suite_tasks():
    """evaluate_suite's param `tasks`: the definitions of its suite's tasks where the
    include_path folder defines any benchmark (editing one reruns the suites holding it; the
    params of other studies' suite evaluations stay as they were)."""
    if not STUDY.task_definitions:
        return {}
    return {"tasks": lambda wc: {b: STUDY.task_definitions.get(b) for b in STUDY.suites[(wc.base, wc.suite)]}}


def include_path():
    """Directory of extra lm-eval task YAMLs, or None."""
    path = EVAL_CFG["include_path"]
    return "resources/demo/tasks" if path == "demo" else path


def checkpoint_folder(base, model):
    """A checkpoint's folder as an input. A local one's is `ancient`: its content, not its
    mtime, says when it changed (compared at DAG build: Reruns.check_local_checkpoints, which
    sets its pre-flight record aside), so a copy or a `touch` reruns nothing."""
    ck = STUDY.checkpoint(base, model)
    return ancient(ck.path) if ck.kind == "local" else ck.path


def preflight_inputs(wildcards):
    return {
        "model": checkpoint_folder(wildcards.base, wildcards.checkpoint),
        "base": checkpoint_folder(wildcards.base, "base"),
    }


def geometry_inputs(wildcards):
    """The base's and experts' folders, and the pre-flight records of the local ones: the
    geometry is made again when one of them holds other content (its record is made again)."""
    b = STUDY.bases[wildcards.base]
    models = ["base"] + [f"expert-{e}" for e in sorted(b.experts)]
    local = [m for m in models if STUDY.checkpoint(wildcards.base, m).kind == "local"]
    return {
        "base": checkpoint_folder(wildcards.base, "base"),
        "experts": [checkpoint_folder(wildcards.base, m) for m in models[1:]],
        "records": [STUDY.preflight_record(wildcards.base, m) for m in local],
    }


def merge_wildcard(wildcards):
    """The merge id: wildcard `merge` (merge rule) or `model` (merge_evaluate)."""
    return getattr(wildcards, "merge", None) or wildcards.model


def merge_inputs(wildcards):
    """The pre-flight records of the base and the members (each made from its checkpoint's
    folder, so the folders are not inputs again: a DAG edge per file costs at paper scale)."""
    m = STUDY.merge(wildcards.base, merge_wildcard(wildcards))
    return {
        "info": [STUDY.preflight_record(wildcards.base, "base")]
        + [STUDY.preflight_record(wildcards.base, f"expert-{e}") for e in m.subset.members],
    }


def merge_checkpoints(wildcards):
    """Folders of the base and the members, in the order of merge_inputs' records."""
    m = STUDY.merge(wildcards.base, merge_wildcard(wildcards))
    return {
        "base": STUDY.bases[wildcards.base].model.path,
        "experts": [STUDY.checkpoint(wildcards.base, f"expert-{e}").path for e in m.subset.members],
    }


def merge_params(wildcards):
    m = STUDY.merge(wildcards.base, merge_wildcard(wildcards))
    return {
        "base": wildcards.base,
        "merge_id": m.merge_id,
        "method": m.method,
        "mergekit_method": m.mergekit_method,
        "params": canonical(m.params),
        "n": m.subset.n,
        "subset_id": m.subset.subset_id,
        "members": list(m.subset.members),
    }


def eval_inputs(wildcards):
    if wildcards.model.startswith("m-"):
        inputs = {"model": STUDY.model_dir(wildcards.base, wildcards.model)}
        inputs["info"] = STUDY.manifest_file(wildcards.base, wildcards.model)
    else:
        inputs = {"model": checkpoint_folder(wildcards.base, wildcards.model)}
        inputs["info"] = STUDY.preflight_record(wildcards.base, wildcards.model)
    return {**inputs, **benchmark_inputs()}


def benchmark_inputs():
    """The benchmarks an evaluation reads: the demo's generated tasks, or the hub datasets'
    index (fetched once, rules/fetch.smk)."""
    if EVAL_CFG["include_path"] == "demo":
        return {"tasks": "resources/demo/tasks"}
    return {"data": DATA_INDEX}


def merge_eval_inputs(wildcards):
    """A merged model's job: the pre-flight records of the base and the members, and the
    benchmark data (the model is made by the job itself)."""
    return {**merge_inputs(wildcards), **benchmark_inputs()}


def merge_job(wildcards):
    """What merge_evaluate merges: spec, the checkpoint folders and the dtype."""
    return {"spec": merge_params(wildcards), "checkpoints": merge_checkpoints(wildcards), "dtype": MERGE_CFG["dtype"]}


def eval_params(wildcards):
    if wildcards.model.startswith("m-"):
        m = STUDY.merge(wildcards.base, wildcards.model)
        role, method, n, subset, members = "merged", m.method, m.subset.n, m.subset.subset_id, list(m.subset.members)
        trust = False
    else:
        ck = STUDY.checkpoint(wildcards.base, wildcards.model)
        role = "base" if wildcards.model == "base" else "expert"
        method, subset = "", ""
        n = 0 if role == "base" else 1
        members = [] if role == "base" else [ck.name]
        trust = ck.trust_remote_code
    return {
        "identity": {
            "base": wildcards.base,
            "model_id": wildcards.model,
            "role": role,
            "method": method,
            "n": n,
            "subset_id": subset,
            "members": members,
        },
        "trust_remote_code": trust,
    }


def suite_benchmarks(wildcards):
    """A homogeneous group's suite as evaluate_suite's params: the names, and the prompt options
    that are in a score's key (Study.prompt_key: none for a study that sets none), so changing
    one reruns the suites' evaluations; the job gets the options from Study.suite_benchmarks."""
    suite = STUDY.suite_benchmarks(wildcards.base, wildcards.suite)
    return [{"name": b["name"], **STUDY.prompt_key(b)} for b in suite]


def ablation_models(wildcards):
    pairs = STUDY.ablation_merge_ids(wildcards.ablation)
    bases = dict.fromkeys(b for b, _ in pairs)
    return [(b, "base") for b in bases] + pairs


def ablation_records(wildcards):
    return RERUNS.evaluation_records(ablation_models(wildcards))


def ablation_score_dirs(wildcards):
    return STUDY.score_dirs(ablation_models(wildcards))


def ablation_manifests(wildcards):
    return [STUDY.manifest_file(b, m) for b, m in STUDY.ablation_merge_ids(wildcards.ablation)]


def final_outputs():
    out = [results("scores.csv"), FIGURE_FILES["accuracy"], FIGURE_FILES["norm"]]
    out += [results(f"figures/{f}_{b}.png") for b in STUDY.bases for f in ("cosine", "layer_signs", "taskwise")]
    out += [results(f"tables/{t}.md") for t in TABLE_NAMES]
    out += [results(f"figures/ablation_{a}_{s}.png") for a in STUDY.ablations for s in ("accuracy", "l2norm")]
    if STUDY.suite_evals:
        out += [results("figures/homogeneous.png"), results("tables/homogeneous.csv")]
    if STUDY.per_item:  # paired per-item tables (rules/item_tables.smk)
        out += [results(f"tables/{t}.md") for t in ("items_vs_base", "items_vs_best_expert")]
    return sorted(set(out))
