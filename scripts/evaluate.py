"""Rule evaluate: the base or an expert scored on its pending benchmarks (wildmerge.evaluation.job)."""

from wildmerge.evaluation.start import warm_prepare
from wildmerge.warm import run_warm

# in a local run: forked from the warm worker (imports done, the job's datasets loaded); returns there
run_warm(prepare=warm_prepare(snakemake))  # noqa: F821

from wildmerge.evaluation.start import start_job  # noqa: E402

smk = snakemake  # noqa: F821
log, datasets = start_job(smk)  # offline from here on, with the fetched datasets pinned

from wildmerge.evaluation.job import evaluate_checkpoint  # noqa: E402
from wildmerge.evaluation.settings import EvalSettings  # noqa: E402
from wildmerge.provenance import read_json  # noqa: E402
from wildmerge.study.plan import Study  # noqa: E402
from wildmerge.study.rerun import Reruns  # noqa: E402

study = Study(smk.config)
base, model = smk.wildcards.base, smk.wildcards.model
evaluate_checkpoint(
    study.model_dir(base, model),
    Reruns(study).targets(base, model),
    EvalSettings.for_job(smk.params, smk.config["evaluation"], smk.params.spec["trust_remote_code"]),
    smk.params.spec["identity"],
    read_json(smk.input.info),
    datasets,
    smk.output.record,
    log,
)
