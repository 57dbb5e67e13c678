# One job per merged model: mergekit merges a subset of experts into the base.


rule merge:
    input:
        unpack(merge_inputs),
    output:
        model=merged_model_dir(f"{STUDY.models_dir}/{{base}}/{{merge}}"),
        manifest=results("manifests/{base}/{merge}.json"),
    log:
        results("logs/merge/{base}/{merge}.log"),
    benchmark:
        results("benchmarks/merge/{base}/{merge}.tsv")
    params:
        checkpoints=merge_checkpoints,
        spec=merge_params,
        # merge.device is execution-only: read by the job from the config, not a param
        dtype=MERGE_CFG["dtype"],
    threads: 1
    resources:
        **rule_resources("merge", gpu=1),
    retries: 1
    group:
        "merge_eval"
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/merge.py"
