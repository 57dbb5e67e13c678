# Homogeneous vs. heterogeneous merges (paper Appendix E): named expert groups, each merged
# alone and all together (merges come from the merge rule), scored on the groups' suites.


# a model (base, expert or a group's merge) scored on one group's suite
rule evaluate_suite:
    input:
        unpack(eval_inputs),
    output:
        scores=directory(STUDY.suite_score_dir("{base}", "{suite}", "{model}")),
    log:
        results("logs/evaluate_suite/{base}/{suite}/{model}.log"),
    benchmark:
        results("benchmarks/evaluate_suite/{base}/{suite}/{model}.tsv")
    wildcard_constraints:
        base="[^/]+",
        model="[^/]+",
    params:
        **eval_settings(),
        **suite_tasks(),
        spec=eval_params,
        benchmarks=suite_benchmarks,
    threads: 1
    priority: 10
    resources:
        **rule_resources("evaluate", gpu=1),
    retries: 1
    # a merged model and its suite evaluations: one SLURM job on one node (profiles/slurm)
    group:
        "merge_eval"
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/evaluate_suite.py"


rule homogeneous:
    input:
        [STUDY.suite_score_dir(e.base, e.suite, e.model_id) for e in STUDY.suite_evals],
    output:
        table=results("tables/homogeneous.csv"),
        figure=report(
            results("figures/homogeneous.png"),
            caption="../report/homogeneous.rst",
            category="Figures",
        ),
    log:
        results("logs/homogeneous.log"),
    benchmark:
        results("benchmarks/homogeneous.tsv")
    params:
        evals=[dataclasses.asdict(e) for e in STUDY.suite_evals],
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/homogeneous.py"
