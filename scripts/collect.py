"""All score files -> tidy scores.csv; all merge manifests -> norms.csv."""

from pathlib import Path

from wildmerge.aggregate.collect import collect_norms, collect_scores, score_files
from wildmerge.aggregate.scorecheck import ScoreFileError
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
try:
    scores = collect_scores(score_files(smk.params.scores, smk.params.benchmarks))
except (ScoreFileError, FileNotFoundError):
    # tables and figures made from the previous scores.csv must not look current
    stale = [Path(p) for p in smk.params.derived if Path(p).exists()]
    for p in stale:
        p.unlink()
    if stale:
        log.error("removed %d tables/figures made from the previous scores.csv", len(stale))
    raise
scores.to_csv(smk.output.scores, index=False)
norms = collect_norms(smk.params.manifests)
norms.to_csv(smk.output.norms, index=False)
log.info("%d score rows from %d models; %d merged-model norms", len(scores), scores.model_id.nunique(), len(norms))
