# Score files -> tidy scores.csv (and the merges' L2 norms -> norms.csv).

# the study's models (sweeps have their own aggregation: rules/ablations.smk)
MODELS = [(b.name, m) for b in STUDY.bases.values() for m in b.model_ids]


rule collect:
    input:
        # the records of this run's evaluation jobs; the score files (params.scores) are
        # read from their folders, one per model
        records=RERUNS.evaluation_records(MODELS),
        # (only those whose model has nothing to score and that are gone: made again)
        manifests=RERUNS.missing_manifests([(b.name, m) for b in STUDY.bases.values() for m in b.merges]),
    output:
        scores=results("scores.csv"),
        norms=results("norms.csv"),
    log:
        results("logs/collect.log"),
    benchmark:
        results("benchmarks/collect.tsv")
    params:
        # read; inputs only where missing: a merge whose model is scored needs no job (or edge)
        manifests=[STUDY.manifest_file(b.name, m) for b in STUDY.bases.values() for m in b.merges],
        scores=STUDY.score_dirs(MODELS),
        benchmarks=BENCHMARKS,
        # removed when a score file is invalid, so no table or figure outlives its scores.csv
        derived=TABLE_FILES
        + ITEM_TABLE_FILES
        + [FIGURE_FILES["accuracy"], *FIGURE_FILES["taskwise"], FIGURE_FILES["norm"]],
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/collect.py"
