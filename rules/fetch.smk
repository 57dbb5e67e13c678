# Hub checkpoints are downloaded by jobs (never at DAG-build time) into the HF hub cache
# (HF_HOME / HF_HUB_CACHE) and linked into resources/hub, at the commit recorded in the
# study's lock file (results/hub.lock; `python -m wildmerge.hub update` moves it forward).
# No GPU; at most `hub_downloads` (a global resource, see profiles/slurm) run at once.


rule fetch_hub:
    # target only: every hub checkpoint and benchmark dataset of the study, e.g. on a login/transfer node before
    # the GPU jobs start (`snakemake fetch_hub --cores 4`)
    input:
        lambda wc: [c.path for c in STUDY.hub_checkpoints().values()],
        expand("resources/data/{benchmark}.json", benchmark=DATA_BENCHMARKS),


rule fetch_hub_model:
    output:
        directory("resources/hub/{hubdir}"),
    log:
        "logs/fetch/{hubdir}.log",
    benchmark:
        results("benchmarks/fetch_hub_model/{hubdir}.tsv")
    params:
        checkpoint=lambda wc: STUDY.hub_checkpoints()[wc.hubdir],
        lock=results("hub.lock"),
    resources:
        **rule_resources("fetch_hub_model", hub_downloads=1),
    # 429/5xx and dropped connections are retried inside the job (with backoff and resume);
    # what is left (401/403/404, pickle/adapter-only, disk, hash mismatch) retrying cannot fix.
    # This overrides the profile's global `retries: 2` (Snakemake 9: a rule's own value wins);
    # a job killed mid-file (time limit) is continued by the next run, from its partial file
    retries: 0
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/fetch_hub_model.py"


rule fetch_benchmark_data:
    # a benchmark's hub datasets (lm-eval task YAML: dataset_path/dataset_name), once, at the
    # commit in the lock file; local (generated) tasks have none, so the job only records that
    input:
        tasks=["resources/demo/tasks"] if EVAL_CFG["include_path"] == "demo" else [],
    output:
        "resources/data/{benchmark}.json",
    log:
        "logs/fetch_data/{benchmark}.log",
    benchmark:
        results("benchmarks/fetch_benchmark_data/{benchmark}.tsv")
    params:
        lock=results("hub.lock"),
        include_path=lambda wc: include_path(),
    resources:
        **rule_resources("fetch_benchmark_data", hub_downloads=1),
    # as fetch_hub_model: transient failures are retried inside the job, no Snakemake retries
    retries: 0
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/fetch_benchmark_data.py"


rule benchmark_data_index:
    # every benchmark's record in one file: the one data input of the evaluation jobs
    input:
        expand("resources/data/{benchmark}.json", benchmark=DATA_BENCHMARKS),
    output:
        DATA_INDEX,
    log:
        DATA_INDEX.replace("resources/data/", "logs/fetch_data/").replace(".json", ".log"),
    benchmark:
        results("benchmarks/benchmark_data_index.tsv")
    localrule: True
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/benchmark_data_index.py"
