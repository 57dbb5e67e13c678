# scores.csv -> the paper's tables and the paired method comparison (CSV + Markdown).


rule tables:
    input:
        results("scores.csv"),
    output:
        report(
            TABLE_FILES,
            caption="../report/tables.rst",
            category="Tables",
        ),
    log:
        results("logs/tables.log"),
    benchmark:
        results("benchmarks/tables.tsv")
    params:
        groups=TABLE_GROUPS,
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/tables.py"
