"""The reading of Snakemake's dry-run output (tests/workflow_helpers.py) that every rerun test
relies on: Snakemake 9.27.1's two shapes (a job stats table; "Nothing to be done"), captured
from dry runs of the small study of tests/test_incremental.py, and anything else an error, so
that `dry_run_jobs(...) == {}` cannot pass because the output was not understood."""

from __future__ import annotations

import pytest

from workflow_helpers import NOTHING_TO_DO, parse_job_stats, parse_job_wildcards

HEADER = """\
Assuming unrestricted shared filesystem usage.

SNAKEMAKE
=========
  Snakemake version: 9.27.1
  Config MD5: aea0b6a9666ed25408f731994ce20f83

Building DAG of jobs...
"""

STATS = """\
Job stats:
job            count
-----------  -------
merge              1
collect            1
figures            1
item_tables        1
tables             1
all                1
total              6
"""

REASONS = """
Reasons:
    (check individual jobs above for details)
    input files updated by another job:
        all, collect, figures, item_tables, tables
    output files have to be generated:
        merge
This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.
"""

# `snakemake -n --quiet rules` after deleting a merge manifest: the table, printed twice
QUIET = HEADER + STATS + "\n" + STATS + REASONS

# the same dry run without --quiet: the jobs (a group job's indented), between the two tables
JOBS = """
[Wed Dec  2 22:02:17 2026] Group job merge_eval (jobs in lexicogr. order):

    [Wed Dec  2 22:02:17 2026]
    rule merge:
        output: results/small/models/tiny-llama/m-fedd7e46a237, results/small/manifests/tiny-llama/m-fedd7e46a237.json
        jobid: 3
        reason: Missing output files: results/small/manifests/tiny-llama/m-fedd7e46a237.json
        wildcards: base=tiny-llama, merge=m-fedd7e46a237
        resources: tmpdir=/tmp, gpu=1
Would remove temporary output results/small/models/tiny-llama/m-fedd7e46a237

[Wed Dec  2 22:02:17 2026]
rule collect:
    output: results/small/scores.csv, results/small/norms.csv
    jobid: 2
    resources: tmpdir=/tmp
[Wed Dec  2 22:02:17 2026]
rule figures:
    jobid: 1
    resources: tmpdir=/tmp
[Wed Dec  2 22:02:17 2026]
rule tables:
    jobid: 12
    resources: tmpdir=/tmp
[Wed Dec  2 22:02:17 2026]
rule item_tables:
    jobid: 11
    resources: tmpdir=/tmp
[Wed Dec  2 22:02:17 2026]
localrule all:
    jobid: 0
    resources: tmpdir=/tmp
"""
FULL = HEADER + STATS + JOBS + STATS + REASONS

# a study whose every output is current
NOTHING = HEADER + NOTHING_TO_DO + "\n"

COUNTS = {"merge": 1, "collect": 1, "figures": 1, "item_tables": 1, "tables": 1, "all": 1}


def test_a_job_stats_table_is_read_as_snakemakes_counts():
    assert parse_job_stats(QUIET) == COUNTS
    assert parse_job_stats(FULL) == COUNTS
    assert parse_job_wildcards(FULL) == {
        "merge": {"base=tiny-llama, merge=m-fedd7e46a237"},
        **{rule: {""} for rule in ("collect", "figures", "tables", "item_tables", "all")},
    }


def test_nothing_to_be_done_is_the_only_empty_plan():
    assert parse_job_stats(NOTHING) == {}
    assert parse_job_wildcards(NOTHING) == {}


@pytest.mark.parametrize(
    ("out", "match"),
    [
        ("", "neither a job stats table nor"),
        (HEADER, "neither a job stats table nor"),  # cut off after the DAG build
        ("Traceback (most recent call last):\n  ...\nKeyError: 'x'\n", "neither a job stats table nor"),
        (HEADER + STATS.replace("job            count", "rule  jobs"), "without its header"),
        (HEADER + STATS.replace("total              6\n", ""), "without a matching 'total'"),
        (HEADER + STATS.replace("total              6", "total              7"), "without a matching 'total'"),
        (HEADER + STATS.replace("merge              1", "merge              one"), "unreadable job stats row"),
        (HEADER + STATS + "\n" + STATS.replace("merge              1", "merge              2")
         .replace("total              6", "total              7"), "tables disagree"),
        (HEADER + STATS + NOTHING_TO_DO + "\n", "both a job stats table and"),
    ],
    ids=["empty", "header-only", "traceback", "no-header", "no-total", "wrong-total", "bad-count", "disagree", "both"],
)
def test_anything_else_raises(out, match):
    with pytest.raises(ValueError, match=match):
        parse_job_stats(out)


def test_a_job_list_that_disagrees_with_the_job_stats_raises():
    one_job_missing = FULL.replace("rule figures:", "something else:")
    with pytest.raises(ValueError, match="its job stats say"):
        parse_job_wildcards(one_job_missing)
    with pytest.raises(ValueError, match="neither a job stats table nor"):
        parse_job_wildcards(HEADER + JOBS)  # jobs listed, but no table to check them against


@pytest.mark.slow  # runs Snakemake (it stops at the config check, in seconds)
def test_a_failed_dry_run_raises(tmp_path):
    from workflow_helpers import dry_run_job_wildcards, dry_run_jobs, write_config

    bad = write_config(tmp_path / "bad.yaml", {"no_such_key": 1})
    for dry_run in (dry_run_jobs, dry_run_job_wildcards):
        with pytest.raises(AssertionError, match="(?s)failed:.*no_such_key"):
            dry_run(tmp_path, config=bad)
