"""Record a checkpoint's content hash (and hub revision) once, for provenance."""

from wildmerge.provenance import atomic_write_json, checkpoint_record
from wildmerge.smk import setup_logging

log = setup_logging(snakemake)  # noqa: F821
ck = snakemake.params.checkpoint  # noqa: F821
rec = checkpoint_record(snakemake.input[0], ck.source, ck.revision)  # noqa: F821
rec["name"] = ck.name
log.info("%s: sha256 %s", ck.source, rec["sha256"])
atomic_write_json(snakemake.output[0], rec)  # noqa: F821
