# Evaluation jobs: one per model with pending benchmarks (score file missing or computed with
# other score-relevant settings or hub commits: Reruns.pending_benchmarks), its model loaded
# once. Each (model, benchmark) has its own score file, so adding a benchmark scores only the
# new pairs and never rewrites the others; a model whose scores are all current has no job.
# The job's one output is its evaluation record, written last (Reruns.evaluation_record, a new
# name each time the model is pending); the score and per-item files are written by the job,
# each atomically, and are not outputs: Snakemake tracks one file per job, not 2 per benchmark.

# the records this run writes; others are plain inputs, made by no job. A cluster job takes any
# record: each task of a SLURM job array first builds the DAG of the array's first job, which may
# be done by then (its record no longer a pending one)
RECORD_PATTERN = RECORD if workflow.remote_exec else RERUNS.record_pattern()


# the base and the experts
rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        record=STUDY.record_file("{base}", "{model}", "{record}"),
    log:
        results("logs/evaluate/{base}/{model}/{record}.log"),
    benchmark:
        results("benchmarks/evaluate/{base}/{model}/{record}.tsv")
    wildcard_constraints:
        model="base|expert-[A-Za-z0-9][A-Za-z0-9_.-]*",
        record=RECORD_PATTERN,
    params:
        **eval_settings(),
        spec=eval_params,
    threads: 1
    # a ready evaluation goes before new merges (evaluate_suite), so a temporary merged model
    # is scored and deleted before more are written: peak disk near (parallel jobs) x one model
    priority: 10
    resources:
        **planned_resources("evaluate", rule_resources("evaluate", gpu=1)),
    retries: 1
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/evaluate.py"


# a merged model: one job merges it (wildmerge.merging.merged_model; a kept one is reused), scores it
# and deletes it unless merge.keep_models -- its weights never leave the job's node, and the
# paper study's DAG has one job per merged model, not two (merge rule: rules/merge.smk)
rule merge_evaluate:
    input:
        unpack(merge_eval_inputs),
    output:
        record=STUDY.record_file("{base}", "{model}", "{record}"),
    log:
        results("logs/merge_evaluate/{base}/{model}/{record}.log"),
    benchmark:
        results("benchmarks/merge_evaluate/{base}/{model}/{record}.tsv")
    wildcard_constraints:
        model="m-[0-9a-f]{12}",
        record=RECORD_PATTERN,
    params:
        **eval_settings(),
        spec=eval_params,
        merge=merge_job,
    threads: 1
    resources:
        **merge_eval_resources(),
    retries: 1
    conda:
        "../envs/wildmerge.yaml"
    script:
        "../scripts/merge_evaluate.py"
