"""Merge one subset of experts into the base with mergekit and write its manifest."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

from wildmerge.failures import marker_for  # noqa: E402
from wildmerge.merging.merged_model import make_merged_model  # noqa: E402
from wildmerge.smk import limit_threads, setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
limit_threads(smk)
make_merged_model(
    smk.params.spec,
    smk.params.checkpoints,  # the base and member folders (their records are the inputs)
    list(smk.input.info),
    smk.output.model,
    smk.output.manifest,
    dtype=smk.params.dtype,
    device=smk.config["merge"]["device"],  # execution-only: not a param
    options=smk.config["merge"]["options"],  # mergekit execution options: not a param either
    marker=marker_for(smk.log[0]),
    log=log,
)
