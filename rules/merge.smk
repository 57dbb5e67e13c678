# One job per merged model: mergekit merges a subset of experts into the base.


def _merged_dir(path):
    return directory(path) if KEEP_MODELS else temp(directory(path))


rule merge:
    input:
        unpack(merge_inputs),
    output:
        model=_merged_dir(R + "/models/{base}/{merge}"),
        manifest=R + "/manifests/{base}/{merge}.json",
    log:
        R + "/logs/merge/{base}/{merge}.log",
    benchmark:
        R + "/benchmarks/merge/{base}/{merge}.tsv"
    params:
        spec=merge_params,
        dtype=MERGE_CFG.get("dtype", "float32"),
        device=MERGE_CFG.get("device", "cpu"),
        lazy_unpickle=MERGE_CFG.get("lazy_unpickle", False),
    threads: 1
    resources:
        **rule_resources("merge"),
    retries: 1
    group:
        "merge_eval"
    script:
        "../scripts/merge.py"
