"""Pre-flight one checkpoint against its base (headers, every tensor finite, the
tokenizer loads), and
record its content hash (and hub revision)."""

from wildmerge.warm import run_warm

run_warm()  # in a local run: forked from the warm worker (imports done); returns here there

from wildmerge.failures import clear, marker_for, record, refuse_if_recorded  # noqa: E402
from wildmerge.preflight.finite import NonFiniteWeightsError, nonfinite_tensors  # noqa: E402
from wildmerge.preflight.checks import PreflightError, check_checkpoint  # noqa: E402
from wildmerge.provenance import atomic_write_json, checkpoint_record  # noqa: E402
from wildmerge.smk import setup_logging  # noqa: E402
from wildmerge.study.rerun import pending_content_file  # noqa: E402


class TokenizerLoadError(ValueError):
    """The tokenizer in a checkpoint's folder does not load."""


smk = snakemake  # noqa: F821
log = setup_logging(smk)
ck = smk.params.checkpoint
marker = marker_for(smk.log[0])
refuse_if_recorded(marker, [smk.input.model, smk.input.base])
try:
    report = check_checkpoint(
        smk.input.base,
        smk.input.model,
        name=ck.name if smk.wildcards.checkpoint != "base" else f"base of {smk.wildcards.base}",
        tokenizer_policy=smk.params.tokenizer_source,
        trust_remote_code=ck.trust_remote_code,
        base_name=smk.wildcards.base,
        role="base" if smk.wildcards.checkpoint == "base" else "expert",  # an expert that is the base: an error
    )
    bad = nonfinite_tensors(smk.input.model)  # streamed, one tensor at a time
    if bad:
        raise NonFiniteWeightsError(
            f"{'base' if smk.wildcards.checkpoint == 'base' else 'expert'} '{ck.name}' ({smk.input.model}, config key "
            f"bases.{smk.wildcards.base}.{'model' if smk.wildcards.checkpoint == 'base' else 'experts.' + ck.name}) "
            f"has non-finite weights in {len(bad)} tensor(s): {'; '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}; its scores would be meaningless: re-download or "
            f"re-save the checkpoint, or remove it from the config"
        )
    try:  # the tokenizer the evaluation will load (lm-eval reads it from the model's folder)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(smk.input.model), trust_remote_code=ck.trust_remote_code)
    except Exception as err:  # noqa: BLE001 (transformers raises many kinds)
        raise TokenizerLoadError(
            f"{'base' if smk.wildcards.checkpoint == 'base' else 'expert'} '{ck.name}' "
            f"({smk.input.model}): its tokenizer cannot be loaded, so its evaluation would fail "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}); "
            f"copy the tokenizer files (tokenizer.json / tokenizer.model, tokenizer_config.json, "
            f"special_tokens_map.json) from where the checkpoint came from"
        ) from None
except (PreflightError, NonFiniteWeightsError, TokenizerLoadError) as err:
    record(marker, str(err))
    raise
clear(marker)
for warning in report["warnings"]:
    log.warning("%s: %s", ck.name, warning)
rec = checkpoint_record(smk.input.model, ck.source, ck.revision)
rec["name"] = ck.name
rec["preflight"] = report
log.info("%s: pre-flight %s, sha256 %s", ck.source, report["status"], rec["sha256"])
atomic_write_json(smk.output[0], rec)
pending_content_file(smk.output[0]).unlink(missing_ok=True)  # kept by the DAG build until this record
