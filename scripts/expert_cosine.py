"""Pairwise cosine similarity of the experts' task vectors (one streaming pass)."""

from pathlib import Path

from wildmerge.figures import plot_cosine_heatmap
from wildmerge.geometry import pairwise_cosine
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
dirs = {name: Path(d) for name, d in zip(smk.params.names, smk.input.experts)}
cos, layers = pairwise_cosine(Path(smk.input.base), dirs)
cos.to_csv(smk.output.matrix)
layers.to_csv(smk.output.layers, index=False)
plot_cosine_heatmap(cos, smk.output.figure, f"Task-vector cosine similarity, base {smk.wildcards.base}")
log.info("cosine matrix of %d experts written", len(dirs))
