"""Score one model on a list of benchmarks (one JSON per benchmark), model loaded once; last,
the job's evaluation record (its one output). A merged model's job (merge_evaluate) merges it
first, or reuses a kept one, and deletes it at the end unless merge.keep_models."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from wildmerge.benchmark_data import use_fetched_data  # noqa: E402

# hub benchmark datasets were fetched by fetch_benchmark_data: offline from here on
_index = snakemake.input.get("data")  # noqa: F821 (the index of the records: benchmark_data_index)
datasets = use_fetched_data([str(_index)] if _index else [])

from wildmerge.evaluate import evaluate_model, write_record  # noqa: E402
from wildmerge.provenance import read_json  # noqa: E402
from wildmerge.smk import limit_threads, setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
limit_threads(smk)
p = smk.params
ev_items = bool(smk.config["evaluation"].get("per_item", True))
score_keys: dict[str, str] = {}
outcome_keys: dict[str, str] = {}
merged_dir = None  # a temporary merged model, deleted at the end (merge_evaluate)
if hasattr(smk.output, "scores"):  # one folder of score files (evaluate_suite)
    info = read_json(smk.input.info)
    model_dir = str(smk.input.model)
    benchmarks = list(p.benchmarks)
    names = [b["name"] for b in benchmarks]
    out_files = {n: f"{smk.output.scores}/{n}.json" for n in names}
    items_files = {n: f"{smk.output.scores}/{n}.parquet" for n in names} if ev_items else {}
else:  # evaluate: the pending benchmarks (Study.pending_benchmarks), into the study's files
    from wildmerge.study import Study

    study = Study(smk.config)
    base, model = smk.wildcards.base, smk.wildcards.model
    names = list(study.pending_benchmarks(base, model))
    benchmarks = [study.benchmark_spec(n) for n in names]
    out_files = {n: study.score_file(base, model, n) for n in names}
    items_files = {n: study.item_file(base, model, n) for n in names} if study.per_item else {}
    score_keys = {n: study.score_key(base, model, n) for n in names}
    outcome_keys = {n: study.outcome_key(base, model, n) for n in names}
    log.info("%s/%s: scoring %s", base, model, names or "nothing (every score is current)")
    model_dir = study.model_dir(base, model)
    if hasattr(p, "merge"):  # merge_evaluate: the merged model is made here
        from wildmerge.merged_model import make_merged_model, reusable_manifest

        manifest_path = study.manifest_file(base, model)
        infos = list(smk.input.info)
        job = p.merge  # spec, checkpoint folders, dtype (common.smk: merge_job)
        info = reusable_manifest(manifest_path, model_dir, job["spec"], infos, job["dtype"])
        if info is not None:
            log.info("reusing the merged model in %s (its manifest matches)", model_dir)
        elif names or not Path(manifest_path).exists():
            info = make_merged_model(
                job["spec"], job["checkpoints"], infos, model_dir, manifest_path,
                dtype=job["dtype"], device=smk.config["merge"]["device"],  # execution-only
                marker=Path(smk.log[0]).parent / "merge.failed.json", log=log,
            )
        else:
            info = read_json(manifest_path)
        if not study.config["merge"]["keep_models"]:
            merged_dir = model_dir
    else:
        info = read_json(smk.input.info)
model_sha = info["output"]["sha256"] if p.spec["identity"]["role"] == "merged" else info["sha256"]
provenance = {**p.spec["identity"], "model_sha256": model_sha}
if datasets:
    provenance["datasets"] = datasets  # benchmark -> hub dataset commits
provenance["merge" if p.spec["identity"]["role"] == "merged" else "checkpoint"] = info


def _pools() -> dict[str, str]:
    """Per benchmark, the file keeping every item outcome scored so far (wildmerge.budget)."""
    from wildmerge.budget import pool_path

    out = {}
    for n in names:
        if n in outcome_keys:
            item = items_files.get(n) or f"{Path(out_files[n]).parent}/{n}.parquet"
            out[n] = str(pool_path(item, outcome_keys[n]))
    return out


# execution-only settings: not params (changing them reruns nothing), recorded per score file
ev = smk.config["evaluation"]
values = {}
try:
    if names:  # with nothing to score (every score current) the model is not even loaded
        values = evaluate_model(
            model_dir,
            benchmarks,
            out_files,
            include_path=p.include_path,
            batch_size=ev["batch_size"],
            device=ev["device"],
            dtype=p.dtype,
            seed=p.seed,
            limit=p.limit,
            provenance=provenance,
            per_benchmark={n: {"score_key": k} for n, k in score_keys.items()},
            trust_remote_code=p.spec["trust_remote_code"],
            items_files=items_files,
            budget=ev.get("budget"),
            pools=_pools(),
        )
    for name, value in values.items():
        log.info("%s %s: %.4f", smk.wildcards.model, name, value)
    if hasattr(smk.output, "record"):
        write_record(smk.output.record, out_files, items_files, score_keys)
finally:  # a temporary merged model is deleted, scored or not (a retry merges it again)
    if merged_dir is not None:
        shutil.rmtree(merged_dir, ignore_errors=True)
