# Paired per-item statistics (issue 13): where the evaluations wrote per-item outcomes
# (evaluation.per_item), merges vs the base and vs the best expert with items as the unit.
ITEM_TABLE_FILES = [
    results(f"tables/{t}.{ext}") for t in ("items_vs_base", "items_vs_best_expert") for ext in ("csv", "md")
] + [results("tables/items_merges.csv")]


rule item_tables:
    input:
        scores=results("scores.csv"),
        outcomes=STUDY.all_item_files(),
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
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/item_tables.py"
