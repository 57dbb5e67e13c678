# One job per model (base, each expert, each merge): lm-eval on every benchmark, model
# loaded once; its folder holds one score JSON per benchmark (one output per job keeps the
# DAG of the paper study -- 2,384 models x 16 benchmarks -- quick to build).


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        scores=directory(results("scores/{base}/{model}")),
    log:
        results("logs/evaluate/{base}/{model}.log"),
    benchmark:
        results("benchmarks/evaluate/{base}/{model}.tsv")
    params:
        spec=eval_params,
        benchmarks=STUDY.benchmarks,
        **eval_settings(),
    threads: 1
    # a ready evaluation goes before new merges, so a (temporary) merged model is scored and
    # deleted before more are written: peak disk stays near (parallel jobs) x one model
    priority: 10
    resources:
        **rule_resources("evaluate", gpu=1),
    retries: 1
    group:
        "merge_eval"
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/evaluate.py"
