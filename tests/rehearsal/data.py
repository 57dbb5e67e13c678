"""Synthetic copies of the hub datasets that the paper's benchmarks load, for the rehearsal.

Why: the paper study's 16 benchmarks (and Appendix E's suites) are lm-eval's own task YAMLs,
whose data lives on the Hugging Face Hub, which the tests cannot reach. To run those task
definitions as they are (their ``process_docs``, ``doc_to_text``/``doc_to_choice``/
``doc_to_target``, groups and few-shot handling) offline, this module writes, for every hub
dataset they read, a repository in the hub's own layout: parquet files per config and split (CSV
for GPQA, JSON lines for PROST, as on the hub) and a README.md whose YAML front matter
(``configs:`` / ``data_files``) makes ``datasets.load_dataset(path, name, revision=...)`` resolve
config names and splits as it does on the hub. ``push_benchmark_datasets`` serves them from the
tests' fake hub (tests/hub_server.py), under their plain ids (``HubState.repos["cais/mmlu"]``: the
fake hub answers ``/datasets/<id>`` and ``/api/datasets/<id>`` from the same table as models).
tests/rehearsal/data_check.py fetches them as the workflow does and scores a tiny model on them
with lm-eval (tests/test_rehearsal_data.py).

Which datasets: found from lm-eval's task index as ``wildmerge.hub.datasets.task_datasets``
finds them (tags and groups expanded to their tasks), including the repositories of the hub files
a task names in ``dataset_kwargs.data_files`` as ``hf://datasets/...`` (PROST).
Their rows follow an explicit table (``SCHEMAS``): each dataset's real column names and types,
with labels in range, choice lists of the right length, BBH targets among each subtask's
choices, and enough rows in each few-shot split for the task's default ``num_fewshot`` (the
paper's values: BBH 3 from the YAML's own samples, MMLU-Pro 5 from ``validation``, others 0).

What it cannot prove: the text is synthetic and each split holds a few rows, so scores mean
nothing, item counts are not the real ones, and nothing checks the real files' byte layout
(row groups, features metadata such as ``ClassLabel``, the columns no task reads, which are
left out, such as HEAD-QA's ``image``). A real dataset whose hub layout or schema changed
since lm-eval 0.4.13 would still pass here.

Regenerate or inspect: ``python tests/rehearsal/data.py --out DIR [--rows N] [BENCHMARK ...]``
(default: config/paper.yaml's benchmarks and Appendix E suites).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import string
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

if TYPE_CHECKING:
    from hub_server import HubState

REPO = Path(__file__).resolve().parents[2]
Row = dict[str, Any]


# --- which datasets -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def task_manager() -> Any:
    """lm-eval's task index (built once: ~10k YAMLs, seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def leaf_task_configs(benchmark: str) -> dict[str, dict[str, Any]]:
    """Task name -> its YAML config (includes merged), for every task a benchmark runs: a tag or
    a group expanded as ``wildmerge.hub.datasets.task_datasets`` expands it."""
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = task_manager()
    out: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        entry = tm.task_index.get(name)
        if entry is None:
            raise KeyError(f"{name!r} (in {benchmark}) is not an lm-eval task, group or tag")
        if entry.kind == Kind.TAG:
            for other, e in tm.task_index.items():
                if name in e.tags:
                    visit(other)
            return
        cfg = load_yaml(entry.yaml_path, resolve_func=False) if entry.yaml_path else dict(entry.cfg or {})
        if entry.kind == Kind.GROUP:
            for sub in cfg.get("task", []):
                if isinstance(sub, str):
                    visit(sub)
                elif isinstance(sub, dict) and "task" in sub and "dataset_path" not in sub:
                    visit(str(sub["task"]))
                elif isinstance(sub, dict):
                    out[str(sub.get("task"))] = sub
            return
        out[name] = cfg

    visit(benchmark)
    return out


HF_PREFIX = "hf://datasets/"


def config_datasets(cfg: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The hub datasets (repo id, config name) one task config loads: its ``dataset_path`` (a hub
    id: not a local builder nor a folder here), or the repos of ``hf://datasets/`` data files."""
    from wildmerge.hub.datasets import LOCAL_BUILDERS

    path = cfg.get("dataset_path")
    if path and path not in LOCAL_BUILDERS and not Path(str(path)).exists():
        return [(str(path), cfg.get("dataset_name"))]
    files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
    urls = [u for v in (files.values() if isinstance(files, Mapping) else [files])
            for u in ([v] if isinstance(v, str) else v)]
    return [("/".join(u[len(HF_PREFIX):].split("/")[:2]), None) for u in urls if str(u).startswith(HF_PREFIX)]


# --- schemas: one row generator per dataset -----------------------------------------------------
# A row generator takes (config name, split, row index, task config) and returns one row with the
# dataset's real columns. Unlabelled test splits are unlabelled as on the hub (-1 or "").

def _w(*parts: object) -> str:
    return " ".join(str(p) for p in parts)


def _k(n: int, *key: object) -> int:
    """A gold position in range(n), spread over rows by a stable hash (not always the first
    choice, which a model scoring all choices alike would pick)."""
    return zlib.crc32(repr(key).encode()) % n


def arc(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    labels = ["A", "B", "C", "D"] if i % 3 else ["1", "2", "3", "4"]  # ARC mixes letter and digit keys
    return {"id": f"{cfg}-{split}-{i}", "question": _w("Which is item", i, "?"),
            "choices": {"text": [f"option {c}" for c in "wxyz"], "label": labels}, "answerKey": labels[_k(4, cfg, split, i)]}


def boolq(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"question": _w("is it day", i), "passage": _w("A short passage", i, "."), "idx": i,
            "label": -1 if split == "test" else _k(2, split, i)}


def commonsense_qa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"id": f"csqa-{split}-{i}", "question": _w("Where is thing", i, "?"), "question_concept": "thing",
            "choices": {"label": list("ABCDE"), "text": [f"place {c}" for c in "vwxyz"]},
            "answerKey": "" if split == "test" else "ABCDE"[_k(5, split, i)]}


def hellaswag(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"ind": i, "activity_label": "Cooking", "ctx_a": _w("A cook stirs pot", i, "."), "ctx_b": "then",
            "ctx": _w("A cook stirs pot", i, ". then"), "endings": [f"ending {c} [title] here." for c in "wxyz"],
            "source_id": f"src-{i}", "split": split, "split_type": "indomain",
            "label": "" if split == "test" else str(_k(4, split, i))}


def winogrande(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"sentence": _w("Ann gave Bo a cup because _ was thirsty", i, "."), "option1": "Ann", "option2": "Bo",
            "answer": "" if split == "test" else str(1 + _k(2, cfg, split, i))}


def piqa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"goal": _w("open jar", i), "sol1": "twist the lid", "sol2": "hit the jar", "label": -1 if split == "test" else _k(2, split, i)}


def openbookqa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"id": f"obqa-{split}-{i}", "question_stem": _w("The sun is", i),
            "choices": {"text": [f"answer {c}" for c in "wxyz"], "label": list("ABCD")}, "answerKey": "ABCD"[_k(4, cfg, split, i)]}


def headqa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"name": "Cuaderno_2013_1_B", "year": "2013", "category": "biology", "qid": i,
            "qtext": _w("Which organ", i, "?"), "ra": 1 + _k(4, cfg, split, i),
            "answers": [{"aid": a, "atext": f"organ {a}"} for a in range(1, 5)]}


def prost(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"A": "glass", "B": "rock", "C": "paper", "D": "wood", "context": _w("Four objects fall", i, "."),
            "question": "Which object breaks?", "ex_question": "Which object is the most likely to break?",
            "group": "breaking", "label": _k(4, split, i), "name": f"breaking_{i}"}


def truthful_qa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    choices = [f"claim {c}" for c in "wxyz"]
    return {"question": _w("Is claim", i, "true?"),
            "mc1_targets": {"choices": choices, "labels": [1, 0, 0, 0]},
            "mc2_targets": {"choices": choices, "labels": [1, 1, 0, 0]}}


def medmcqa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"id": f"med-{split}-{i}", "question": _w("Which drug", i, "?"), "opa": "drug a", "opb": "drug b",
            "opc": "drug c", "opd": "drug d", "cop": -1 if split == "test" else _k(4, split, i), "choice_type": "single",
            "exp": "", "subject_name": "Pharmacology", "topic_name": ""}


def gpqa(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    # GPQA's CSV has more columns (explanations, writer and validator fields); the task reads these
    return {"Question": _w("What is the [title] value of x", i, "?"), "Correct Answer": f"value {i}",
            "Incorrect Answer 1": "wrong a", "Incorrect Answer 2": "wrong b", "Incorrect Answer 3": "wrong c",
            "Explanation": "synthetic", "Subdomain": "Physics (general)", "High-level domain": "Physics",
            "Record ID": f"rec{cfg}{i}"}


def bbh(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    choices = task["doc_to_choice"]  # each subtask's target must be one of its choices
    return {"input": _w("Puzzle", i, "of", cfg), "target": choices[_k(len(choices), cfg, split, i)]}


def mmlu(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    return {"question": _w("Question", i, "on", cfg), "subject": cfg,
            "choices": [f"choice {c}" for c in "wxyz"], "answer": _k(4, cfg, split, i)}


MMLU_PRO_CATEGORIES = ["biology", "business", "chemistry", "computer science", "economics", "engineering",
                       "health", "history", "law", "math", "other", "philosophy", "physics", "psychology"]


def mmlu_pro(cfg: str | None, split: str, i: int, task: Mapping[str, Any]) -> Row:
    n = 10 if i % 2 == 0 else 4  # up to 10 options, some questions fewer
    k = _k(n, split, i)
    return {"question_id": i, "question": _w("Pro question", i), "options": [f"opt {j}" for j in range(n)],
            "answer": string.ascii_uppercase[k], "answer_index": k,
            "cot_content": "" if split == "test" else "A: Let's think step by step.",
            "category": MMLU_PRO_CATEGORIES[i % len(MMLU_PRO_CATEGORIES)], "src": f"ori_mmlu-{i}"}


@dataclass(frozen=True)
class Schema:
    rows: Callable[[str | None, str, int, Mapping[str, Any]], Row]
    splits: tuple[str, ...]  # every split the real dataset has
    layout: str  # file path per (config, split): {config}, {split}
    fmt: str = "parquet"  # or csv, jsonl
    gated: bool = False  # gated on the real hub


SCHEMAS: dict[str, Schema] = {
    "allenai/ai2_arc": Schema(arc, ("train", "validation", "test"), "{config}/{split}-00000-of-00001.parquet"),
    "aps/super_glue": Schema(boolq, ("train", "validation", "test"), "{config}/{split}-00000-of-00001.parquet"),
    "tau/commonsense_qa": Schema(commonsense_qa, ("train", "validation", "test"), "data/{split}-00000-of-00001.parquet"),
    "Rowan/hellaswag": Schema(hellaswag, ("train", "validation", "test"), "data/{split}-00000-of-00001.parquet"),
    "allenai/winogrande": Schema(winogrande, ("train", "validation", "test"), "{config}/{split}-00000-of-00001.parquet"),
    "baber/piqa": Schema(piqa, ("train", "validation", "test"), "data/{split}-00000-of-00001.parquet"),
    "allenai/openbookqa": Schema(openbookqa, ("train", "validation", "test"), "{config}/{split}-00000-of-00001.parquet"),
    "EleutherAI/headqa": Schema(headqa, ("train", "validation", "test"), "{config}/{split}-00000-of-00001.parquet"),
    "corypaik/prost": Schema(prost, ("test",), "data/default.jsonl", fmt="jsonl"),  # read as hf:// data_files
    "truthfulqa/truthful_qa": Schema(truthful_qa, ("validation",), "{config}/{split}-00000-of-00001.parquet"),
    "openlifescienceai/medmcqa": Schema(medmcqa, ("train", "validation", "test"), "data/{split}-00000-of-00001.parquet"),
    "Idavidrein/gpqa": Schema(gpqa, ("train",), "{config}.csv", fmt="csv", gated=True),
    "SaylorTwift/bbh": Schema(bbh, ("test",), "{config}/{split}-00000-of-00001.parquet"),
    "cais/mmlu": Schema(mmlu, ("test", "validation", "dev"), "{config}/{split}-00000-of-00001.parquet"),
    "TIGER-Lab/MMLU-Pro": Schema(mmlu_pro, ("test", "validation"), "data/{split}-00000-of-00001.parquet"),
}


# --- files ----------------------------------------------------------------------------------------

def _encode(rows: list[Row], fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def rows_needed(task: Mapping[str, Any], split: str, rows_per_split: int) -> int:
    """Rows for one split of a task's dataset: ``rows_per_split``, or enough for the task's
    default ``num_fewshot`` from its few-shot split (``fewshot_split``, else the training split),
    one more where that split is also the test split (lm-eval leaves the test doc out)."""
    fewshot = int(task.get("num_fewshot") or 0)
    if fewshot == 0 or (task.get("fewshot_config") or {}).get("samples"):
        return rows_per_split
    source = task.get("fewshot_split") or task.get("training_split") or task.get("validation_split")
    if split != source:
        return rows_per_split
    return max(rows_per_split, fewshot + (split == task.get("test_split")))


def _readme(repo_id: str, configs: dict[str | None, dict[str, str]]) -> bytes:
    lines = ["---", "configs:"]
    for name, files in configs.items():
        lines.append(f"- config_name: {name or 'default'}")
        lines.append("  data_files:")
        for split, path in files.items():
            lines += [f"  - split: {split}", f"    path: {path}"]
    lines += ["---", "", f"# {repo_id} (synthetic rehearsal copy)", "",
              "A few synthetic rows per split in the real dataset's column schema (tests/rehearsal/data.py).", ""]
    return "\n".join(lines).encode()


def task_configs_by_dataset(benchmarks: Iterable[str]) -> dict[str, dict[str | None, list[dict[str, Any]]]]:
    """Hub dataset id -> config name -> the task configs that load it."""
    out: dict[str, dict[str | None, list[dict[str, Any]]]] = {}
    for b in benchmarks:
        for cfg in leaf_task_configs(b).values():
            for path, name in config_datasets(cfg):
                out.setdefault(path, {}).setdefault(name, []).append(cfg)
    return out


def benchmark_dataset_repos(benchmarks: Iterable[str], rows_per_split: int = 2) -> dict[str, dict[str, bytes]]:
    """hub dataset id -> {file path in repo: bytes}, for every hub dataset the benchmarks (tasks, groups) load."""
    repos: dict[str, dict[str, bytes]] = {}
    for repo_id, configs in sorted(task_configs_by_dataset(benchmarks).items()):
        schema = SCHEMAS.get(repo_id)
        if schema is None:
            raise KeyError(f"tests/rehearsal/data.py: no schema for hub dataset {repo_id} (read by "
                           f"{sorted(t.get('task', '?') for ts in configs.values() for t in ts)}); add one to SCHEMAS")
        files: dict[str, bytes] = {}
        meta: dict[str | None, dict[str, str]] = {}
        for name, tasks in sorted(configs.items(), key=lambda kv: kv[0] or ""):
            for task in tasks:
                for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
                    if task.get(key) and task[key] not in schema.splits:
                        raise KeyError(f"{task.get('task')}: {key} {task[key]!r} is not a split of {repo_id} {schema.splits}")
            for split in schema.splits:
                n = max(rows_needed(t, split, rows_per_split) for t in tasks)
                path = schema.layout.format(config=name or "default", split=split)
                files[path] = _encode([schema.rows(name, split, i, tasks[0]) for i in range(n)], schema.fmt)
                meta.setdefault(name, {})[split] = path
        if schema.fmt == "parquet" or schema.fmt == "csv":
            files["README.md"] = _readme(repo_id, meta)
        else:  # read by URL as data_files, not as a hub dataset
            files["README.md"] = f"# {repo_id} (synthetic rehearsal copy)\n".encode()
        repos[repo_id] = files
    return repos


def _strings(x: Any) -> Iterator[str]:
    if isinstance(x, str):
        yield x
    elif isinstance(x, Mapping):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _strings(v)


def text_corpus(benchmarks: Iterable[str], rows_per_split: int = 2) -> Iterator[str]:
    """Every string the benchmarks' prompts are made of: their task configs' (templates, the
    few-shot samples BBH's YAMLs carry) and the synthetic rows' (tests/rehearsal/models.py learns
    its tokenizer's merges from them, so prompts tokenize to about as many tokens as real text)."""
    benchmarks = list(benchmarks)
    for b in benchmarks:
        for cfg in leaf_task_configs(b).values():
            yield from _strings(cfg)
    for repo_id, configs in sorted(task_configs_by_dataset(benchmarks).items()):
        schema = SCHEMAS[repo_id]
        for name, tasks in sorted(configs.items(), key=lambda kv: kv[0] or ""):
            for split in schema.splits:
                for i in range(max(rows_needed(t, split, rows_per_split) for t in tasks)):
                    yield from _strings(schema.rows(name, split, i, tasks[0]))


def gated_datasets(repo_ids: Iterable[str]) -> list[str]:
    """Those of ``repo_ids`` gated on the real hub (GPQA)."""
    return [r for r in repo_ids if r in SCHEMAS and SCHEMAS[r].gated]


def push_benchmark_datasets(state: "HubState", benchmarks: Iterable[str], rows_per_split: int = 2,
                            gated: Mapping[str, set[str]] = {}) -> dict[str, str]:
    """Push them into the fake hub's state (tests/hub_server.py: HubState.repos[...] = Repo(); repo.push(files)); return id -> commit.

    ``gated``: repo id -> the tokens granted access; a repo named there is gated (401 without a
    token, 403 with another), as GPQA is on the hub (``gated_datasets``)."""
    from hub_server import Repo

    commits: dict[str, str] = {}
    for repo_id, files in benchmark_dataset_repos(benchmarks, rows_per_split).items():
        repo = state.repos.setdefault(repo_id, Repo())
        if repo_id in gated:
            repo.gated, repo.granted = True, set(gated[repo_id])
        commits[repo_id] = repo.push(files)
    return commits


def paper_benchmarks(config: Path = REPO / "config/paper.yaml") -> list[str]:
    """``evaluation.benchmarks`` of the paper config, then its Appendix E suites (each name once)."""
    import yaml

    cfg = yaml.safe_load(config.read_text())
    names = [b["name"] if isinstance(b, dict) else b for b in cfg["evaluation"]["benchmarks"]]
    for base in (cfg.get("homogeneous") or {}).values():
        for group in base["groups"].values():
            names += [b["name"] if isinstance(b, dict) else b for b in group["benchmarks"]]
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder: one sub-folder per dataset repo (owner/name)")
    p.add_argument("--rows", type=int, default=2, help="rows per split (default 2)")
    p.add_argument("benchmarks", nargs="*", help="default: config/paper.yaml's benchmarks and Appendix E suites")
    a = p.parse_args(argv)
    repos = benchmark_dataset_repos(a.benchmarks or paper_benchmarks(), a.rows)
    for repo_id, files in repos.items():
        for path, data in files.items():
            f = a.out / repo_id / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
        print(f"{repo_id}: {len(files)} files, {sum(map(len, files.values()))} bytes")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
