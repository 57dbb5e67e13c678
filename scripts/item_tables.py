"""scores.csv + per-item outcome files -> paired per-item tables (vs base, vs best expert)."""

from pathlib import Path

from wildmerge.aggregate.scores import read_scores
from wildmerge.aggregate.item_tables import write_paired_tables
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
scores = read_scores(smk.input.scores)
# <results>/items/<base>/<model>/<benchmark>.parquet, written by the job of each score file
rows = scores[["base", "model_id", "benchmark"]].drop_duplicates().itertuples(index=False)
files = {(b, m, x): p for b, m, x in rows if (p := Path(smk.params.items_dir) / b / m / f"{x}.parquet").is_file()}
groups = dict(smk.params.groups)
vs_base = list(dict.fromkeys(m for name, ms in groups.items() if name != "table2" for m in ms))
merged = list(dict.fromkeys(scores.loc[scores.role == "merged", "method"]))
every = list(dict.fromkeys([m for ms in groups.values() for m in ms] + merged))
written = write_paired_tables(scores, files, vs_base or merged, every, Path(smk.output[0]).parent)
log.info("paired per-item tables: %s", ", ".join(p.name for p in written))
