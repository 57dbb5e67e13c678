# Score files -> tidy scores.csv -> paper tables (CSV + Markdown) and figures.

TABLE_FILES = expand(results("tables/{table}.{ext}"), table=TABLE_NAMES + ["paired"], ext=["md", "csv"])
FIGURE_FILES = {
    "accuracy": results("figures/accuracy_vs_n.png"),
    "taskwise": expand(results("figures/taskwise_{base}.png"), base=list(STUDY.bases)),
    "norm": results("figures/norm_vs_n.png"),
}


rule collect_scores:
    input:
        scores=STUDY.all_score_files(),
        manifests=[f"{R}/manifests/{b.name}/{m}.json" for b in STUDY.bases.values() for m in b.merges],
    output:
        scores=results("scores.csv"),
        norms=results("norms.csv"),
    log:
        results("logs/collect_scores.log"),
    params:
        benchmarks=BENCHMARKS,
        # removed when a score file is invalid, so no table or figure outlives its scores.csv
        derived=TABLE_FILES + [FIGURE_FILES["accuracy"], *FIGURE_FILES["taskwise"], FIGURE_FILES["norm"]],
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/collect_scores.py"


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
    params:
        groups=TABLE_GROUPS,
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/tables.py"


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
    params:
        bases=list(STUDY.bases),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/figures.py"


rule expert_cosine:
    input:
        base=lambda wc: STUDY.bases[wc.base].model.path,
        experts=lambda wc: [c.path for _, c in sorted(STUDY.bases[wc.base].experts.items())],
    output:
        matrix=results("geometry/{base}/cosine.csv"),
        layers=results("geometry/{base}/cosine_layers.csv"),
        norms=results("geometry/{base}/task_vector_norms.csv"),
        figure=report(
            results("figures/cosine_{base}.png"),
            caption="../report/cosine.rst",
            category="Figures",
        ),
        signs=report(
            results("figures/layer_signs_{base}.png"),
            caption="../report/layer_signs.rst",
            category="Figures",
        ),
    log:
        results("logs/expert_cosine/{base}.log"),
    benchmark:
        results("benchmarks/expert_cosine/{base}.tsv")
    params:
        names=lambda wc: sorted(STUDY.bases[wc.base].experts),
    resources:
        **rule_resources("expert_cosine"),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/expert_cosine.py"
