# One job per model (base, each expert, each merge): lm-eval on every benchmark,
# one score JSON per benchmark, model loaded once.


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        expand(results("scores/{{base}}/{{model}}/{bench}.json"), bench=BENCHMARKS),
    log:
        results("logs/evaluate/{base}/{model}.log"),
    benchmark:
        results("benchmarks/evaluate/{base}/{model}.tsv")
    params:
        spec=eval_params,
        benchmarks=STUDY.benchmarks,
        **eval_settings(),
    threads: 1
    resources:
        **rule_resources("evaluate", gpu=1),
    retries: 1
    group:
        "merge_eval"
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/evaluate.py"
