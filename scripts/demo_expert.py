"""Fine-tune one demo expert from the demo base."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from wildmerge.demo import train_expert  # noqa: E402
from wildmerge.smk import setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
out = Path(smk.output[0])
metrics = train_expert(Path(smk.input[0]), smk.wildcards.expert, out, seed=int(smk.params.seed))
(out / "wildmerge_demo.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
log.info("expert %s quick accuracy: %s", smk.wildcards.expert, metrics["quick_accuracy"])
