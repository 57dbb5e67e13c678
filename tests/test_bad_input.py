"""Bad input never turns into a wrong table: each bad config, checkpoint or score file is
fed to the workflow, which must stop with a short message naming the file/key and the fix,
and write nothing."""

from __future__ import annotations

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
