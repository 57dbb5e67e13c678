"""Rule evaluate_suite: a model scored on a homogeneous group's suite (wildmerge.evaluation.job)."""

from wildmerge.evaluation.start import warm_prepare
from wildmerge.warm import run_warm

# in a local run: forked from the warm worker (imports done, the job's datasets loaded); returns there
run_warm(prepare=warm_prepare(snakemake))  # noqa: F821

from wildmerge.evaluation.start import start_job  # noqa: E402

smk = snakemake  # noqa: F821
log, datasets = start_job(smk)  # offline from here on, with the fetched datasets pinned

from wildmerge.evaluation.job import Targets, evaluate_suite  # noqa: E402
from wildmerge.evaluation.settings import EvalSettings  # noqa: E402
from wildmerge.provenance import read_json  # noqa: E402
from wildmerge.study.plan import Study  # noqa: E402

benchmarks = Study(smk.config).suite_benchmarks(smk.wildcards.base, smk.wildcards.suite)  # with the prompt options
evaluate_suite(
    str(smk.input.model),
    Targets.folder(smk.output.scores, benchmarks, bool(smk.config["evaluation"]["per_item"])),
    EvalSettings.for_job(smk.params, smk.config["evaluation"], smk.params.spec["trust_remote_code"]),
    smk.params.spec["identity"],
    read_json(smk.input.info),
    datasets,
    log,
)
