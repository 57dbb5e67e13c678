"""The lm-eval settings of one evaluation job, as one typed object."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True)
class EvalSettings:
    """How a model is scored. ``dtype``, ``seed``, ``include_path``, ``limit`` and ``budget``
    can change a score (they are in its key: Study.score_settings); ``batch_size``, ``device``
    are execution-only (recorded in each score file, never rerun). No defaults here: the config
    schema has them (evaluation.*). The prompt options are per benchmark: PromptSettings."""

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


@dataclass(frozen=True)
class PromptSettings:
    """How lm-eval builds one benchmark's prompts: ``simple_evaluate``'s arguments of these names.
    They can change a score (in its key where set away from the default: Study.prompt_key) and
    are per benchmark (a benchmark entry's own, else the study's: Study.prompt_settings)."""

    apply_chat_template: bool | str
    system_instruction: str | None
    fewshot_as_multiturn: bool
    gen_kwargs: Mapping[str, Any] | None

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> PromptSettings:
        """From a benchmark spec (Study.benchmark_spec); an option it lacks (a spec not made by
        a Study) is lm-eval's default, which is the schema's."""
        return cls(**{f.name: spec[f.name] if f.name in spec else lm_eval_default(f.name) for f in fields(cls)})

    def kwargs(self) -> dict[str, Any]:
        """The arguments of ``lm_eval.simple_evaluate``."""
        d = asdict(self)
        d["gen_kwargs"] = dict(self.gen_kwargs) if self.gen_kwargs else None
        return d

    def recorded(self) -> dict[str, Any]:
        """What each score file records under ``evaluation``."""
        return self.kwargs()


@functools.cache
def lm_eval_default(name: str) -> Any:
    """The default of ``lm_eval.simple_evaluate``'s argument ``name``."""
    import inspect

    from lm_eval.evaluator import simple_evaluate

    return inspect.signature(simple_evaluate).parameters[name].default
