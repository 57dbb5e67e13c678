"""scores.csv + norms.csv -> accuracy-vs-n, task-wise and L2-norm-vs-n figures."""

import pandas as pd

from wildmerge.aggregate.figures import plot_accuracy_vs_n, plot_norm_vs_n, plot_taskwise
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
scores = pd.read_csv(smk.input.scores, keep_default_na=False, na_values=[""])
norms = pd.read_csv(smk.input.norms)
plot_accuracy_vs_n(scores, smk.output.accuracy)
for base, out in zip(smk.params.bases, smk.output.taskwise):  # one figure per base (Figs. 7-10)
    plot_taskwise(scores[scores["base"] == base], out)
plot_norm_vs_n(norms, smk.output.norm)
log.info("figures written")
