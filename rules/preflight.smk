# Pre-flight, before any merge or evaluation uses a checkpoint: safetensors only, custom
# code only if opted in, same architecture, tensor names/shapes, vocabulary and tokenizer as
# the base, every tensor finite; plus the content hash (and hub revision) for provenance.


rule preflight:
    input:
        unpack(preflight_inputs),
    output:
        STUDY.preflight_record("{base}", "{checkpoint}"),
    log:
        results("logs/preflight/{base}/{checkpoint}.log"),
    benchmark:
        results("benchmarks/preflight/{base}/{checkpoint}.tsv")
    params:
        checkpoint=lambda wc: STUDY.checkpoint(wc.base, wc.checkpoint),
        tokenizer_source=MERGE_CFG["tokenizer_source"],
    resources:
        **rule_resources("preflight"),
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/preflight.py"
