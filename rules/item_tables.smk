# Paired per-item statistics (issue 13): where the evaluations wrote per-item outcomes
# (evaluation.per_item), merges vs the base and vs the best expert with items as the unit.


rule item_tables:
    input:
        # the per-item files come from the jobs of the score files in scores.csv (one per row):
        # listed by the job from it, not as 38k more inputs here (they slow every DAG build)
        scores=results("scores.csv"),
    output:
        report(
            ITEM_TABLE_FILES,
            caption="../report/item_tables.rst",
            category="Tables",
        ),
    log:
        results("logs/item_tables.log"),
    benchmark:
        results("benchmarks/item_tables.tsv")
    params:
        groups=TABLE_GROUPS,
        items_dir=results("items"),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/item_tables.py"
