"""Score one model on a list of lm-eval benchmarks, one JSON file per benchmark.

The model is loaded once (lm-eval's HF backend) and reused for every benchmark;
benchmarks are grouped by their per-call settings (few-shot count and prompt options) so
each group is a single ``simple_evaluate`` call.  lm-eval's request cache is never used, so
nothing is shared between models.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from wildmerge.provenance import atomic_write_json, file_sha256, stable_hash, versions
from wildmerge.evaluation.settings import EvalSettings, PromptSettings

log = logging.getLogger(__name__)

METRIC_FALLBACK = ("acc", "acc_norm", "exact_match")


def pick_metric(result: Mapping[str, Any], wanted: str | None) -> tuple[str, str]:
    """Return (metric, key in lm-eval's result dict) for the reported accuracy."""
    keys = [k for k in result if "," in k and not k.split(",")[0].endswith("_stderr")]
    order = [wanted] if wanted else list(METRIC_FALLBACK)
    for metric in order:
        for k in keys:
            if k.split(",")[0] == metric:
                return metric, k
    raise KeyError(
        f"metric {order} not in lm-eval results {sorted(keys)}; set 'metric' for this benchmark in "
        f"evaluation.benchmarks"
    )


#: lm-eval's dump of a task config writes a callable (a ``!function`` such as medmcqa's
#: ``doc_to_text``) as its repr, ``<function doc_to_text at 0x7fc35e0fb4c0>``: the address
#: changes from process to process, the definition does not (the code is pinned by lm-eval's
#: version for built-in tasks, and hashed by ``task_index.task_definitions`` for local ones)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def task_hash(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Hash of the task definition plus the content of any local data files it reads; the same
    in every process (no memory address of a callable in it)."""
    if not config:
        return {"config_sha": None}
    data: dict[str, str] = {}
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, Mapping):
        for split, f in files.items():
            for p in [f] if isinstance(f, str) else f:
                if os.path.isfile(p):
                    data[f"{split}:{Path(p).name}"] = file_sha256(Path(p))
    cfg = {k: v for k, v in config.items() if k != "dataset_kwargs"}
    cfg = json.loads(_ADDRESS.sub("", json.dumps(cfg, sort_keys=True, default=str)))
    return {"config_sha": stable_hash(cfg, 16), "data_sha": data}


#: lm-eval's TaskManager of its built-in tasks alone, once per process (preload_task_index)
_BUILTIN_INDEX: list[Any] = []


def preload_task_index() -> Any:
    """lm-eval's index of its built-in tasks (no include path), built once per process: the
    warm worker builds it before forking evaluation jobs (wildmerge.warm.PRELOAD), so each job
    inherits it instead of indexing ~10k task YAMLs again (seconds of CPU). A job's changes to
    it stay in that job's process."""
    if not _BUILTIN_INDEX:
        from lm_eval.tasks import TaskManager

        _BUILTIN_INDEX.append(TaskManager())
    return _BUILTIN_INDEX[0]


def environment_info_once() -> None:
    """lm-eval's ``simple_evaluate`` puts torch's environment report into each call's results, which
    wildmerge does not keep (score files record ``versions()``); torch makes it anew each time
    (``torch.utils.collect_env``: ~11 subprocesses, ~0.3 s). Made once per process from here on.
    Never made in the warm worker: it initialises CUDA, and a forked job could then not use it."""
    import torch.utils.collect_env as collect_env

    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.cache(collect_env.get_pretty_env_info)


def _task_manager(factory: Any, include_path: str | Path | None, names: Sequence[str]) -> Any:
    """lm-eval's TaskManager; only the include path is indexed when it holds every task.

    Indexing lm-eval's ~10k built-in task YAMLs costs seconds per job, which dominates
    the evaluation of small models; it is done only when a benchmark needs it, and the
    built-in index alone once per process (:func:`preload_task_index`).
    """
    if include_path:
        local = factory(include_path=str(include_path), include_defaults=False)
        if set(names) <= set(local.all_tasks):
            return local
        return factory(include_path=str(include_path))
    return preload_task_index() if _BUILTIN_INDEX else factory(include_path=None)


def evaluate_model(
    model_dir: str | Path,
    benchmarks: Sequence[Mapping[str, Any]],
    out_files: Mapping[str, str | Path],
    settings: EvalSettings,
    *,
    provenance: Mapping[str, Any] | None = None,
    per_benchmark: Mapping[str, Mapping[str, Any]] | None = None,
    items_files: Mapping[str, str | Path] | None = None,
    pools: Mapping[str, str | Path] | None = None,
) -> dict[str, float]:
    """Evaluate ``model_dir`` on ``benchmarks``; write ``out_files[name]`` per benchmark
    (``provenance`` and ``per_benchmark[name]`` are added to each file's record), and
    ``items_files[name]`` (per-item outcomes, :mod:`wildmerge.evaluation.items`) where given.
    ``settings.budget``: score a seeded stratified sample of the items
    (:mod:`wildmerge.evaluation.budget`), reusing the outcomes kept in ``pools[name]``.

    Returns {benchmark: value}.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    from wildmerge.evaluation.continuation_lm import ContinuationHFLM

    include_path, seed, limit, budget = settings.include_path, settings.seed, settings.limit, settings.budget
    environment_info_once()
    t0 = time.time()
    task_manager = _task_manager(TaskManager, include_path, [b["name"] for b in benchmarks])
    known = set(task_manager.all_tasks)
    missing = [b["name"] for b in benchmarks if b["name"] not in known]
    if missing:
        raise ValueError(
            f"evaluation.benchmarks: lm-eval knows no task {missing}"
            + (f" (include_path={include_path})" if include_path else "")
        )
    lm = ContinuationHFLM(
        pretrained=str(model_dir),
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        device=settings.device,
        trust_remote_code=settings.trust_remote_code,
    )
    log.info("loaded %s in %.1fs", model_dir, time.time() - t0)
    # one simple_evaluate call per distinct (few-shot count, prompt options)
    groups: dict[str, tuple[Any, PromptSettings, list[Mapping[str, Any]]]] = {}
    for b in benchmarks:
        prompt = PromptSettings.of(b)
        key = stable_hash([b.get("num_fewshot"), prompt.recorded()])
        groups.setdefault(key, (b.get("num_fewshot"), prompt, []))[2].append(b)
    values: dict[str, float] = {}
    for shots, prompt, group in groups.values():
        names = [b["name"] for b in group]
        t1 = time.time()
        plans = _budget_plans(task_manager, names, budget, seed, pools) if budget is not None else {}
        recorded = {**settings.recorded(), "logits": lm.logits_kept, **prompt.recorded()}
        with _chat_template(lm, prompt.apply_chat_template, model_dir) as template_sha:
            if template_sha:
                recorded["chat_template_sha256"] = template_sha
            res = lm_eval.simple_evaluate(
                model=lm,
                tasks=names,
                num_fewshot=shots,
                task_manager=task_manager,
                limit=None if plans else limit,
                samples={t: ids for p in plans.values() for t, ids in p.request.items()} if plans else None,
                cache_requests=False,
                use_cache=None,
                log_samples=bool(items_files) or bool(plans),
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                bootstrap_iters=0,
                **prompt.kwargs(),
            )
        log.info("scored %s (%d-shot, prompts %s) in %.1fs", names, shots or 0, prompt.recorded(), time.time() - t1)
        for b in group:
            name = b["name"]
            result = res["results"][name]
            metric, key = pick_metric(result, b.get("metric"))
            filt = key.split(",", 1)[1]
            stderr = result.get(f"{metric}_stderr,{filt}")
            cfg = res.get("configs", {}).get(name)
            subtasks = res.get("group_subtasks", {}).get(name, [])
            record = {
                "benchmark": name,
                "metric": metric,
                "value": float(result[key]),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                "metrics": {k: v for k, v in result.items() if isinstance(v, (int, float))},
                "n_samples": res.get("n-samples", {}).get(name),
                "num_fewshot": res.get("n-shot", {}).get(name, shots),
                "task_version": res.get("versions", {}).get(name),
                "task_hash": task_hash(cfg),
                "subtask_hashes": {t: task_hash(res.get("configs", {}).get(t)) for t in subtasks},
                "evaluation": dict(recorded),
                "versions": versions(),
                **dict(provenance or {}),
                **dict((per_benchmark or {}).get(name, {})),
            }
            frame = None
            if name in plans:
                frame = _apply_budget(plans[name], record, res, metric, filt, budget, seed)
            if items_files and name in items_files:  # written first: a score file implies its items
                record["items"] = write_item_outcomes(items_files[name], res, name, metric, filt, record, frame)
                if pools and name in pools and name not in plans:
                    from wildmerge.evaluation.budget import keep_full_outcomes

                    keep_full_outcomes(Path(items_files[name]), Path(pools[name]))
            atomic_write_json(Path(out_files[name]), record)
            values[name] = record["value"]
    return values


@contextlib.contextmanager
def _chat_template(lm: Any, apply: bool | str, model_dir: str | Path) -> Iterator[str | None]:
    """The chat template ``apply_chat_template: apply`` uses, for one simple_evaluate call; yields
    its sha256 (None without one). lm-eval 0.4.13 renders prompts with the tokenizer's default
    template whatever name it is given, so a named one is handed to the tokenizer here."""
    if not apply:
        yield None
        return
    templates = getattr(lm.tokenizer, "chat_template", None)
    if isinstance(apply, str):
        if not isinstance(templates, Mapping) or apply not in templates:
            names = sorted(templates) if isinstance(templates, Mapping) else []
            raise ValueError(f"apply_chat_template: {apply!r}: the tokenizer of {model_dir} has no chat template of "
                             f"that name ({'its named templates: ' + ', '.join(names) if names else 'it has no named templates'})")
        template = templates[apply]
    elif isinstance(templates, Mapping):
        template = templates.get("default")
    else:
        template = templates
    if not template:
        raise ValueError(f"apply_chat_template: {apply!r}: the tokenizer of {model_dir} has no chat template"
                         + (" named 'default' (name one)" if isinstance(templates, Mapping) else ""))
    before = lm.chat_template_args
    if isinstance(apply, str):
        lm.chat_template_args = {**before, "chat_template": template}
    try:
        yield hashlib.sha256(template.encode()).hexdigest()
    finally:
        lm.chat_template_args = before


def _outcomes(res: Mapping[str, Any], name: str, metric: str, filt: str) -> Any:
    from wildmerge.evaluation.items import item_frame, leaf_tasks

    samples = res.get("samples") or {}
    tasks = leaf_tasks(name, res.get("group_subtasks", {}), samples)
    return item_frame(samples, tasks, metric, filt)


def _budget_plans(task_manager: Any, names: Sequence[str], budget: float | int, seed: int,
                  pools: Mapping[str, str | Path] | None) -> dict[str, Any]:
    from wildmerge.evaluation.budget import plan_benchmark

    return {n: plan_benchmark(task_manager, n, budget, seed, Path(pools[n]) if pools and n in pools else None)
            for n in names}


def _apply_budget(plan: Any, record: dict[str, Any], res: Mapping[str, Any], metric: str, filt: str,
                  budget: float | int, seed: int) -> Any:
    """A budgeted benchmark's value, stderr and sample (into ``record``) from its sampled
    items' outcomes (new ones and reused ones); returns those outcomes."""
    from wildmerge.evaluation.budget import finish_benchmark

    meta = {k: v for k, v in record.items() if k != "metrics"}
    frame, value, stderr, info = finish_benchmark(plan, _outcomes(res, plan.name, metric, filt), budget, seed, meta)
    record.update(value=value, stderr=stderr if stderr == stderr else None, budget=info,
                  n_samples={"effective": info["n_items"], "original": info["n_total"]})
    record["metrics"] = {f"{metric},{filt}": value}
    record["evaluation"] = {**record["evaluation"], "budget": budget}
    return frame


def write_item_outcomes(path: str | Path, res: Mapping[str, Any], name: str, metric: str, filt: str,
                        record: Mapping[str, Any], frame: Any = None) -> dict[str, Any]:
    """Write one benchmark's per-item outcomes (``frame``, else from lm-eval's logged
    samples) to ``path`` (provenance: the score file's record); returns what the score file
    records about it."""
    from wildmerge.evaluation.items import write_items

    df = _outcomes(res, name, metric, filt) if frame is None else frame
    meta = {k: v for k, v in record.items() if k not in ("metrics",)}
    write_items(path, df, meta)
    tasks = sorted(df["task"].astype(str).unique())
    return {"file": Path(path).name, "n_items": len(df), "tasks": tasks, "sha256": file_sha256(Path(path))}


def write_record(path: str | Path, out_files: Mapping[str, str], items_files: Mapping[str, str],
                 score_keys: Mapping[str, str]) -> None:
    """The evaluation job's record (its one Snakemake output), written after every score file:
    what it scored, where, with which keys. Older records of the model are removed (the
    record's name tells Snakemake whether this job is needed again: Reruns.evaluation_record)."""
    path = Path(path)
    record = {
        "scores": dict(out_files),
        "items": dict(items_files),
        "score_keys": dict(score_keys),
        "sha256": {n: file_sha256(Path(f)) for n, f in out_files.items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(path, record)
    for old in path.parent.glob("*.json"):
        if old != path:
            old.unlink(missing_ok=True)
