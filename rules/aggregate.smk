# Score files -> tidy scores.csv -> paper tables (CSV + Markdown) and figures.


rule collect_scores:
    input:
        scores=STUDY.all_score_files(),
        manifests=[
            f"{R}/manifests/{b.name}/{m}.json" for b in STUDY.bases.values() for m in b.merges
        ],
    output:
        scores=R + "/scores.csv",
        norms=R + "/norms.csv",
    log:
        R + "/logs/collect_scores.log",
    script:
        "../scripts/collect_scores.py"


rule tables:
    input:
        R + "/scores.csv",
    output:
        report(
            expand(R + "/tables/{table}.{ext}", table=TABLE_NAMES, ext=["md", "csv"]),
            caption="../report/tables.rst",
            category="Tables",
        ),
    log:
        R + "/logs/tables.log",
    params:
        groups=TABLE_GROUPS,
    script:
        "../scripts/tables.py"


rule figures:
    input:
        scores=R + "/scores.csv",
        norms=R + "/norms.csv",
    output:
        accuracy=report(
            R + "/figures/accuracy_vs_n.png",
            caption="../report/accuracy_vs_n.rst",
            category="Figures",
        ),
        taskwise=report(
            R + "/figures/taskwise.png",
            caption="../report/taskwise.rst",
            category="Figures",
        ),
        norm=report(
            R + "/figures/norm_vs_n.png",
            caption="../report/norm_vs_n.rst",
            category="Figures",
        ),
    log:
        R + "/logs/figures.log",
    script:
        "../scripts/figures.py"


rule expert_cosine:
    input:
        base=lambda wc: STUDY.bases[wc.base].model.path,
        experts=lambda wc: [c.path for _, c in sorted(STUDY.bases[wc.base].experts.items())],
    output:
        matrix=R + "/geometry/{base}/cosine.csv",
        layers=R + "/geometry/{base}/cosine_layers.csv",
        figure=report(
            R + "/figures/cosine_{base}.png",
            caption="../report/cosine.rst",
            category="Figures",
        ),
    log:
        R + "/logs/expert_cosine/{base}.log",
    benchmark:
        R + "/benchmarks/expert_cosine/{base}.tsv"
    params:
        names=lambda wc: sorted(STUDY.bases[wc.base].experts),
    resources:
        **rule_resources("expert_cosine"),
    script:
        "../scripts/expert_cosine.py"
