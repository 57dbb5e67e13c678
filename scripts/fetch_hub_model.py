"""Download one hub checkpoint (safetensors, config, tokenizer) at its locked commit."""

from pathlib import Path

from wildmerge.hub.models import fetch
from wildmerge.smk import setup_logging

log = setup_logging(snakemake)  # noqa: F821
ck = snakemake.params.checkpoint  # noqa: F821
fetch(ck.source, ck.revision, Path(snakemake.output[0]), Path(snakemake.params.lock), key=ck.key or ck.name, log=log)  # noqa: F821
