"""lm-eval prompt options (issue 24): evaluation.apply_chat_template, system_instruction,
fewshot_as_multiturn and gen_kwargs, the study's or a benchmark's own. The prompts lm-eval builds
are read back from its logged requests; score keys change only where an option is set."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from wildmerge.demo import tiny_models

REPO = Path(__file__).resolve().parents[1]
DEMO = yaml.safe_load((REPO / "config.yaml").read_text())
TERSE = "{% for message in messages %}{{ message['content'] }} {% endfor %}"


def _study(edit=None):
    from wildmerge.study.plan import Study

    cfg = copy.deepcopy(DEMO)
    if edit:
        edit(cfg["evaluation"])
    return Study(cfg)


def _keys(study) -> dict[tuple[str, str], str]:
    """(model, benchmark) -> score key, for the base and an expert."""
    return {(m, n): study.score_key("tiny-llama", m, n) for m in ("base", "expert-arith") for n in study.benchmark_names}


def test_defaults_are_lm_evals_and_the_papers():
    """The schema's defaults are simple_evaluate's own (what wildmerge called before the options
    existed): a spec without them (not made by a Study) gets the same prompts."""
    from wildmerge.evaluation.settings import lm_eval_default
    from wildmerge.study.plan import PROMPT_OPTIONS, prompt_defaults

    assert prompt_defaults() == {k: lm_eval_default(k) for k in PROMPT_OPTIONS}
    assert prompt_defaults()["apply_chat_template"] is False  # the paper's setting
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())["evaluation"]
    assert paper.get("apply_chat_template", False) is False


def test_prompt_options_are_in_a_score_key_only_where_set():
    plain = _keys(_study())
    # the defaults written out, and fewshot_as_multiturn without a chat template (no effect): same keys
    assert _keys(_study(lambda ev: ev.update(apply_chat_template=False, system_instruction=None,
                                             fewshot_as_multiturn=False, gen_kwargs=None))) == plain

    def one(ev):  # a chat template on one benchmark
        ev["benchmarks"][1] = {"name": "demo_compare", "apply_chat_template": True}

    keys = _keys(_study(one))
    assert {k[1] for k in plain if keys[k] != plain[k]} == {"demo_compare"}
    study = _study(one)
    assert study.benchmark_spec("demo_compare")["apply_chat_template"] is True
    assert study.benchmark_spec("demo_arith")["apply_chat_template"] is False  # the job gets every option

    # the study's chat template, and one benchmark back to plain prompts: that one keeps its key
    def all_but_one(ev):
        ev["apply_chat_template"] = True
        ev["benchmarks"][0] = {"name": "demo_arith", "apply_chat_template": False}

    keys = _keys(_study(all_but_one))
    assert {k[1] for k in plain if keys[k] == plain[k]} == {"demo_arith"}
    # with a chat template, fewshot_as_multiturn counts
    multi = _keys(_study(lambda ev: ev.update(apply_chat_template=True)))
    single = _keys(_study(lambda ev: ev.update(apply_chat_template=True, fewshot_as_multiturn=False)))
    assert all(multi[k] != single[k] != plain[k] for k in plain)
    for option, value in (("system_instruction", "count"), ("gen_kwargs", {"max_gen_toks": 4}),
                          ("apply_chat_template", "terse")):
        keys = _keys(_study(lambda ev: ev.update({option: value})))
        assert all(keys[k] != plain[k] for k in plain), option
    # a homogeneous suite's benchmarks get the study's options
    study = _study(lambda ev: ev.update(system_instruction="count"))
    study.suites[("tiny-llama", "g")] = ["demo_copy"]
    assert study.suite_benchmarks("tiny-llama", "g")[0]["system_instruction"] == "count"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny model with the demo tokenizer (its chat template; another with a named one too:
    terse) and the demo tasks, two of them also as few-shot tasks (fewshot_arith, fewshot_compare:
    the demo's own are zero-shot only)."""
    from transformers import AutoTokenizer

    from wildmerge.demo.tasks import make_tasks
    from wildmerge.demo.tokenizer import CHAT_TEMPLATE

    work = tmp_path_factory.mktemp("prompts")
    make_tasks(work / "tasks", n_eval=12)
    for skill in ("arith", "compare"):
        cfg = yaml.safe_load((work / "tasks" / f"demo_{skill}.yaml").read_text())
        del cfg["num_fewshot"]
        cfg.update(task=f"fewshot_{skill}", fewshot_split="test")
        (work / "tasks" / f"fewshot_{skill}.yaml").write_text(yaml.safe_dump(cfg))
    tiny_models.build("llama-3.1-8b", work / "model")
    named = tiny_models.build("llama-3.1-8b", work / "named")
    tok = AutoTokenizer.from_pretrained(named)
    tok.chat_template = {"default": CHAT_TEMPLATE, "terse": TERSE}
    tok.save_pretrained(named)
    return work


def _evaluate(tiny: Path, model: str, benchmarks: list[dict], monkeypatch, out: str) -> tuple[list, dict]:
    """evaluate_model, returning each simple_evaluate call's (kwargs, logged samples) and the score files."""
    import lm_eval

    from wildmerge.evaluation.lm_eval_run import evaluate_model
    from wildmerge.evaluation.settings import EvalSettings

    calls = []
    real = lm_eval.simple_evaluate

    def spy(**kwargs):
        res = real(**kwargs)
        calls.append((kwargs, res["samples"]))
        return res

    monkeypatch.setattr(lm_eval, "simple_evaluate", spy)
    names = [b["name"] for b in benchmarks]
    evaluate_model(
        tiny / model, benchmarks, {n: tiny / out / f"{n}.json" for n in names},
        EvalSettings(dtype="float32", seed=1234, batch_size=8, device="cpu", include_path=str(tiny / "tasks")),
        items_files={n: tiny / out / f"{n}.parquet" for n in names},
    )
    return calls, {n: json.loads((tiny / out / f"{n}.json").read_text()) for n in names}


def _contexts(samples: dict, task: str) -> list[tuple[str, str]]:
    """(query, context of its first request) per logged item of ``task``."""
    return [(s["doc"]["query"], s["arguments"][0][0]) for s in samples[task]]


def test_chat_template_and_system_instruction_change_the_prompts(tiny, monkeypatch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny / "model")
    benchmarks = [
        {"name": "demo_count"},  # plain prompts (lm-eval's defaults)
        {"name": "demo_copy", "apply_chat_template": False, "system_instruction": None,
         "fewshot_as_multiturn": True, "gen_kwargs": None},  # the same, written out: the same call
        {"name": "demo_arith", "apply_chat_template": True, "system_instruction": "count"},
        {"name": "demo_compare", "system_instruction": "count"},  # plain text, no template
    ]
    calls, scores = _evaluate(tiny, "model", benchmarks, monkeypatch, "chat")
    assert sorted(sorted(c[1]) for c in calls) == [["demo_arith"], ["demo_compare"], ["demo_copy", "demo_count"]]
    by_task = {t: (kwargs, samples) for kwargs, samples in calls for t in samples}

    for task in ("demo_count", "demo_copy"):
        kwargs, samples = by_task[task]
        assert kwargs["apply_chat_template"] is False and kwargs["system_instruction"] is None
        assert all(ctx == query for query, ctx in _contexts(samples, task))
    kwargs, samples = by_task["demo_arith"]
    assert kwargs["apply_chat_template"] is True and kwargs["system_instruction"] == "count"
    for query, ctx in _contexts(samples, "demo_arith"):
        messages = [{"role": "system", "content": "count"}, {"role": "user", "content": query}]
        assert ctx == tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ctx == f"count </s> {query} </s> "
    _, samples = by_task["demo_compare"]
    assert all(ctx != query and ctx.startswith("count") and ctx.endswith(query)
               for query, ctx in _contexts(samples, "demo_compare"))

    # provenance: each score file records its benchmark's prompt options (and the template's hash)
    assert scores["demo_count"]["evaluation"]["apply_chat_template"] is False
    assert "chat_template_sha256" not in scores["demo_count"]["evaluation"]
    ev = scores["demo_arith"]["evaluation"]
    assert ev["apply_chat_template"] is True and ev["system_instruction"] == "count"
    assert ev["fewshot_as_multiturn"] is True and ev["gen_kwargs"] is None and len(ev["chat_template_sha256"]) == 64


def test_fewshot_as_multiturn_splits_the_examples_into_turns(tiny, monkeypatch):
    benchmarks = [
        {"name": "fewshot_arith", "num_fewshot": 1, "apply_chat_template": True, "fewshot_as_multiturn": True},
        {"name": "fewshot_compare", "num_fewshot": 1, "apply_chat_template": True, "fewshot_as_multiturn": False},
    ]
    calls, _ = _evaluate(tiny, "model", benchmarks, monkeypatch, "fewshot")
    by_task = {t: samples for _, samples in calls for t in samples}
    # multi-turn: example question, its answer, the question, each its own message (one </s> each);
    # single-turn: the example and the question in one user message (one </s>)
    for task, turns in (("fewshot_arith", 3), ("fewshot_compare", 1)):
        for query, ctx in _contexts(by_task[task], task):
            assert ctx.endswith(f"{query} </s> ") and ctx.count("</s>") == turns, (task, ctx)


def test_named_chat_template(tiny, monkeypatch):
    calls, scores = _evaluate(tiny, "named", [{"name": "demo_count", "apply_chat_template": "terse"}], monkeypatch, "named")
    ((kwargs, samples),) = calls
    assert all(ctx == f"{query} " for query, ctx in _contexts(samples, "demo_count"))
    assert scores["demo_count"]["evaluation"]["apply_chat_template"] == "terse"
    with pytest.raises(ValueError, match="'chatty'.*no chat template of that name.*terse"):
        _evaluate(tiny, "named", [{"name": "demo_count", "apply_chat_template": "chatty"}], monkeypatch, "bad")
    with pytest.raises(ValueError, match="'terse'.*it has no named templates"):
        _evaluate(tiny, "model", [{"name": "demo_count", "apply_chat_template": "terse"}], monkeypatch, "bad")


def test_a_merge_keeps_the_bases_named_chat_templates(tiny, tmp_path):
    from transformers import AutoTokenizer

    from wildmerge.merging.mergekit_run import merge

    merge(tiny / "named", [tiny / "model"], "task_arithmetic", {"lambda": 1.0}, tmp_path / "m")
    assert AutoTokenizer.from_pretrained(tmp_path / "m").chat_template == AutoTokenizer.from_pretrained(tiny / "named").chat_template
