"""One hyperparameter sweep -> ablations/<name>.csv, accuracy-vs-parameter and -vs-L2-norm figures."""

from wildmerge.aggregate.ablations import ablation_table
from wildmerge.aggregate.collect import score_files
from wildmerge.aggregate.figures import plot_ablation, plot_ablation_norm
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
name, grid = smk.wildcards.ablation, list(smk.params.grid)
files = score_files(smk.params.scores, smk.params.benchmarks)
table = ablation_table(name, smk.params.points, files, smk.params.manifests)
table.to_csv(smk.output.table, index=False)
x, hue = grid[0], (grid[1] if len(grid) > 1 else None)
title = f"{name}: {smk.params.method} {dict(smk.params.fixed) or ''}".strip()
plot_ablation(table, x, hue, smk.output.accuracy, title)
plot_ablation_norm(table, hue or x, smk.output.norm, title, marker_by=x if hue else None)
log.info("%s: %d merges over %s", name, len(table), grid)
