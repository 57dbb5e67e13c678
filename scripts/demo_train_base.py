"""Train the demo base model (tiny Llama + its own tokenizer) from the seed."""

import json
from pathlib import Path

from wildmerge.demo import train_base
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
out = Path(smk.output[0])
metrics = train_base(out, seed=int(smk.params.seed))
(out / "wildmerge_demo.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
log.info("base quick accuracy: %s", metrics["quick_accuracy"])
