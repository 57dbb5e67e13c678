"""Score one model on every configured benchmark (one JSON per benchmark)."""

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
out_files = {b["name"]: f"{smk.output.scores}/{b['name']}.json" for b in p.benchmarks}
provenance = {**p.spec["identity"]}
if datasets:
    provenance["datasets"] = datasets  # benchmark -> hub dataset commits
if p.spec["identity"]["role"] == "merged":
    provenance["merge"] = info
    provenance["model_sha256"] = info["output"]["sha256"]
else:
    provenance["checkpoint"] = info
    provenance["model_sha256"] = info["sha256"]
values = evaluate_model(
    smk.input.model,
    p.benchmarks,
    out_files,
    include_path=p.include_path,
    batch_size=p.batch_size,
    device=p.device,
    dtype=p.dtype,
    seed=p.seed,
    limit=p.limit,
    provenance=provenance,
    trust_remote_code=p.spec["trust_remote_code"],
)
for name, value in values.items():
    log.info("%s %s: %.4f", smk.wildcards.model, name, value)
