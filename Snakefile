# wildmerge: merge in-the-wild fine-tunes of base LLMs with mergekit, score every
# model with lm-eval, and aggregate the study into tables and figures.
#
#   snakemake --cores 2                                # demo study (config.yaml), offline
#   snakemake --profile slurm --configfile config/paper.yaml   # the paper study on SLURM

from snakemake.utils import min_version

min_version("9.0")


# The demo study is the default; a --configfile replaces it rather than being merged into it.
# Its YAML is checked first: Snakemake's loader names neither the file nor the line of an error
# (--configfile files are read by Snakemake before this file runs: `make run` checks them).
if not workflow.overwrite_configfiles:
    import sys

    sys.path.insert(0, workflow.basedir)
    from snakemake.exceptions import WorkflowError
    from wildmerge.study.configcheck import ConfigFileError, check_config_files

    try:
        check_config_files([f"{workflow.basedir}/config.yaml"])
    except ConfigFileError as err:
        raise WorkflowError(f"invalid config: {err}") from None

    configfile: f"{workflow.basedir}/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/fetch.smk"
include: "rules/preflight.smk"
include: "rules/merge.smk"
include: "rules/evaluate.smk"
include: "rules/collect.smk"
include: "rules/tables.smk"
include: "rules/item_tables.smk"
include: "rules/figures.smk"
include: "rules/geometry.smk"
include: "rules/ablations.smk"
include: "rules/homogeneous.smk"


# A local run starts one warm worker (wildmerge/warm.py: torch, transformers, mergekit and
# lm-eval imported once; merge, evaluation and demo-training jobs are forked from it);
# WILDMERGE_WARM=0 runs every job in its own process, as cluster jobs always do.
WARM_WORKER = []


onstart:
    # folders of merges killed mid-write (their rerun may be another merge after a config change)
    from wildmerge.merging.leftovers import remove_partial_merges

    for p in remove_partial_merges(STUDY.models_dir):
        print(f"removed {p} (left by a killed merge)", file=sys.stderr)
    if workflow.local_exec and not workflow.touch:
        from wildmerge import warm

        os.makedirs(".snakemake/log", exist_ok=True)
        log = ".snakemake/log/wildmerge-warm"
        # lm-eval's built-in task index too, when the study scores built-in tasks
        builtin = EVAL_CFG["include_path"] is None
        stages = warm.PRELOAD + ((warm.TASK_INDEX_STAGE,) if builtin else ())
        WARM_WORKER.append(warm.start(log=f"{log}.log", jobs_log=f"{log}-jobs.jsonl", stages=stages))


onsuccess:
    from wildmerge import warm

    for proc in WARM_WORKER:
        warm.stop(proc)


onerror:
    from wildmerge import warm

    for proc in WARM_WORKER:
        warm.stop(proc)


localrules:
    all,
    fetch_hub,
    collect,
    tables,
    figures,
    homogeneous,


rule all:
    input:
        final_outputs(),
    default_target: True
