# A merged model on its own (wildmerge.merging.merged_model): for the homogeneous groups' suites
# (rules/homogeneous.smk) and for a manifest lost after its model was scored. The study's own
# merged models are made by the job that scores them (rules/evaluate.smk: merge_evaluate).


rule merge:
    input:
        unpack(merge_inputs),
    output:
        model=merged_model_dir(f"{STUDY.models_dir}/{{base}}/{{merge}}"),
        manifest=STUDY.manifest_file("{base}", "{merge}"),
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
