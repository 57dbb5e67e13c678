"""Task-vector geometry of a base's experts in one streaming pass: pairwise cosine (overall and
per layer), each expert's task-vector norm, the cosine heatmap and the layer-sign figure."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

from pathlib import Path  # noqa: E402

from wildmerge.aggregate.figures import plot_cosine_heatmap, plot_layer_signs  # noqa: E402
from wildmerge.geometry import pairwise_cosine  # noqa: E402
from wildmerge.smk import setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
base = smk.wildcards.base
dirs = {name: Path(d) for name, d in zip(smk.params.names, smk.input.experts)}
cos, layers, norms = pairwise_cosine(Path(smk.input.base), dirs, with_norms=True)
cos.to_csv(smk.output.matrix)
layers.to_csv(smk.output.layers, index=False)
norms.to_csv(smk.output.norms)  # each expert's ||theta_expert - theta_base||_2, total and per layer
plot_cosine_heatmap(cos, smk.output.figure, f"Task-vector cosine similarity, base {base}")
plot_layer_signs(layers, smk.output.signs, f"Layers with positive / negative task-vector cosine, base {base}")
log.info("geometry of %d experts: norms %s", len(dirs), norms["total"].round(4).to_dict())
