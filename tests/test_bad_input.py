"""Bad input never turns into a wrong table: each bad config, checkpoint or score file is
fed to the workflow, which must stop with a short message naming the file/key and the fix,
and write nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workflow_helpers import REPO, smk

DEMO = (REPO / "config.yaml").read_text()


def _dry_run_fails(tmp_path, text: str):
    cfg = tmp_path / "study.yaml"
    cfg.write_text(text)
    proc = smk(tmp_path, "-n", config=cfg, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert not (tmp_path / "results").exists()  # nothing written
    return out


def test_duplicate_yaml_key_names_both_lines(tmp_path):
    text = DEMO.replace("      compare: demo:compare\n", "      compare: demo:compare\n      arith: demo:facts\n")
    out = _dry_run_fails(tmp_path, text)
    lines = text.splitlines()
    first, second = [i + 1 for i, line in enumerate(lines) if line.strip().startswith("arith:")]
    assert f"study.yaml: key 'arith' appears twice in one mapping (lines {first} and {second})" in out


def test_same_checkpoint_under_two_names(tmp_path):
    out = _dry_run_fails(tmp_path, DEMO.replace("      compare: demo:compare\n", "      compare: demo:arith\n"))
    assert "bases.tiny-llama.experts: 'arith' and 'compare' are the same checkpoint (demo:arith)" in out


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("methods:", "methds:", "(top level): unknown key `methds` (did you mean `methods`?)"),
        (
            "      arith: demo:arith\n",
            "      arith: {source: demo:arith, revison: main}\n",
            "bases.tiny-llama.experts.arith: unknown key `revison` (did you mean `revision`?); "
            "allowed: source, revision, trust_remote_code",
        ),
    ],
    ids=["top-level", "checkpoint-mapping"],
)
def test_schema_error_is_a_few_lines_with_a_close_match(tmp_path, old, new, expected):
    out = _dry_run_fails(tmp_path, DEMO.replace(old, new))
    assert expected in out
    assert "study.yaml" in out
    assert "is not valid under any of the given schemas" not in out
    assert "additionalProperties" not in out  # no schema dump
    assert len(out.splitlines()) < 15


@pytest.mark.parametrize(
    "source, expected",
    [
        ("models/ghost", "'models/ghost' is not a local directory (models/ghost does not exist) and not a hub id (org/name"),
        ("meta-llama//Llama 3", "'meta-llama//Llama 3' is not a local directory"),
        ("org/name/extra", "'org/name/extra' is not a local directory"),
        ("https://huggingface.co/org/name", "for a hub URL write only the id: org/name"),
    ],
)
def test_source_neither_directory_nor_hub_id(tmp_path, source, expected):
    (tmp_path / "models").mkdir()  # so "models/ghost" is meant as a local path
    out = _dry_run_fails(tmp_path, DEMO.replace("      arith: demo:arith\n", f"      arith: '{source}'\n"))
    assert f"bases.tiny-llama.experts.arith: '{source}' is not a local directory" in out
    assert expected in out
    assert "MissingInputException" not in out


def test_unknown_benchmark_names_the_index_and_close_matches(tmp_path):
    out = _dry_run_fails(tmp_path, DEMO.replace("demo_count]", "demo_cuont]"))
    assert "lm-eval has no task ['demo_cuont']; searched the demo tasks (evaluation.include_path: demo)" in out
    assert "demo_cuont: close matches demo_count" in out
    assert "set evaluation.include_path" not in out  # it is set already


# ------------------------------------------------- issue 26: every config mistake stops the DAG build

#: the demo base listed again under another name
TWO_BASES = (
    "  other:\n    model: demo:base\n"
    "    experts: {arith: demo:arith, compare: demo:compare, facts: demo:facts, antonym: demo:antonym}\n\nsubsets:"
)
RANGE = "must be in (0, 1] (the fraction of each task vector kept; 0 keeps nothing, i.e. the base itself)"


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("density: 0.1, normalize: true}}\n  model_stock", "density: 1.5, normalize: true}}\n  model_stock",
         f"methods.ties: parameter `density` of merge method 'ties' {RANGE}, got 1.5"),
        ("density: 0.1, normalize: true}}\n  model_stock", "density: 0, normalize: true}}\n  model_stock",
         f"methods.ties: parameter `density` of merge method 'ties' {RANGE}, got 0"),
        ("beta: 0.2}}\n\nmerge", "beta: 1.5}}\n\nmerge",
         "methods.ties_sb: parameter `beta` of merge method 'ties_subspace_boosting' must be in [0, 1] "
         "(the cumulative singular-value share after which values are boosted), got 1.5"),
        ("table1: [ta, ties, model_stock]", "table1: [ta, tiez]",
         "tables.table1: 'tiez' is not a method under methods (did you mean `ties`?); known: ta, ties, model_stock, "
         "tsv, iso_c, ta_sb, ties_sb"),
        ("arith: demo:arith\n", "arith: demo:arithh\n",
         "bases.tiny-llama.experts.arith: 'demo:arithh' is not in the demo zoo (did you mean `demo:arith`?); "
         "it has: demo:base, demo:arith, demo:compare"),
        ("  seed: 1234\n", "  seed: 1234\n  budget: 1\n",
         "evaluation.budget: 1 is a bare integer, which could mean a fraction or a number of items: write a "
         "fraction with a decimal point, e.g. `0.25` (or 1.0 for every item), or a number of items per "
         "benchmark as `{items: 1}`"),
        ("  seed: 1234\n", "  seed: 1234\n  budget: 500\n", "`{items: 500}`"),
        ("\nsubsets:", TWO_BASES,
         "bases: 'tiny-llama' and 'other' are the same checkpoint (demo:base); every job would run twice "
         "and the averages would count it as two bases: remove one"),
        ("compare: demo:compare\n", "compare: demo:base\n",
         "bases.tiny-llama.experts.compare: 'demo:base' is the base itself (bases.tiny-llama.model: demo:base); "
         "its task vector is zero"),
        ("results: results/demo", "results: a-file",
         "results: 'a-file' is a file, not a folder; point results at a folder (made if missing)"),
        ("keep_models: false", "keep_models: false\n  models_dir: a-file/models",
         "merge.models_dir: 'a-file/models' cannot be made: "),
    ],
    ids=["density-1.5", "density-0", "beta", "tables", "demo-name", "budget-1", "budget-500", "two-bases",
         "expert-is-base", "results-file", "models-dir-under-file"],
)
def test_config_mistake_stops_the_dag_build_naming_the_key(tmp_path, old, new, expected):
    (tmp_path / "a-file").write_text("not a folder")
    assert old in DEMO
    out = _dry_run_fails(tmp_path, DEMO.replace(old, new, 1))
    assert expected in out
    assert "Traceback" not in out and len(out.splitlines()) < 10, out


def test_unwritable_results_or_models_dir_is_named(tmp_path, monkeypatch):
    """Tests run as root, for whom every folder is writable: os.access stands in for the file
    system. models_dir's writability is checked only for local runs (a cluster's may be node-local)."""
    import yaml

    from wildmerge.study.configcheck import ConfigFileError, check_output_dirs
    from wildmerge.study.plan import Study

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    cfg = yaml.safe_load(DEMO)
    cfg["results"] = str(locked / "study")
    with pytest.raises(ConfigFileError) as err:
        check_output_dirs(Study(cfg))
    assert str(err.value) == (
        f"results: '{locked / 'study'}' (its nearest existing folder {locked}) is not writable by this user; "
        f"point results at a folder you can write to"
    )
    cfg["results"] = str(tmp_path / "results")
    cfg["merge"] = {"models_dir": str(locked)}
    with pytest.raises(ConfigFileError, match=f"merge.models_dir: '{locked}' is not writable"):
        check_output_dirs(Study(cfg))
    check_output_dirs(Study(cfg), local=False)  # on a cluster: not judged from here


def test_expert_in_the_base_folder_under_another_spelling_stops_the_dag_build(tmp_path):
    import yaml

    cfg, base, _ = _tiny_study(tmp_path)
    cfg["bases"]["tiny"]["experts"]["b"] = f"{base}/."
    out = _dry_run_fails(tmp_path, yaml.safe_dump(cfg))
    assert f"bases.tiny.experts.b: '{base}/.' is the base itself (bases.tiny.model: {base})" in out


# --------------------------------------------------------------------------- YAML syntax


TAB = DEMO.replace("  tiny-llama:\n", "\ttiny-llama:\n", 1)
BRACE = DEMO.replace("normalize: true}}\n  ties:", "normalize: true}\n  ties:", 1)
TAB_LINE = DEMO.splitlines().index("  tiny-llama:") + 1
BRACE_LINE = next(i for i, line in enumerate(DEMO.splitlines(), 1) if line.startswith("  ta:"))


def test_yaml_syntax_error_names_file_line_and_cause(tmp_path):
    """Tabs and an unclosed bracket: the file, the line, YAML's problem, and each its own cause
    (the Snakefile checks the default config.yaml so before Snakemake reads it)."""
    from wildmerge.study.configcheck import ConfigFileError, check_config_files

    for name, text in (("tab.yaml", TAB), ("brace.yaml", BRACE)):
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigFileError) as tab:
        check_config_files([tmp_path / "tab.yaml"])
    assert str(tab.value) == (
        f"{tmp_path / 'tab.yaml'}, line {TAB_LINE}, column 1: YAML syntax error: found character '\\t' that "
        f"cannot start any token ('\\ttiny-llama:'); YAML indents with spaces only: replace the tab(s) with spaces"
    )
    with pytest.raises(ConfigFileError) as brace:
        check_config_files([tmp_path / "brace.yaml"])
    msg = str(brace.value)
    assert msg.startswith(f"{tmp_path / 'brace.yaml'}, line {BRACE_LINE + 1}, column 3: YAML syntax error: "
                          f"expected ',' or '}}', but got '<scalar>'")
    assert f"inside the `{{` opened at line {BRACE_LINE}, column 7" in msg and "is it closed" in msg
    assert "tab" not in msg


def test_yaml_syntax_error_of_the_default_config_stops_the_dag_build(tmp_path):
    """The demo's config.yaml (read by the Snakefile's `configfile:`) is checked by the workflow
    before Snakemake's own loader, whose message names neither file nor line."""
    import subprocess

    from workflow_helpers import OFFLINE, SNAKEMAKE

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "rules", "schemas", "scripts", "wildmerge", "report", "envs"):
        (repo / name).symlink_to(REPO / name)
    (repo / "config.yaml").write_text(TAB)
    proc = subprocess.run([*SNAKEMAKE, "--snakefile", str(repo / "Snakefile"), "--directory", str(tmp_path), "-n"],
                          capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"invalid config: {repo / 'config.yaml'}, line {TAB_LINE}, column 1: YAML syntax error" in out
    assert "replace the tab(s) with spaces" in out


def test_yaml_syntax_error_of_a_configfile_is_named_by_the_precheck(tmp_path):
    """Snakemake reads --configfile files before the workflow runs, with a generic message (no
    file, no line, a tab hint for any error): `make run` checks them first with
    `python -m wildmerge.study.configcheck <snakemake arguments>`, which names file, line, cause."""
    import subprocess
    import sys

    (tmp_path / "brace.yaml").write_text(BRACE)
    generic = _dry_run_fails(tmp_path, BRACE)
    assert "Config file is not valid JSON or YAML" in generic  # Snakemake's own, before wildmerge's code
    proc = subprocess.run([sys.executable, "-m", "wildmerge.study.configcheck", "--cores", "2", "--configfile",
                           str(tmp_path / "brace.yaml"), "-n"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert f"invalid config: {tmp_path / 'brace.yaml'}, line {BRACE_LINE + 1}, column 3" in proc.stderr
    assert f"inside the `{{` opened at line {BRACE_LINE}, column 7" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "wildmerge.study.configcheck", "--configfile", "config.yaml",
                         "config/ablations-demo.yaml"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    "options, expected",
    [
        ("{lazy_unpicle: true}", "merge.options.lazy_unpicle: not a mergekit option (did you mean `lazy_unpickle`?)"),
        ("{num_threads: many}", "merge.options.num_threads: Input should be a valid integer"),
        ("{random_seed: 1}", "merge.options.random_seed: not allowed: wildmerge fixes it (0)"),
    ],
)
def test_bad_merge_option_is_named_at_dag_build(tmp_path, options, expected):
    assert "  keep_models: false\n" in DEMO
    out = _dry_run_fails(tmp_path, DEMO.replace("  keep_models: false\n", f"  keep_models: false\n  options: {options}\n"))
    assert f"invalid config: {expected}" in out
    assert len(out.splitlines()) < 15


# --------------------------------------------------------------------------- checkpoints


def _tiny_study(tmp_path, **experts_extra):
    """A study of tiny local checkpoints (no demo training): base, experts a and b."""
    import yaml
    from test_preflight import make_ckpt

    base = make_ckpt(tmp_path / "ckpt" / "base")
    # fine-tunes: the base's layout, other weights (a copy of the base is refused by pre-flight)
    experts = {e: make_ckpt(tmp_path / "ckpt" / e, seed=i) for i, e in enumerate(("a", "b"), start=1)}
    cfg = yaml.safe_load(DEMO)
    cfg["bases"] = {"tiny": {"model": str(base), "experts": {e: str(d) for e, d in experts.items()}}}
    cfg["subsets"] = {"sizes": [2], "per_size": 1, "seed": 0}
    cfg["tables"] = {"table1": ["ta"]}
    return cfg, base, experts


def _poison(model_dir, value=float("nan")) -> str:
    """Set one element of one tensor of a checkpoint to NaN/Inf; return the tensor's name."""
    from safetensors.torch import load_file, save_file

    f = model_dir / "model.safetensors"
    tensors = load_file(f)
    name = sorted(n for n in tensors if n.endswith("mlp.down_proj.weight"))[0]
    tensors[name][0, 0] = value
    save_file(tensors, f, metadata={"format": "pt"})
    return name


def test_nonfinite_checkpoint_stops_preflight_and_is_not_retried(tmp_path):
    import yaml

    cfg, _, experts = _tiny_study(tmp_path)
    tensor = _poison(experts["b"])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/demo/checkpoints/tiny/expert-b.json"
    proc = smk(tmp_path, "--cores", "1", "--retries", "2", target, config=config, check=False)
    log = (tmp_path / "results/demo/logs/preflight/tiny/expert-b.log").read_text()
    assert proc.returncode != 0
    assert not (tmp_path / target).exists()
    named = f"expert 'b' ({experts['b']}, config key bases.tiny.experts.b) has non-finite weights in 1 tensor(s): {tensor} (1 NaN, 0 Inf"
    assert named in log
    # Snakemake retried twice; the last attempt failed at once with the recorded message
    assert (proc.stdout + proc.stderr).count("Error in rule preflight") == 3
    assert "not retried: this failure is deterministic" in log
    # a fixed checkpoint (newer than the record) is checked again and passes
    _poison(experts["b"], 0.0)
    smk(tmp_path, "--cores", "1", target, config=config)
    assert (tmp_path / target).exists()


def test_merge_that_overflows_names_the_experts_and_is_not_retried(tmp_path):
    import yaml
    from test_preflight import make_ckpt

    from workflow_helpers import dry_run_job_wildcards, evaluation_record

    cfg, base, experts = _tiny_study(tmp_path)
    make_ckpt(tmp_path / "ckpt" / "b-trained", seed=3)  # b: other weights, same layout
    experts["b"] = tmp_path / "ckpt" / "b-trained"
    cfg["bases"]["tiny"]["experts"]["b"] = str(experts["b"])
    cfg["methods"] = {"ta": {"method": "task_arithmetic", "params": {"lambda": 1.0e39, "normalize": False}}}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    (wc,) = dry_run_job_wildcards(tmp_path, config=config)["merge_evaluate"]
    mid = wc.split("model=")[1].split(",")[0].strip()
    target = f"results/demo/manifests/tiny/{mid}.json"
    # the job that merges and scores it, retried once: the retry refuses at once
    record = evaluation_record(tmp_path, config, "tiny", mid)
    proc = smk(tmp_path, "--cores", "1", "--retries", "1", record, config=config, check=False)
    assert proc.returncode != 0
    (log_file,) = (tmp_path / f"results/demo/logs/merge_evaluate/tiny/{mid}").glob("*.log")
    log = log_file.read_text()
    assert f"merge {mid} of base 'tiny' (method ta" in log
    assert "experts ['a', 'b']" in log and "non-finite values in" in log
    assert "the inputs of these tensors are finite in the base and in every expert (a, b)" in log
    assert "not retried: this failure is deterministic" in log
    assert not (tmp_path / target).exists()
    assert not list((tmp_path / "results/demo/models/tiny").glob("*"))  # no merged model left


# --------------------------------------------------------------------------- score files


def _truncate(path):
    path.write_text(path.read_text()[:40])


def _from_other_model(path):
    other = sorted(p for p in path.parent.parent.iterdir() if p != path.parent)[0] / path.name
    path.write_text(other.read_text())


def _edit_value(path):
    import json

    record = json.loads(path.read_text())
    record["value"] = "0.9"  # hand-edited; its score key still says it is current
    path.write_text(json.dumps(record))


def test_spoiled_score_file_is_scored_again_or_stops_aggregation(demo_run, tmp_path):
    """A truncated score file is not current: the next run scores exactly that (model,
    benchmark) again. One edited by hand that still looks current stops the aggregation,
    naming the file and the command that redoes it, and no table is left looking current."""
    import shutil

    from workflow_helpers import dry_run_job_wildcards

    work = Path(shutil.copytree(demo_run, tmp_path / "work", symlinks=True))
    res = work / "results/demo"
    score = res / "scores/tiny-llama/expert-arith/demo_arith.json"
    original = score.read_text()
    _truncate(score)
    jobs = dry_run_job_wildcards(work)
    evals = {r: w for r, w in jobs.items() if r.startswith("evaluate")}
    assert [w for ws in evals.values() for w in ws] == ["base=tiny-llama, model=expert-arith"], jobs
    assert "merge" not in jobs

    score.write_text(original)
    _edit_value(score)
    proc = smk(work, "--cores", "1", "--forcerun", "collect", check=False)
    out = proc.stdout + proc.stderr + (res / "logs/collect.log").read_text()
    assert proc.returncode != 0
    assert "results/demo/scores/tiny-llama/expert-arith/demo_arith.json: " in out
    assert "redo it with `rm results/demo/scores/tiny-llama/expert-arith/demo_arith.json && snakemake`" in out
    assert "JSONDecodeError" not in out and "Traceback" not in proc.stdout
    assert not (res / "scores.csv").exists()
    # nothing made from the previous scores.csv is left looking current
    assert not list((res / "tables").glob("*"))
    assert not (res / "figures/accuracy_vs_n.png").exists()


def test_partial_merge_of_a_killed_run_is_removed_after_a_config_change(tmp_path):
    import yaml

    cfg, _, _ = _tiny_study(tmp_path)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    # a merge killed mid-write, of a method the config no longer has
    partial = tmp_path / "results/demo/models/tiny/m-0123456789ab.partial"
    partial.mkdir(parents=True)
    (partial / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 64)
    smk(tmp_path, "-n", config=config)
    assert partial.exists()  # a dry run changes nothing
    proc = smk(tmp_path, "--cores", "1", "results/demo/checkpoints/tiny/base.json", config=config)
    assert not partial.exists()
    assert f"removed {partial.relative_to(tmp_path)} (left by a killed merge)" in proc.stderr


def test_missing_tokenizer_stops_preflight_naming_the_checkpoint(tmp_path):
    import yaml

    cfg, _, experts = _tiny_study(tmp_path)
    for f in experts["a"].iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            f.unlink()
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/demo/checkpoints/tiny/expert-a.json"
    proc = smk(tmp_path, "--cores", "1", target, config=config, check=False)
    log = (tmp_path / "results/demo/logs/preflight/tiny/expert-a.log").read_text()
    assert proc.returncode != 0
    assert f"expert 'a' ({experts['a']}): its tokenizer cannot be loaded, so its evaluation would fail" in log
    assert not (tmp_path / target).exists()


def test_expert_with_the_base_weights_stops_preflight_naming_both(tmp_path):
    """A copy of the base's folder passes the DAG build (another folder) but not pre-flight."""
    import shutil

    import yaml

    cfg, base, experts = _tiny_study(tmp_path)
    shutil.rmtree(experts["b"])
    shutil.copytree(base, experts["b"])
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = "results/demo/checkpoints/tiny/expert-b.json"
    proc = smk(tmp_path, "--cores", "1", target, config=config, check=False)
    log = (tmp_path / "results/demo/logs/preflight/tiny/expert-b.log").read_text()
    assert proc.returncode != 0
    assert (
        f"preflight failed for expert 'b' ({experts['b']}):\n  - it has the same weights as the base "
        f"(identical safetensors files, so the same sha256): base 'tiny' ({base})"
    ) in log
    assert not (tmp_path / target).exists()


def test_nonfinite_merge_names_the_expert_it_came_from(tmp_path):
    """When pre-flight was bypassed (a checkpoint replaced after it passed), the merge's
    message re-checks the offending tensors' inputs and names the expert."""
    from wildmerge.preflight.finite import explain_nonfinite_merge, nonfinite_tensors

    _, base, experts = _tiny_study(tmp_path)
    tensor = _poison(experts["b"], float("inf"))
    bad = nonfinite_tensors(experts["b"])
    assert bad == [f"{tensor} (0 NaN, 1 Inf of 512)"]
    msg = explain_nonfinite_merge(bad, base, experts)
    assert msg.startswith(f"the non-finite values come from expert 'b' ({tensor} (0 NaN, 1 Inf")
    assert "'a'" not in msg


@pytest.mark.parametrize(
    "spoil, why",
    [(_truncate, "not valid JSON"), (_from_other_model, "model_id is 'base' but the file's path says 'expert-a'")],
    ids=["truncated", "other-model"],
)
def test_collect_scores_names_a_spoiled_score_file_and_its_redo_command(tmp_path, spoil, why):
    import json

    from wildmerge.aggregate.collect import collect_scores

    scores = tmp_path / "results/scores/tb"
    for model in ("base", "expert-a"):
        (scores / model).mkdir(parents=True)
        record = {"base": "tb", "model_id": model, "role": "base" if model == "base" else "expert",
                  "n": 0 if model == "base" else 1, "benchmark": "x", "metric": "acc", "value": 0.5}
        (scores / model / "x.json").write_text(json.dumps(record))
    files = [scores / m / "x.json" for m in ("base", "expert-a")]
    assert len(collect_scores(files)) == 2
    spoil(files[1])
    with pytest.raises(ValueError, match="redo it with") as err:
        collect_scores(files)
    assert str(err.value).startswith(f"{files[1]}: {why}")
    assert f"redo it with `rm {files[1]} && snakemake`" in str(err.value)


def test_missing_local_path_read_as_hub_id_says_so_and_fails_once(tmp_path):
    """No models/ here: 'models/ghost' is a valid hub id, so it is read as one; the dry run says
    so (the hub is offline), and the fetch fails once, naming the key and both readings."""
    cfg = tmp_path / "study.yaml"
    cfg.write_text(DEMO.replace("      arith: demo:arith\n", "      arith: models/ghost\n"))
    plan = smk(tmp_path, "-n", config=cfg)
    assert "read as hub ids (no local directory of that name exists here)" in plan.stdout + plan.stderr
    assert "models/ghost" in plan.stdout + plan.stderr
    run = smk(tmp_path, "--cores", "1", "fetch_hub", config=cfg, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert out.count("Error in rule fetch_hub_model") == 1, out  # not retried
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert (
        "bases.tiny-llama.experts.arith: 'models/ghost' (read as a hub id: no local directory "
        "models/ghost exists here) is not fetched yet and the hub is offline"
    ) in logs + out
    hub = tmp_path / "resources" / "hub"
    assert not hub.exists() or not any(f.is_file() for f in hub.rglob("*"))  # nothing written
