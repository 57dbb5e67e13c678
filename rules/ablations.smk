# Hyperparameter sweeps (paper Appendix C): their merges and evaluations come from the
# merge/evaluate rules; here each sweep becomes a CSV and two figures.


rule ablations:
    input:
        records=ablation_records,
        manifests=lambda wc: RERUNS.missing_manifests(STUDY.ablation_merge_ids(wc.ablation)),
    output:
        table=results("ablations/{ablation}.csv"),
        accuracy=report(
            results("figures/ablation_{ablation}_accuracy.png"),
            caption="../report/ablation.rst",
            category="Ablations",
        ),
        norm=report(
            results("figures/ablation_{ablation}_l2norm.png"),
            caption="../report/ablation_norm.rst",
            category="Ablations",
        ),
    log:
        results("logs/ablations/{ablation}.log"),
    benchmark:
        results("benchmarks/ablations/{ablation}.tsv")
    params:
        points=lambda wc: [dataclasses.asdict(p) for p in STUDY.ablations[wc.ablation]],
        grid=lambda wc: list(STUDY.sweeps[wc.ablation].grid),
        method=lambda wc: STUDY.sweeps[wc.ablation].method,
        fixed=lambda wc: dict(STUDY.sweeps[wc.ablation].params),
        scores=ablation_score_dirs,
        manifests=ablation_manifests,
        benchmarks=BENCHMARKS,
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/ablations.py"
