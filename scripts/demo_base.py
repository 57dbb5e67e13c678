"""Train the demo base model (tiny Llama + its own tokenizer) from the seed."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from wildmerge.demo import train_base  # noqa: E402
from wildmerge.smk import setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
out = Path(smk.output[0])
metrics = train_base(out, seed=int(smk.params.seed))
(out / "wildmerge_demo.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
log.info("base quick accuracy: %s", metrics["quick_accuracy"])
