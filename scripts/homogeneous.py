"""Suite scores of the homogeneous-merge experiment -> tables/homogeneous.csv and its figure."""

from collections import Counter

from wildmerge.aggregate.figures import plot_homogeneous
from wildmerge.aggregate.homogeneous import homogeneous_table, suite_accuracies
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
evals = list(smk.params.evals)
sizes = Counter((e["base"], e["suite"]) for e in evals if e["kind"] == "expert")
table = homogeneous_table(suite_accuracies(evals, list(smk.input)), sizes)
table.to_csv(smk.output.table, index=False)
plot_homogeneous(table, smk.output.figure)
log.info("homogeneous vs heterogeneous merges: %d rows", len(table))
