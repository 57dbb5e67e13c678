"""Generate the demo's lm-eval multiple-choice tasks (YAML + jsonl data)."""

from pathlib import Path

from wildmerge.demo import make_tasks
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
paths = make_tasks(Path(smk.output[0]), n_eval=int(smk.params.n_eval), seed=int(smk.params.seed))
log.info("wrote %d demo tasks to %s", len(paths), smk.output[0])
