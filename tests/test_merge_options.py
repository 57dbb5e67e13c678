"""merge.options (issue 24): mergekit execution options, checked against MergeOptions at DAG
build, passed to mergekit, recorded in the merge's provenance."""

from __future__ import annotations

import pytest

from wildmerge.demo import tiny_models


def test_options_reach_mergekits_merge_options():
    from wildmerge.merging.mergekit_run import DEFAULT_OUT_SHARD_SIZE, merge_options

    opts = merge_options("cpu", {"low_cpu_memory": True, "num_threads": 2, "async_write": True, "write_threads": 2,
                                 "out_shard_size": 1000, "lazy_unpickle": False})
    assert (opts.low_cpu_memory, opts.num_threads, opts.async_write, opts.write_threads) == (True, 2, True, 2)
    assert (opts.out_shard_size, opts.lazy_unpickle) == (1000, False)  # over wildmerge's own settings
    plain = merge_options("cpu")
    assert (plain.device, plain.random_seed, plain.lazy_unpickle, plain.out_shard_size) == ("cpu", 0, True, DEFAULT_OUT_SHARD_SIZE)
    assert (plain.safe_serialization, plain.copy_tokenizer, plain.quiet) == (True, True, True)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"lazy_unpicle": True}, r"merge.options.lazy_unpicle: not a mergekit option \(did you mean `lazy_unpickle`\?\)"),
        ({"num_thread": 4}, r"merge.options.num_thread: not a mergekit option \(did you mean `num_threads`\?\)"),
        ({"num_threads": "many"}, r"merge.options.num_threads: .*integer.*'many'"),
        ({"low_cpu_memory": [1]}, r"merge.options.low_cpu_memory: .*bool"),
        ({"random_seed": 3}, r"merge.options.random_seed: not allowed: wildmerge fixes it"),
        ({"allow_crimes": True}, r"merge.options.allow_crimes: not allowed: pre-flight"),
        ({"unsafe_truncate_embeddings": True}, r"merge.options.unsafe_truncate_embeddings: not allowed.*tokenizer_source"),
        ({"device": "cuda"}, r"merge.options.device: not allowed: use merge.device"),
    ],
)
def test_bad_options_are_named_at_dag_build(options, match):
    from wildmerge.merging.mergekit_run import check_merge_options

    with pytest.raises(ValueError, match=match):
        check_merge_options(options, "cpu")


def test_refused_options_are_mergekit_fields():
    from mergekit.options import MergeOptions

    from wildmerge.merging.mergekit_run import REFUSED_OPTIONS

    assert set(REFUSED_OPTIONS) <= set(MergeOptions.model_fields)


def test_merge_runs_mergekit_with_the_options_and_records_them(tmp_path, monkeypatch):
    """An option reaches run_merge (num_threads is applied around it: mergekit's run_merge does not
    apply it) and the merged model's manifest records it."""
    import json
    import logging

    import mergekit.merge
    import torch

    from wildmerge.merging.merged_model import make_merged_model

    base = tiny_models.build("llama-3.1-8b", tmp_path / "base")
    expert = tiny_models.build("llama-3.1-8b", tmp_path / "expert", seed=1)
    seen = {}
    real = mergekit.merge.run_merge

    def spy(config, out, options, **kwargs):
        seen.update(options=options, threads=torch.get_num_threads())
        return real(config, out, options, **kwargs)

    monkeypatch.setattr(mergekit.merge, "run_merge", spy)
    threads = torch.get_num_threads()
    want = 2 if threads != 2 else 1
    options = {"num_threads": want, "low_cpu_memory": True, "out_shard_size": 10_000}
    records = [tmp_path / "base.json", tmp_path / "expert.json"]  # pre-flight records, as the merge reads them
    for r in records:
        r.write_text(json.dumps({"preflight": {}, "sha256": r.stem}))
    spec = {"base": "tiny", "merge_id": "m-000000000000", "method": "ta", "mergekit_method": "task_arithmetic",
            "params": {"lambda": 1.0}, "members": ["expert"]}
    manifest = make_merged_model(spec, {"base": str(base), "experts": [str(expert)]}, [str(r) for r in records],
                                 tmp_path / "m", tmp_path / "manifest.json", dtype="float32", device="cpu",
                                 options=options, marker=tmp_path / "marker", log=logging.getLogger("test"))
    assert seen["options"].low_cpu_memory is True and seen["options"].out_shard_size == 10_000
    assert seen["threads"] == want and torch.get_num_threads() == threads  # the job's own count again
    assert manifest["options"] == options == json.loads((tmp_path / "manifest.json").read_text())["options"]
    assert len(list((tmp_path / "m").glob("*.safetensors"))) > 1  # sharded as asked
