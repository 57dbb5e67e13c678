"""Every benchmark's dataset record (fetch_benchmark_data) in one file for the evaluation jobs."""

from wildmerge.hub.datasets import write_index
from wildmerge.smk import setup_logging

log = setup_logging(snakemake)  # noqa: F821
write_index(list(snakemake.input), snakemake.output[0])  # noqa: F821
log.info("%d benchmark dataset records -> %s", len(snakemake.input), snakemake.output[0])  # noqa: F821
