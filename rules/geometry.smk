# Task-vector geometry of each base's experts (one streaming pass): norms, pairwise cosines
# overall and per layer, and their figures.


rule geometry:
    input:
        unpack(geometry_inputs),
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
        results("logs/geometry/{base}.log"),
    benchmark:
        results("benchmarks/geometry/{base}.tsv")
    params:
        names=lambda wc: sorted(STUDY.bases[wc.base].experts),
    resources:
        **rule_resources("geometry"),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/geometry.py"
