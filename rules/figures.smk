# scores.csv and norms.csv -> accuracy, per-task and L2-norm figures.


rule figures:
    input:
        scores=results("scores.csv"),
        norms=results("norms.csv"),
    output:
        accuracy=report(
            FIGURE_FILES["accuracy"],
            caption="../report/accuracy_vs_n.rst",
            category="Figures",
        ),
        taskwise=report(
            FIGURE_FILES["taskwise"],
            caption="../report/taskwise.rst",
            category="Figures",
        ),
        norm=report(
            FIGURE_FILES["norm"],
            caption="../report/norm_vs_n.rst",
            category="Figures",
        ),
    log:
        results("logs/figures.log"),
    benchmark:
        results("benchmarks/figures.tsv")
    params:
        bases=list(STUDY.bases),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/figures.py"
