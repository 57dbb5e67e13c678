# wildmerge: merge in-the-wild fine-tunes of base LLMs with mergekit, score every
# model with lm-eval, and aggregate the study into tables and figures.
#
#   snakemake --cores 2                                # demo study (config.yaml), offline
#   snakemake --profile slurm --configfile config/paper.yaml   # the paper study on SLURM

from snakemake.utils import min_version

min_version("9.0")


# The demo study is the default; a --configfile replaces it rather than being merged into it.
if not workflow.overwrite_configfiles:

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
include: "rules/figures.smk"
include: "rules/geometry.smk"
include: "rules/ablations.smk"
include: "rules/homogeneous.smk"


localrules:
    all,
    fetch_hub,
    collect_scores,
    tables,
    figures,
    homogeneous,


rule all:
    input:
        final_outputs(),
    default_target: True
