"""lm-eval multiple-choice tasks for the demo skills: one jsonl + one task YAML per skill.

Each jsonl line is ``{"query", "choices", "gold", "skill"}``; the YAML reads it with the
``json`` dataset builder from an ABSOLUTE path (lm-eval resolves relative data_files
against the working directory, not the YAML). A ``demo`` group YAML lists all tasks.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from wildmerge.demo.skills import SKILLS, eval_examples, eval_item

TASK_PREFIX = "demo_"
GROUP = "demo"


def task_name(skill: str) -> str:
    return TASK_PREFIX + skill


TASKS: list[str] = [task_name(s) for s in SKILLS]


def chance_level(skill: str) -> float:
    """Accuracy of random guessing (1 / number of choices)."""
    item = eval_item(SKILLS[skill], eval_examples(SKILLS[skill], 1, random.Random(0))[0], random.Random(0))
    return 1.0 / len(item["choices"])


def task_config(name: str, data_file: Path) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": " ",
        "num_fewshot": 0,
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


def make_tasks(out_dir: Path, n_eval: int = 100, seed: int = 0) -> list[Path]:
    """Write ``<task>.jsonl`` and ``<task>.yaml`` per skill (+ ``demo.yaml`` group) to ``out_dir``.

    ``n_eval`` items per task (knowledge tasks: at most their table size, 100); returns
    the task YAML paths (group file excluded). Deterministic in ``seed``.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for skill_name, skill in SKILLS.items():
        name = task_name(skill_name)
        rng = random.Random(f"tasks:{seed}:{skill_name}")
        items = [eval_item(skill, ex, rng) for ex in eval_examples(skill, n_eval, rng)]
        data = out_dir / f"{name}.jsonl"
        data.write_text("".join(json.dumps(it, sort_keys=True) + "\n" for it in items))
        cfg = out_dir / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump(task_config(name, data), sort_keys=False))
        paths.append(cfg)
    group = {
        "group": GROUP,
        "task": [task_name(s) for s in SKILLS],
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": False}],
        "metadata": {"version": 1.0},
    }
    (out_dir / f"{GROUP}.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
    return paths
