"""Score one model on a list of benchmarks (one JSON per benchmark), model loaded once."""

from wildmerge.benchmark_data import use_fetched_data

# hub benchmark datasets were fetched by fetch_benchmark_data: offline from here on
datasets = use_fetched_data(list(snakemake.input.get("data", [])))  # noqa: F821

from wildmerge.evaluation import evaluate_model  # noqa: E402
from wildmerge.provenance import read_json  # noqa: E402
from wildmerge.smk import limit_threads, setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
limit_threads(smk)
p = smk.params
info = read_json(smk.input.info)
names = [b["name"] for b in p.benchmarks]
if hasattr(smk.output, "scores"):  # one folder of score files (evaluate_suite)
    out_files = {n: f"{smk.output.scores}/{n}.json" for n in names}
else:  # one output file per benchmark, in the order of params.benchmarks (evaluate)
    out_files = dict(zip(names, smk.output))
provenance = {**p.spec["identity"]}
if datasets:
    provenance["datasets"] = datasets  # benchmark -> hub dataset commits
if p.spec["identity"]["role"] == "merged":
    provenance["merge"] = info
    provenance["model_sha256"] = info["output"]["sha256"]
else:
    provenance["checkpoint"] = info
    provenance["model_sha256"] = info["sha256"]
# execution-only settings: not params (changing them reruns nothing), recorded per score file
ev = smk.config["evaluation"]
keys = p.spec.get("score_keys") or {}
values = evaluate_model(
    smk.input.model,
    p.benchmarks,
    out_files,
    include_path=p.include_path,
    batch_size=ev["batch_size"],
    device=ev["device"],
    dtype=p.dtype,
    seed=p.seed,
    limit=p.limit,
    provenance=provenance,
    per_benchmark={n: {"score_key": k} for n, k in keys.items()},
    trust_remote_code=p.spec["trust_remote_code"],
)
for name, value in values.items():
    log.info("%s %s: %.4f", smk.wildcards.model, name, value)
