# Hub checkpoints are downloaded by jobs (never at DAG-build time) into resources/hub.


rule fetch_hub_model:
    output:
        directory("resources/hub/{hubdir}"),
    log:
        "logs/fetch/{hubdir}.log",
    params:
        checkpoint=lambda wc: STUDY.hub_checkpoints()[wc.hubdir],
    resources:
        **rule_resources("fetch_hub_model"),
    retries: 3
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/fetch_hub_model.py"


rule checkpoint_info:
    # pre-flight (before any merge or evaluation uses the checkpoint): safetensors only,
    # custom code only if opted in, same architecture, tensor names/shapes, vocabulary and
    # tokenizer as the base; plus the content hash (and hub revision) for provenance
    input:
        unpack(checkpoint_info_inputs),
    output:
        results("checkpoints/{base}/{checkpoint}.json"),
    log:
        results("logs/checkpoint_info/{base}/{checkpoint}.log"),
    params:
        checkpoint=lambda wc: STUDY.checkpoint(wc.base, wc.checkpoint),
        tokenizer_source=MERGE_CFG.get("tokenizer_source", "error"),
    resources:
        **rule_resources("checkpoint_info"),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/checkpoint_info.py"
