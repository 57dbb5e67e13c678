"""Pre-flight one checkpoint against its base, and record its content hash (and hub revision)."""

from wildmerge.preflight import check_checkpoint
from wildmerge.provenance import atomic_write_json, checkpoint_record
from wildmerge.smk import setup_logging

smk = snakemake  # noqa: F821
log = setup_logging(smk)
ck = smk.params.checkpoint
report = check_checkpoint(
    smk.input.base,
    smk.input.model,
    name=ck.name if smk.wildcards.checkpoint != "base" else f"base of {smk.wildcards.base}",
    tokenizer_policy=smk.params.tokenizer_source,
    trust_remote_code=ck.trust_remote_code,
    base_name=smk.wildcards.base,
)
for warning in report["warnings"]:
    log.warning("%s: %s", ck.name, warning)
rec = checkpoint_record(smk.input.model, ck.source, ck.revision)
rec["name"] = ck.name
rec["preflight"] = report
log.info("%s: pre-flight %s, sha256 %s", ck.source, report["status"], rec["sha256"])
atomic_write_json(smk.output[0], rec)
