"""Score one model on a list of benchmarks (one JSON per benchmark), model loaded once."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

from pathlib import Path  # noqa: E402

from wildmerge.benchmark_data import use_fetched_data  # noqa: E402

# hub benchmark datasets were fetched by fetch_benchmark_data: offline from here on
datasets = use_fetched_data(list(snakemake.input.get("data", [])))  # noqa: F821

from wildmerge.evaluate import evaluate_model  # noqa: E402
from wildmerge.provenance import read_json  # noqa: E402
from wildmerge.smk import limit_threads, setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
limit_threads(smk)
p = smk.params
info = read_json(smk.input.info)
names = [b["name"] for b in p.benchmarks]
ev_items = bool(smk.config["evaluation"].get("per_item", True))
if hasattr(smk.output, "scores"):  # one folder of score files (evaluate_suite)
    out_files = {n: f"{smk.output.scores}/{n}.json" for n in names}
    items_files = {n: f"{smk.output.scores}/{n}.parquet" for n in names} if ev_items else {}
else:  # one output file per benchmark, in the order of params.benchmarks (evaluate)
    out_files = dict(zip(names, smk.output))
    # then, with evaluation.per_item, one per-item file per benchmark in the same order
    items_files = dict(zip(names, list(smk.output)[len(names):]))
provenance = {**p.spec["identity"]}
if datasets:
    provenance["datasets"] = datasets  # benchmark -> hub dataset commits
if p.spec["identity"]["role"] == "merged":
    provenance["merge"] = info
    provenance["model_sha256"] = info["output"]["sha256"]
else:
    provenance["checkpoint"] = info
    provenance["model_sha256"] = info["sha256"]


def _pools() -> dict[str, str]:
    """Per benchmark, the file keeping every item outcome scored so far (wildmerge.budget)."""
    from wildmerge.budget import pool_path

    okeys = p.spec.get("outcome_keys") or {}
    out = {}
    for n in names:
        if n in okeys:
            item = items_files.get(n) or f"{Path(out_files[n]).parent}/{n}.parquet"
            out[n] = str(pool_path(item, okeys[n]))
    return out


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
    items_files=items_files,
    budget=ev.get("budget"),
    pools=_pools(),
)
for name, value in values.items():
    log.info("%s %s: %.4f", smk.wildcards.model, name, value)
