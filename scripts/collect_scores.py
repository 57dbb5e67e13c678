"""All score files -> tidy scores.csv; all merge manifests -> norms.csv."""

from wildmerge.collect import collect_norms, collect_scores, score_files
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
scores = collect_scores(score_files(smk.input.scores, smk.params.benchmarks))
scores.to_csv(smk.output.scores, index=False)
norms = collect_norms(smk.input.manifests)
norms.to_csv(smk.output.norms, index=False)
log.info("%d score rows from %d models; %d merged-model norms", len(scores), scores.model_id.nunique(), len(norms))
