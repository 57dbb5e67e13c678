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
        include_path=include_path(),
        batch_size=EVAL_CFG.get("batch_size", 32),
        device=EVAL_CFG.get("device", "cpu"),
        dtype=EVAL_CFG.get("dtype", "float32"),
        seed=EVAL_CFG.get("seed", 1234),
        limit=EVAL_CFG.get("limit"),
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
