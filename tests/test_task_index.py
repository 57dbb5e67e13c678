"""Benchmark names and metrics settled at DAG build against lm-eval's index (wildmerge.evaluation.task_index):
tasks and groups pass, tags are refused naming their tasks, a metric the benchmark does not report
is refused naming the ones it does."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from wildmerge.evaluation import task_index as ti
from wildmerge.evaluation.lm_eval_run import METRIC_FALLBACK, pick_metric

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def builtin() -> dict[str, ti.TaskInfo]:
    """lm-eval's own index (built once per lm-eval version, then read from the cache)."""
    return ti.builtin_index()


def problems(builtin, *benchmarks: tuple[str, str | None], include: str | None = None) -> str | None:
    entries = [(f"evaluation.benchmarks[{i}]", name, metric) for i, (name, metric) in enumerate(benchmarks)]
    return ti.benchmark_problems(entries, include, builtin)


# --------------------------------------------------------------------------- lm-eval 0.4.13's index


@pytest.mark.parametrize(
    "tag, tasks",
    [
        ("headqa", ["headqa_en", "headqa_es"]),
        # in lm-eval 0.4.13 these two are tags too (not groups): no result of their own
        ("ai2_arc", ["arc_challenge", "arc_easy"]),
        ("truthfulqa", ["truthfulqa_gen", "truthfulqa_mc1", "truthfulqa_mc2"]),
    ],
)
def test_a_tag_is_an_error_listing_its_tasks(builtin, tag, tasks):
    assert builtin[tag].kind == ti.TAG and list(builtin[tag].members) == tasks
    msg = problems(builtin, ("arc_easy", None), (tag, None))
    assert msg is not None and len(msg.splitlines()) == 1
    assert msg.startswith(f"evaluation.benchmarks[1]: {tag!r} is an lm-eval tag, not a task or group: "
                          f"it stands for {', '.join(tasks)}; list the tasks you mean by name")
    assert ("the paper's Appendix E uses headqa_en" in msg) == (tag == "headqa")
    assert all(builtin[t].kind == ti.TASK for t in tasks)  # what to list instead


def test_tasks_and_groups_pass_with_the_metric_they_report(builtin):
    assert builtin["arc_easy"] == ti.TaskInfo("arc_easy", ti.TASK, ("acc", "acc_norm"))
    assert builtin["mmlu"].kind == ti.GROUP and builtin["mmlu"].metrics == ("acc",)  # its aggregate
    assert builtin["leaderboard_bbh"].metrics == ("acc_norm",)
    assert problems(builtin, ("arc_easy", "acc_norm"), ("mmlu", None), ("leaderboard_bbh", "acc_norm")) is None


def test_a_metric_the_benchmark_does_not_report_lists_the_ones_it_does(builtin):
    msg = problems(builtin, ("arc_easy", "exact_match"))
    assert msg == ("evaluation.benchmarks[0].metric: arc_easy does not report 'exact_match'; "
                   "its metrics: acc, acc_norm; set metric to one of them")
    msg = problems(builtin, ("hellaswag", None), ("leaderboard_bbh", "acc"))
    assert msg == ("evaluation.benchmarks[1].metric: leaderboard_bbh does not report 'acc'; "
                   "its aggregate metrics: acc_norm; set metric to one of them")


def test_no_metric_set_and_none_of_the_fallbacks_reported(builtin):
    # an xlsum task reports only rougeL (a `!function` metric, named as lm-eval names it)
    assert builtin["xlsum_amharic_prompt_1"].metrics == ("rougeL",)
    msg = problems(builtin, ("xlsum_amharic_prompt_1", None))
    assert msg == ("evaluation.benchmarks[0]: xlsum_amharic_prompt_1 reports none of the metrics read when no "
                   "metric is set (acc, acc_norm, exact_match); its metrics: rougeL; "
                   "set evaluation.benchmarks[0].metric to one of them")
    assert problems(builtin, ("xlsum_amharic_prompt_1", "rougeL")) is None
    # so does truthfulqa_gen (bleu/rouge only), one of the tasks of the tag truthfulqa
    msg = problems(builtin, ("truthfulqa_mc1", None), ("truthfulqa_mc2", None), ("truthfulqa_gen", None))
    assert msg is not None and msg.startswith("evaluation.benchmarks[2]: truthfulqa_gen reports none of the metrics")
    assert "its metrics: bleu_max, bleu_acc, bleu_diff, rouge1_max," in msg
    # the leaderboard's BBH tasks report acc_norm only: the second fallback is read
    assert ti.chosen_metric(builtin["leaderboard_bbh_web_of_lies"], None) == "acc_norm"


def test_unknown_names_get_close_matches(builtin):
    msg = problems(builtin, ("arc_eazy", None), ("headqa_en", None))
    assert msg is not None
    first, *rest = msg.splitlines()
    assert first.startswith("evaluation.benchmarks: lm-eval has no task ['arc_eazy']; searched lm-eval's ")
    assert rest[0].startswith("  arc_eazy: close matches arc_easy")
    assert rest[1] == "  for your own task YAMLs set evaluation.include_path"


def test_python_task_metrics_are_left_to_the_evaluation(builtin):
    """A Python task (``class:``) sets its metrics in code: not known from its YAML, not checked."""
    assert builtin["squadv2"].kind == ti.PYTHON_TASK and builtin["squadv2"].metrics is None
    assert problems(builtin, ("squadv2", "anything")) is None


def test_paper_config_benchmarks_and_suites_resolve(builtin):
    from wildmerge.study.plan import Study

    study = Study(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    entries = ti.study_benchmarks(study.benchmarks, study.suites)
    assert ti.benchmark_problems(entries, None, builtin) is None
    assert ("evaluation.benchmarks[8]", "headqa_en", None) in entries
    assert ("homogeneous.qwen3-8b.groups.medical.benchmarks[1]", "headqa_en", None) in entries
    assert {b for _, b, _ in entries if builtin[b].kind == ti.GROUP} == {"leaderboard_gpqa", "leaderboard_bbh", "mmlu"}
    # Table 5's suites: the mmlu tasks read acc, the leaderboard's BBH tasks acc_norm
    suites = {(k.split(".")[3], b): ti.chosen_metric(builtin[b], m) for k, b, m in entries if k.startswith("homo")}
    assert len(suites) == 17 and set(suites.values()) == {"acc", "acc_norm"}
    assert {b for (_, b), m in suites.items() if m == "acc_norm"} == {
        f"leaderboard_bbh_{t}" for t in ("boolean_expressions", "formal_fallacies", "geometric_shapes",
                                         "object_counting", "web_of_lies")}


# --------------------------------------------------------------------------- local tasks


def _write(folder: Path, name: str, cfg: dict) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))


def test_include_path_tasks_groups_and_tags(tmp_path, builtin):
    tasks = tmp_path / "tasks"
    base = {"dataset_path": "json", "output_type": "multiple_choice", "doc_to_text": "q", "doc_to_target": 0,
            "doc_to_choice": ["a", "b"], "test_split": "test"}
    _write(tasks, "mine_a", {**base, "task": "mine_a", "tag": "mine_tag"})
    _write(tasks, "mine_b", {**base, "task": "mine_b", "tag": "mine_tag", "metric_list": [{"metric": "bleu"}]})
    _write(tasks, "mine_gen", {**base, "task": "mine_gen", "output_type": "generate_until"})
    _write(tasks, "mine_group", {"group": "mine_group", "task": ["mine_a", "mine_b"]})
    _write(tasks, "mine_scored", {"group": "mine_scored", "task": ["mine_a"],
                                  "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}]})
    local = ti.local_index(str(tasks))
    # no metric_list: lm-eval's defaults for the output type
    assert local["mine_a"].metrics == ("acc", "acc_norm") and local["mine_gen"].metrics == ("exact_match",)
    assert local["mine_tag"] == ti.TaskInfo("mine_tag", ti.TAG, (), ("mine_a", "mine_b"))
    assert problems(builtin, ("mine_a", None), ("mine_gen", None), ("mine_scored", None), ("arc_easy", None),
                    include=str(tasks)) is None
    msg = problems(builtin, ("mine_tag", None), ("mine_group", None), ("mine_b", None), include=str(tasks))
    assert msg is not None
    tag, group, metric = msg.splitlines()
    assert tag.startswith("evaluation.benchmarks[0]: 'mine_tag' is an lm-eval tag, not a task or group: "
                          "it stands for mine_a, mine_b;")
    assert group == ("evaluation.benchmarks[1]: 'mine_group' is an lm-eval group without an aggregate score (its "
                     "YAML has no aggregate_metric_list), so it has no result of its own; list its tasks instead: "
                     "mine_a, mine_b")
    assert metric.startswith("evaluation.benchmarks[2]: mine_b reports none of the metrics read when no metric is "
                             "set (acc, acc_norm, exact_match); its metrics: bleu;")
    missing = problems(builtin, ("mine_c", None), include=str(tasks))
    assert missing is not None and f"searched evaluation.include_path={tasks} and lm-eval's" in missing
    assert "set evaluation.include_path" not in missing


def test_include_path_that_does_not_exist(builtin, tmp_path):
    msg = problems(builtin, ("mine_a", None), include=str(tmp_path / "nowhere"))
    assert msg is not None and f"evaluation.include_path={tmp_path / 'nowhere'} (no such directory)" in msg


def test_demo_tasks_without_reading_lm_evals_index(monkeypatch):
    from wildmerge.demo import GROUP, TASKS

    def no_builtin_index():
        raise AssertionError("lm-eval's built-in index read for demo tasks only")

    monkeypatch.setattr(ti, "builtin_index", no_builtin_index)
    local = ti.local_index("demo")
    assert set(local) == {*TASKS, GROUP}
    assert local[GROUP].metrics == ("acc",) and local["demo_count"].metrics == ("acc", "acc_norm")
    entries = [("evaluation.benchmarks[0]", "demo_count", None), ("evaluation.benchmarks[1]", GROUP, "acc"),
               ("homogeneous.tiny-llama.groups.memory.benchmarks[0]", "demo_facts", None)]
    assert ti.benchmark_problems(entries, "demo") is None
    msg = ti.benchmark_problems([("evaluation.benchmarks[0]", "demo_count", "exact_match")], "demo")
    assert msg == ("evaluation.benchmarks[0].metric: demo_count does not report 'exact_match'; "
                   "its metrics: acc, acc_norm; set metric to one of them")


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("metrics", [("acc", "acc_norm"), ("acc_norm",), ("exact_match", "f1"), ("bleu",), ()])
@pytest.mark.parametrize("wanted", [None, "acc_norm", "f1"])
def test_chosen_metric_is_the_one_the_evaluation_picks(metrics, wanted):
    """The DAG-build check and wildmerge.evaluation.lm_eval_run.pick_metric agree on every result."""
    info = ti.TaskInfo("t", ti.TASK, metrics)
    result = {"alias": "t", **{f"{m},none": 0.5 for m in metrics}, **{f"{m}_stderr,none": 0.1 for m in metrics}}
    try:
        picked: str | None = pick_metric(result, wanted)[0]
    except KeyError:
        picked = None
    assert ti.chosen_metric(info, wanted) == picked
    assert METRIC_FALLBACK == ("acc", "acc_norm", "exact_match")


def test_metric_names_as_lm_eval_reports_them():
    assert ti._metric_name({"metric": "/site/lm_eval/tasks/x/utils.acc_all"}) == "acc_all"
    assert ti._metric_name({"metric": "acc"}) == "acc"
    assert ti._metric_name({"metric": "org/metric", "hf_evaluate": True}) == "org/metric"
    assert ti._names({"metric": "acc"}) == ("acc",)  # an aggregate_metric_list written as one mapping


def test_builtin_index_is_cached_per_lm_eval_version(tmp_path, monkeypatch):
    import lm_eval.tasks
    from importlib.metadata import version

    built = []

    class FakeTaskManager:
        def __init__(self) -> None:
            built.append(1)
            kind = lambda k: SimpleNamespace(name=k)  # noqa: E731
            self.task_index = {
                "t1": SimpleNamespace(kind=kind("TASK"), cfg={"task": "t1", "output_type": "multiple_choice"}, tags={"tg"}),
                "tg": SimpleNamespace(kind=kind("TAG"), cfg=None, tags={"t1"}),
                "g": SimpleNamespace(kind=kind("GROUP"), cfg={"group": "g", "task": ["t1"]}, tags=set()),
            }

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", FakeTaskManager)
    first = ti.builtin_index()
    assert ti.builtin_index() == first and len(built) == 1  # the second read the cache
    assert (tmp_path / "wildmerge" / f"lm_eval_task_index-{ti.FORMAT}-{version('lm_eval')}.json").is_file()
    assert first == {"t1": ti.TaskInfo("t1", ti.TASK, ("acc", "acc_norm")),
                     "tg": ti.TaskInfo("tg", ti.TAG, (), ("t1",)),
                     "g": ti.TaskInfo("g", ti.GROUP, (), ("t1",))}


@pytest.mark.parametrize("benchmark", ["headqa", "ai2_arc", "mmlu", "leaderboard_bbh", "leaderboard_gpqa", "prost"])
def test_the_cached_index_finds_the_datasets_lm_evals_own_index_finds(builtin, benchmark):
    """The fetch job reads the cached index (builtin_dataset_index: milliseconds) where lm-eval's
    TaskManager takes seconds; both give the same datasets and hub files."""
    from wildmerge.hub.datasets import task_datasets

    cached = task_datasets(benchmark, None, ti.builtin_dataset_index())
    assert cached and cached == task_datasets(benchmark, None, _lm_eval_index())


@functools.cache
def _lm_eval_index():
    from wildmerge.hub.datasets import task_manager_index

    return task_manager_index(None, "mmlu")


# --------------------------------------------------------------------------- at DAG build


@pytest.mark.slow  # runs the workflow (a dry run)
def test_dry_run_stops_at_a_tag_and_an_unreported_metric(tmp_path):
    from workflow_helpers import smk

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["evaluation"]["benchmarks"] = ["demo_arith", "headqa", {"name": "demo_count", "metric": "exact_match"}]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", config=tmp_path / "study.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ("evaluation.benchmarks[1]: 'headqa' is an lm-eval tag, not a task or group: it stands for "
            "headqa_en, headqa_es") in out
    assert "evaluation.benchmarks[2].metric: demo_count does not report 'exact_match'; its metrics: acc, acc_norm" in out
    assert not (tmp_path / "results").exists()
