"""Download one benchmark's hub datasets at their locked commits (once, before any evaluation)."""

import json
from pathlib import Path

from wildmerge.evaluation.task_index import builtin_dataset_index
from wildmerge.hub.datasets import fetch_dataset, task_datasets
from wildmerge.smk import setup_logging

log = setup_logging(snakemake)  # noqa: F821
bench = snakemake.wildcards.benchmark  # noqa: F821
out = Path(snakemake.output[0])  # noqa: F821
include = snakemake.params.include_path  # noqa: F821
# lm-eval's built-in tasks: the index the DAG build cached (lm-eval's own takes seconds to build)
index = builtin_dataset_index() if not include else None
records = [
    fetch_dataset(bench, d.path, d.name, d.revision, out.with_suffix(f".{i}.json"), Path(snakemake.params.lock),  # noqa: F821
                  log=log, file=d.file)
    for i, d in enumerate(task_datasets(bench, include, index))
]
for i in range(len(records)):
    out.with_suffix(f".{i}.json").unlink()
out.write_text(json.dumps({"benchmark": bench, "datasets": records}, indent=1, sort_keys=True) + "\n")
