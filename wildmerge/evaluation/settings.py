"""The lm-eval settings of one evaluation job, as one typed object."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class EvalSettings:
    """How a model is scored. ``dtype``, ``seed``, ``include_path``, ``limit`` and ``budget``
    can change a score (they are in its key: Study.score_settings); ``batch_size``, ``device``
    are execution-only (recorded in each score file, never rerun). No defaults here: the config
    schema has them (evaluation.*)."""

    dtype: str
    seed: int
    batch_size: int | str
    device: str
    include_path: str | None = None
    limit: int | None = None
    budget: float | int | None = None
    trust_remote_code: bool = False

    @classmethod
    def for_job(cls, params: Any, evaluation: Mapping[str, Any], trust_remote_code: bool = False) -> EvalSettings:
        """From a job's score-relevant params (rules/common.smk: eval_settings) and the config's
        ``evaluation`` section (execution-only settings, read by the job)."""
        from wildmerge.evaluation.budget import check_budget  # {items: N} -> N, as in the score key

        return cls(
            dtype=params.dtype,
            seed=params.seed,
            include_path=params.include_path,
            limit=params.limit,
            budget=check_budget(evaluation.get("budget")),
            batch_size=evaluation["batch_size"],
            device=evaluation["device"],
            trust_remote_code=trust_remote_code,
        )

    def recorded(self) -> dict[str, Any]:
        """What each score file records under ``evaluation``."""
        d = asdict(self)
        return {"batch_size": d["batch_size"], "device": d["device"], "dtype": d["dtype"], "seed": d["seed"],
                "limit": d["limit"], "request_cache": False}
