# Score files -> tidy scores.csv (and the merges' L2 norms -> norms.csv).


rule collect:
    input:
        scores=STUDY.all_score_files(),
        manifests=[results(f"manifests/{b.name}/{m}.json") for b in STUDY.bases.values() for m in b.merges],
    output:
        scores=results("scores.csv"),
        norms=results("norms.csv"),
    log:
        results("logs/collect.log"),
    params:
        benchmarks=BENCHMARKS,
        # removed when a score file is invalid, so no table or figure outlives its scores.csv
        derived=TABLE_FILES
        + ITEM_TABLE_FILES
        + [FIGURE_FILES["accuracy"], *FIGURE_FILES["taskwise"], FIGURE_FILES["norm"]],
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/collect.py"
