"""Merge one subset of experts into the base with mergekit and write its manifest."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

import time  # noqa: E402
from pathlib import Path  # noqa: E402

from wildmerge.failures import clear, record, refuse_if_recorded  # noqa: E402
from wildmerge.finite import NonFiniteWeightsError, explain_nonfinite_merge  # noqa: E402
from wildmerge.geometry import task_vector_norm  # noqa: E402
from wildmerge.merge import NonFiniteTensorError, merge  # noqa: E402
from wildmerge.provenance import atomic_write_json, model_hash, read_json, versions  # noqa: E402
from wildmerge.smk import limit_threads, setup_logging  # noqa: E402

smk = snakemake  # noqa: F821
log = setup_logging(smk)
limit_threads(smk)
spec = smk.params.spec
ck = smk.params.checkpoints  # the base and member folders (their records are the inputs)
device = smk.config["merge"]["device"]  # execution-only: not a param
out_dir = Path(smk.output.model)
info = [read_json(p) for p in smk.input.info]
# pre-flight resolved a vocabulary mismatch of a member: let mergekit reconcile the tokenizers
tokenizer_source = next(
    (res["tokenizer_source"] for i in info[1:] if (res := i["preflight"].get("resolution"))), None
)
t0 = time.time()
log.info(
    "merging %d experts %s into %s with %s %s",
    len(spec["members"]), spec["members"], ck["base"], spec["mergekit_method"], spec["params"],
)
marker = Path(str(smk.log[0]) + ".failed.json")
refuse_if_recorded(marker, [ck["base"], *ck["experts"], *smk.input.info])
try:
    merge(
        ck["base"],
        list(ck["experts"]),
        spec["mergekit_method"],
        spec["params"],
        out_dir,
        dtype=smk.params.dtype,
        device=device,
        tokenizer_source=tokenizer_source,
    )
except NonFiniteTensorError as err:
    cause = explain_nonfinite_merge(
        getattr(err, "tensors", []), ck["base"], dict(zip(spec["members"], ck["experts"]))
    )
    message = (
        f"merge {spec['merge_id']} of base '{spec['base']}' (method {spec['method']} "
        f"{spec['params']}, experts {spec['members']}): {err}; {cause}"
    )
    record(marker, message)
    raise NonFiniteWeightsError(message) from None
clear(marker)
t_merge = time.time() - t0
norm = task_vector_norm(ck["base"], out_dir)
manifest = {
    **spec,
    "inputs": {"base": info[0], "experts": dict(zip(spec["members"], info[1:]))},
    "output": {
        "path": str(out_dir),
        "sha256": model_hash(out_dir),
        "bytes": sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()),
    },
    "task_vector_l2": norm,
    "merge_seconds": round(t_merge, 3),
    "dtype": smk.params.dtype,
    "device": device,
    "versions": versions(),
}
atomic_write_json(Path(smk.output.manifest), manifest)
log.info("merged in %.1fs, ||merged - base||_2 = %.4f", t_merge, norm)
