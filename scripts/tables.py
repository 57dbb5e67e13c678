"""scores.csv -> paper tables (vs base per method group; vs best expert), CSV + Markdown."""

from pathlib import Path

from wildmerge.aggregate.tables import write_tables
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
out_dir = Path(smk.output[0]).parent
write_tables(Path(smk.input[0]), out_dir, dict(smk.params.groups))
log.info("tables written to %s", out_dir)
