"""Evaluation details against lm-eval itself (a tiny model, small local task YAMLs): which
metric a score reads, that num_fewshot reaches lm-eval, size-weighted group aggregates, and
per-item outcomes of samples without the metric."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from wildmerge.evaluation.items import item_frame
from wildmerge.evaluation.lm_eval_run import pick_metric

COLORS = ["red", "blue", "green", "gold", "gray", "pink", "teal", "plum"]


# --------------------------------------------------------------------------- metric choice (no model)


def test_pick_metric_reads_the_benchmarks_metric_else_acc_acc_norm_exact_match():
    result = {"alias": "t", "acc_norm,none": 0.6, "acc_norm_stderr,none": 0.1, "exact_match,strict": 0.2,
              "acc,none": 0.4, "acc_stderr,none": 0.1}
    assert pick_metric(result, "acc_norm") == ("acc_norm", "acc_norm,none")
    assert pick_metric(result, "exact_match") == ("exact_match", "exact_match,strict")
    assert pick_metric(result, None) == ("acc", "acc,none")  # the fallback order, not the dict's
    no_acc = {k: v for k, v in result.items() if not k.startswith("acc,")}
    assert pick_metric(no_acc, None) == ("acc_norm", "acc_norm,none")
    assert pick_metric({"exact_match,strict": 0.2, "f1,none": 0.3}, None) == ("exact_match", "exact_match,strict")
    with pytest.raises(KeyError, match=r"\['acc_norm'\] not in lm-eval results \['acc,none'\]"):
        pick_metric({"acc,none": 0.4, "acc_stderr,none": 0.1}, "acc_norm")  # no fallback for a metric asked for
    with pytest.raises(KeyError, match="f1,none"):
        pick_metric({"f1,none": 0.3, "acc_stderr,none": 0.1}, None)  # a stderr is not the metric


def test_samples_without_the_metric_are_dropped_from_the_outcomes():
    """lm-eval logs a sample per (doc, filter); one without the reported metric (e.g. another
    filter's, or a task of a group scored with another metric) is no outcome of that metric."""
    samples = {
        "t": [
            {"doc_id": 0, "filter": "none", "acc": 1.0, "filtered_resps": [(-1.0, False), (-2.0, False)], "doc_hash": "a" * 64},
            {"doc_id": 1, "filter": "none", "exact_match": 1.0, "filtered_resps": ["x"]},  # no acc
            {"doc_id": 2, "filter": "none", "acc": 0.0, "filtered_resps": [(-3.0, False), (-1.0, False)]},
            {"doc_id": 3, "filter": "strict", "acc": 1.0, "filtered_resps": [(-1.0, False), (-2.0, False)]},  # other filter
        ],
        "u": [{"doc_id": 0, "filter": "none", "bleu": 3.0}],  # a task without acc at all
    }
    df = item_frame(samples, ["t", "u"], "acc", "none")
    assert list(df.item_id) == ["t/0", "t/2"] and list(df.correct) == [1.0, 0.0]
    assert [list(x) for x in df.logliks] == [[-1.0, -2.0], [-3.0, -1.0]]
    assert list(df.doc_hash) == ["a" * 16, ""]


# --------------------------------------------------------------------------- through lm-eval


def _rows(n: int, seed: int) -> list[dict]:
    """Multiple-choice items whose two choices differ much in length (one word vs a repeated
    one), so that lm-eval's acc (argmax log-likelihood) and acc_norm (argmax per character) differ."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(COLORS, 2)
        out.append({"query": f"color of {rng.randint(0, 11)} is", "choices": [a, " ".join([b] * rng.randint(2, 5))],
                    "gold": rng.randint(0, 1)})
    return out


def _task(folder: Path, name: str, rows: list[dict], pin_zero_shot: bool = False) -> None:
    from wildmerge.demo.tasks import task_config

    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = task_config(name, data)  # metric_list: acc and acc_norm
    if not pin_zero_shot:
        del cfg["num_fewshot"]
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


MC = _rows(12, 1)
SIZES = {"sz_small": _rows(4, 2), "sz_large": _rows(12, 3)}
BENCHMARKS = [
    {"name": "mc_norm", "metric": "acc_norm"},
    {"name": "mc_plain"},
    {"name": "wgroup"},  # size-weighted group of sz_small + sz_large
    {"name": "mc_shots", "num_fewshot": 2},
    {"name": "mc_pinned", "num_fewshot": 2},  # its YAML says num_fewshot: 0
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One evaluate_model call on a tiny model (loaded once; two lm-eval calls: 0- and 2-shot),
    with lm-eval's own results kept as lm-eval returned them."""
    import lm_eval

    from wildmerge.demo import tiny_models
    from wildmerge.evaluation.lm_eval_run import evaluate_model
    from wildmerge.evaluation.settings import EvalSettings

    work = tmp_path_factory.mktemp("evaluation")
    tasks = work / "tasks"
    tasks.mkdir()
    for name in ("mc_norm", "mc_plain", "mc_shots"):
        _task(tasks, name, MC)
    _task(tasks, "mc_pinned", MC, pin_zero_shot=True)
    for name, rows in SIZES.items():
        _task(tasks, name, rows)
    (tasks / "wgroup.yaml").write_text(yaml.safe_dump({
        "group": "wgroup", "task": list(SIZES),
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}],
        "metadata": {"version": 1.0},
    }, sort_keys=False))
    model = tiny_models.build("llama-3.1-8b", work / "model", seed=0)
    results: list[dict] = []
    run = lm_eval.simple_evaluate

    def keep(*args, **kwargs):
        res = run(*args, **kwargs)
        results.append(res)
        return res

    out = work / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval, "simple_evaluate", keep)
        evaluate_model(
            model, BENCHMARKS, {b["name"]: out / f"{b['name']}.json" for b in BENCHMARKS},
            EvalSettings(dtype="float32", seed=1234, batch_size=8, device="cpu", include_path=str(tasks)),
            items_files={b["name"]: out / f"{b['name']}.parquet" for b in BENCHMARKS},
        )
    scores = {b["name"]: json.loads((out / f"{b['name']}.json").read_text()) for b in BENCHMARKS}
    return scores, out, results


def _items(out: Path, name: str):
    from wildmerge.evaluation.items import read_items

    return read_items(out / f"{name}.parquet")


def _by_hand(items, rows: list[dict], normalize: bool) -> np.ndarray:
    """lm-eval's acc (argmax log-likelihood) or acc_norm (argmax log-likelihood per character of
    the choice) per item, from the logged log-likelihoods."""
    out = []
    for doc_id, lls in zip(items.doc_id, items.logliks):
        row = rows[int(doc_id)]
        lls = np.asarray(lls, dtype=float)
        if normalize:
            lls = lls / np.array([len(c) for c in row["choices"]], dtype=float)
        out.append(float(int(np.argmax(lls)) == row["gold"]))
    return np.array(out)


def test_the_benchmarks_metric_is_read_else_acc(evaluated):
    """``metric: acc_norm`` reads acc_norm; without one the fallback's first reported metric
    (acc) is read. Both checked against acc / acc_norm recomputed from the logged log-likelihoods."""
    scores, out, _ = evaluated
    norm, plain = scores["mc_norm"], scores["mc_plain"]
    assert (norm["metric"], plain["metric"]) == ("acc_norm", "acc")
    assert {"acc,none", "acc_norm,none"} <= set(norm["metrics"]) and {"acc,none", "acc_norm,none"} <= set(plain["metrics"])
    assert norm["value"] == norm["metrics"]["acc_norm,none"] and plain["value"] == plain["metrics"]["acc,none"]
    items_norm, items_plain = _items(out, "mc_norm"), _items(out, "mc_plain")
    assert list(items_norm.correct) == list(_by_hand(items_norm, MC, normalize=True))  # per-item: the same metric
    assert list(items_plain.correct) == list(_by_hand(items_plain, MC, normalize=False))
    assert norm["value"] == pytest.approx(_by_hand(items_norm, MC, normalize=True).mean())
    assert plain["value"] == pytest.approx(_by_hand(items_plain, MC, normalize=False).mean())
    assert norm["value"] != pytest.approx(plain["value"])  # the data makes the two metrics differ


def test_num_fewshot_reaches_lm_eval(evaluated):
    """The score file's num_fewshot is lm-eval's own ``n-shot``, and the contexts lm-eval logged
    hold that many solved examples (other items of the task) before the item's query."""
    scores, _, results = evaluated
    zero, two = results  # evaluate_model calls lm-eval once per few-shot setting
    assert zero["n-shot"]["mc_plain"] == 0 and two["n-shot"]["mc_shots"] == 2
    assert scores["mc_shots"]["num_fewshot"] == 2 and scores["mc_plain"]["num_fewshot"] == 0
    solved = {f"{r['query']} {r['choices'][r['gold']]}" for r in MC}
    for sample in two["samples"]["mc_shots"]:
        query = MC[sample["doc_id"]]["query"]
        for context, _ in sample["arguments"]:
            *shots, last = context.split("\n\n")
            assert last == query and len(shots) == 2 and set(shots) <= solved
    for sample in zero["samples"]["mc_plain"]:
        assert {context for context, _ in sample["arguments"]} == {MC[sample["doc_id"]]["query"]}


def test_a_task_yaml_pinning_zero_shots_wins_and_the_score_file_says_so(evaluated):
    """lm-eval keeps a task's ``num_fewshot: 0`` whatever is asked (lm_eval/evaluator.py); the
    score file records what lm-eval used (0), not the config's 2."""
    scores, _, results = evaluated
    two = results[1]
    assert two["n-shot"]["mc_pinned"] == 0 and scores["mc_pinned"]["num_fewshot"] == 0
    for sample in two["samples"]["mc_pinned"]:
        assert "\n\n" not in sample["arguments"][0][0]


def test_size_weighted_group_is_the_mean_over_all_its_items(evaluated):
    """A group with ``weight_by_size: true`` (like MMLU) scores the mean over all items of its
    tasks: with 4 and 12 items, not the mean of the two task means."""
    scores, out, _ = evaluated
    items = _items(out, "wgroup")
    assert items.groupby("task").size().to_dict() == {"sz_large": 12, "sz_small": 4}
    weighted = items.correct.sum() / len(items)
    unweighted = items.groupby("task").correct.mean().mean()
    assert scores["wgroup"]["value"] == pytest.approx(weighted)
    assert weighted != pytest.approx(unweighted)  # the test data tells the two apart
    for task, rows in SIZES.items():  # and the per-item outcomes are lm-eval's acc of each item
        part = items[items.task == task]
        assert list(part.correct) == list(_by_hand(part, rows, normalize=False))
