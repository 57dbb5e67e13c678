# Evaluation jobs: one per model, over the benchmarks whose score file is missing or was
# computed with other score-relevant settings (Study.pending_benchmarks); the model is
# loaded once per job. Each (model, benchmark) has its own score file, so adding a
# benchmark scores only the new pairs and never rewrites the others. Models needing the
# same benchmarks share one rule (wildcards constrained to them); a model whose scores are
# all current has no rule: its files are plain inputs of the aggregation.
import functools

from wildmerge.smk import alternatives_regex
from wildmerge.provenance import stable_hash as _stable_hash

_EVALUATED = set(STUDY.evaluated_models())
_PENDING = STUDY.pending_evaluations()
# rule `evaluate` (every benchmark) exists even when no model needs it, matching nothing:
# rules/homogeneous.smk derives evaluate_suite from it
_PENDING.setdefault(tuple(BENCHMARKS), [])
for _names, _pairs in sorted(_PENDING.items()):
    # the common cases (a new study, an added benchmark, a changed score setting) give every
    # model the same benchmarks: no constraint beyond the global one (a long one slows the DAG)
    _everyone = set(_pairs) == _EVALUATED

    rule:
        name:
            "evaluate" if list(_names) == BENCHMARKS else f"evaluate_{_stable_hash(list(_names), 8)}"
        input:
            unpack(eval_inputs),
        output:
            [results(f"scores/{{base}}/{{model}}/{n}.json") for n in _names],
            # per-item outcomes (evaluation.per_item), after the score files, same order
            [results(f"items/{{base}}/{{model}}/{n}.parquet") for n in _names] if STUDY.per_item else [],
        log:
            results("logs/evaluate/{base}/{model}.log"),
        benchmark:
            results("benchmarks/evaluate/{base}/{model}.tsv")
        wildcard_constraints:
            base="[^/]+" if _everyone else alternatives_regex(b for b, _ in _pairs) or "(?!)",
            model="[^/]+" if _everyone else alternatives_regex(m for _, m in _pairs) or "(?!)",
        params:
            **eval_settings(),
            spec=functools.partial(eval_job_params, _names),
            benchmarks=[STUDY.benchmark_spec(n) for n in _names],
        threads: 1
        # a ready evaluation goes before new merges, so a (temporary) merged model is scored
        # and deleted before more are written: peak disk stays near (parallel jobs) x one model
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
