"""Serve the rehearsal's benchmark datasets from the fake hub, fetch them as the workflow does,
and score a tiny model on them offline through lm-eval's own task code, in one process.

    python tests/rehearsal/data_check.py OUT.json WORKDIR BENCHMARKS.json [ROWS_PER_SPLIT]

``BENCHMARKS.json``: ``[{name, num_fewshot, metric}, ...]`` (``evaluation.benchmarks`` entries).
The steps, in one process so that lm-eval's task index (seconds) is built once:

1. the fake hub (tests/hub_server.py) starts and ``HF_ENDPOINT`` points at it (before
   huggingface_hub is imported); ``tests/rehearsal/data.py`` generates the datasets and pushes
   them (GPQA gated, ``HF_TOKEN`` granted);
2. each hub dataset of the benchmarks is fetched once with wildmerge's own ``fetch_dataset``
   (lock file, a cache folder per commit), into the records an evaluation job reads;
3. ``use_fetched_data`` turns the hub off and pins the fetched commits, as in an evaluation job;
4. ``lm_eval.simple_evaluate`` scores a tiny random model (``wildmerge.demo.tiny_models``) on
   every benchmark, one document per task (``limit=1``), one call per few-shot count as
   ``wildmerge.evaluation.lm_eval_run`` groups them; the benchmark's value is picked as
   wildmerge picks it (``pick_metric``).

A benchmark whose data a task reads from hub files by URL (``dataset_kwargs.data_files:
hf://datasets/...``, PROST) is not fetched by wildmerge: it is loaded on its own, offline, and its
error reported under ``errors``. OUT.json: per benchmark its tasks' few-shot counts and first
prompt, its score, the errors and the timings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

TOKEN = os.environ.get("HF_TOKEN", "")


def main(out_file: Path, work: Path, benchmarks: list[dict[str, Any]], rows_per_split: int = 2) -> None:
    from hub_server import HubServer, HubState

    times: dict[str, float] = {}
    t = time.time()
    state = HubState()
    with HubServer(state) as url:
        os.environ.update({"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"})
        from data import HF_PREFIX, SCHEMAS, gated_datasets, leaf_task_configs, push_benchmark_datasets, task_manager

        names = [b["name"] for b in benchmarks]
        tm = task_manager()
        times["index_s"] = time.time() - t
        t = time.time()
        commits = push_benchmark_datasets(state, names, rows_per_split, gated={r: {TOKEN} for r in gated_datasets(SCHEMAS)})
        times["generate_s"] = time.time() - t
        t = time.time()
        records, unfetched = fetch_all(names, work, leaf_task_configs, HF_PREFIX)
        times["fetch_s"] = time.time() - t
        hub_requests = len(state.requests)
    t = time.time()
    from wildmerge.hub.datasets import use_fetched_data

    use_fetched_data(records)
    errors: dict[str, str] = {}
    for name in unfetched:  # what an evaluation job would hit
        try:
            tm.load([name])
        except Exception as err:  # noqa: BLE001 - reported
            errors[name] = f"{type(err).__name__}: {err}"[:1000]
    scored = [b for b in benchmarks if b["name"] not in errors]
    out = score(tm, scored, work)
    times["score_s"] = time.time() - t
    out.update(errors=errors, times={k: round(v, 1) for k, v in times.items()}, hub_requests=hub_requests,
               datasets={r: c for r, c in commits.items()})
    out_file.write_text(json.dumps(out, indent=1))


def fetch_all(names: list[str], work: Path, leaf_task_configs: Any, hf_prefix: str) -> tuple[list[str], list[str]]:
    """Each benchmark's hub datasets, fetched once each by ``fetch_dataset``: the record files
    (one per benchmark, as ``fetch_benchmark_data`` writes them) and the benchmarks left unfetched."""
    from wildmerge.hub.datasets import fetch_dataset, task_datasets

    done: dict[tuple[str, str | None], dict[str, Any]] = {}
    files: list[str] = []
    unfetched: list[str] = []
    for b in names:
        rec: dict[str, Any] = {"benchmark": b, "datasets": []}
        for path, name, revision in task_datasets(b, None):  # as fetch_benchmark_data (hf:// data_files too)
            if (path, name) not in done:
                done[(path, name)] = fetch_dataset(b, path, name, revision, work / "data" / f"{len(done)}.json", work / "hub.lock")
            rec["datasets"].append(done[(path, name)])
        f = work / "records" / f"{b}.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(rec))
        files.append(str(f))
    return files, unfetched


def score(tm: Any, benchmarks: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from wildmerge.demo.tiny_models import build
    from wildmerge.evaluation.lm_eval_run import pick_metric

    lm = HFLM(pretrained=str(build("llama-3.2-3b", work / "tiny")), dtype="float32", batch_size=8, device="cpu")
    groups: dict[Any, list[dict[str, Any]]] = {}
    for b in benchmarks:
        groups.setdefault(b.get("num_fewshot"), []).append(b)
    tasks: dict[str, dict[str, Any]] = {}
    scores: dict[str, Any] = {}
    for shots, group in groups.items():
        res = lm_eval.simple_evaluate(model=lm, tasks=[b["name"] for b in group], num_fewshot=shots, task_manager=tm,
                                      limit=1, log_samples=True, bootstrap_iters=0, random_seed=1234,
                                      numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234)
        for b in group:
            metric, key = pick_metric(res["results"][b["name"]], b.get("metric"))
            scores[b["name"]] = {"metric": metric, "value": res["results"][b["name"]][key]}
            subtasks = leaves(res.get("group_subtasks", {}), b["name"])
            tasks[b["name"]] = {
                t: {"num_fewshot": res["n-shot"].get(t), "requests": len(res["samples"].get(t, [])),
                    "context": res["samples"][t][0]["arguments"][0][0] if res["samples"].get(t) else ""}
                for t in subtasks
            }
    return {"tasks": tasks, "scores": scores}


def leaves(group_subtasks: dict[str, list[str]], name: str) -> list[str]:
    """The tasks of a benchmark: a group's subtasks, nested groups expanded."""
    subs = group_subtasks.get(name)
    return [t for s in subs for t in leaves(group_subtasks, s)] if subs else [name]


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()), *map(int, sys.argv[4:5]))
