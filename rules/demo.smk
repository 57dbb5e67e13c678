# The offline demo zoo: a tiny Llama base, experts fine-tuned from it, and
# lm-eval multiple-choice tasks, all built here from seeded synthetic data.


rule demo_base:
    output:
        directory("resources/demo/base"),
    log:
        "logs/demo/base.log",
    benchmark:
        "resources/demo/benchmarks/base.tsv"
    params:
        seed=DEMO_CFG["seed"],
    threads: 1
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/demo_base.py"


rule demo_expert:
    input:
        "resources/demo/base",
    output:
        directory("resources/demo/experts/{expert}"),
    log:
        "logs/demo/expert_{expert}.log",
    benchmark:
        "resources/demo/benchmarks/expert_{expert}.tsv"
    params:
        seed=DEMO_CFG["seed"],
    threads: 1
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/demo_expert.py"


rule demo_tasks:
    output:
        directory("resources/demo/tasks"),
    log:
        "logs/demo/tasks.log",
    benchmark:
        "resources/demo/benchmarks/tasks.tsv"
    params:
        seed=DEMO_CFG["seed"],
        n_eval=DEMO_CFG["n_eval"],
    threads: 1
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/demo_tasks.py"
