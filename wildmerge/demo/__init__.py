"""The offline, seeded demo model zoo the workflow builds itself.

* :data:`SKILLS` -- synthetic skills (``wildmerge.demo.skills``), each with training data
  and a multiple-choice eval set; :data:`TASKS` -- their lm-eval task names.
* :data:`EXPERTS` -- name -> :class:`ExpertSpec` (what each expert is fine-tuned on).
* :func:`train_base`, :func:`train_expert`, :func:`make_tasks` -- the entry points of the
  ``demo_*`` rules (torch is imported only when a training function is first used).
"""

from __future__ import annotations

from typing import Any

from wildmerge.demo.experts import EXPERTS, ExpertSpec
from wildmerge.demo.skills import SKILLS
from wildmerge.demo.tasks import GROUP, TASK_PREFIX, TASKS, make_tasks, task_name

__all__ = [
    "EXPERTS",
    "ExpertSpec",
    "SKILLS",
    "TASKS",
    "TASK_PREFIX",
    "GROUP",
    "task_name",
    "make_tasks",
    "train_base",
    "train_expert",
    "build_tokenizer",
]

_LAZY = {"train_base": "wildmerge.demo.train", "train_expert": "wildmerge.demo.train",
         "build_tokenizer": "wildmerge.demo.tokenizer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
