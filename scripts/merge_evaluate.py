"""Rule merge_evaluate: a merged model made (or a kept one reused), scored on its pending
benchmarks, deleted unless merge.keep_models (wildmerge.evaluation.job)."""

from wildmerge.evaluation.start import warm_prepare
from wildmerge.warm import run_warm

# in a local run: forked from the warm worker (imports done, the job's datasets loaded); returns there
run_warm(prepare=warm_prepare(snakemake))  # noqa: F821

from wildmerge.evaluation.start import start_job  # noqa: E402

smk = snakemake  # noqa: F821
log, datasets = start_job(smk)  # offline from here on, with the fetched datasets pinned

from wildmerge.evaluation.job import merge_evaluate  # noqa: E402
from wildmerge.failures import marker_for  # noqa: E402
from wildmerge.evaluation.settings import EvalSettings  # noqa: E402
from wildmerge.study.plan import Study  # noqa: E402
from wildmerge.study.rerun import Reruns  # noqa: E402

study = Study(smk.config)
base, model = smk.wildcards.base, smk.wildcards.model
merge_evaluate(
    smk.params.merge,  # spec, checkpoint folders, dtype (rules/common.smk: merge_job)
    list(smk.input.info),
    study.model_dir(base, model),
    study.manifest_file(base, model),
    keep=bool(smk.config["merge"]["keep_models"]),
    device=smk.config["merge"]["device"],  # execution-only: not a param
    options=smk.config["merge"]["options"],  # mergekit execution options: not a param either
    marker=marker_for(smk.log[0]),
    targets=Reruns(study).targets(base, model),
    settings=EvalSettings.for_job(smk.params, smk.config["evaluation"]),
    identity=smk.params.spec["identity"],
    datasets=datasets,
    record=smk.output.record,
    log=log,
)
