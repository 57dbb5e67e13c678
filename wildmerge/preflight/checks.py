"""Pre-flight compatibility check of a base model and its experts, before any merge.

A merge of checkpoints that do not line up fails late (hours into a study) or,
worse, silently produces garbage: a fine-tune whose tokenizer numbers tokens
differently has embedding rows that mean other tokens, so its task vector is noise.
Every expert is compared with its base using only cheap, safe
reads -- ``config.json``, safetensors *headers* (tensor names, shapes, dtypes; no
tensor is ever loaded) and the tokenizer files -- and either returns a
JSON-able report or raises :class:`PreflightError` naming the checkpoint, the
offending tensor or config key, both values and the fix.

Checks, per checkpoint:

1. weights format: ``model.safetensors`` or a sharded ``model.safetensors.index.json``
   (what mergekit reads).  Pickle-only checkpoints (``pytorch_model*.bin``, ``*.pt``,
   ``*.pth``, ``*.ckpt``) are refused: unpickling can execute arbitrary code.
   PEFT/LoRA adapter directories are refused too (not full checkpoints).
2. custom code: ``auto_map`` in ``config.json`` (or ``tokenizer_config.json``) needs
   ``trust_remote_code: true`` for that checkpoint in the config.
3. architecture: ``architectures`` and ``model_type`` equal the base's.
4. tensors: the same names with the same shapes as the base.  Vocabulary-indexed
   tensors (``model.embed_tokens.weight``, ``lm_head.weight``, ...) that differ only
   in dim 0 are resized embeddings: handled by ``tokenizer_policy``.
5. vocabulary: ``vocab_size`` equal to the base's and the same token -> id mapping
   (tokenizer fingerprint), also handled by ``tokenizer_policy``; and
   ``tie_word_embeddings`` equal to the base's.
6. not the base: an expert in the base's own folder, or whose safetensors files are the
   base's byte for byte (compared only when their names and sizes agree, up to the first
   difference), has a zero task vector and is refused.

``tokenizer_policy`` (the config's ``merge.tokenizer_source``): ``"error"`` refuses
vocabulary differences; ``"base"`` / ``"union"`` accept them and record
``{"tokenizer_source": policy}`` as the resolution, which the merge step passes on
to mergekit's ``tokenizer_source`` (embeddings are then re-indexed per model).

Reading the files is :mod:`wildmerge.preflight.files`; here they are compared
(:func:`_config_checks`, :func:`_tensor_checks`, :func:`_compare_tokenizers`). API:
:func:`check_checkpoint`, one checkpoint against its base: what the workflow's ``preflight``
job, ``scripts/preflight.py``, calls for every checkpoint, the base included (checked against
itself, which is where the base's own ``trust_remote_code`` is judged). The module has no CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wildmerge.preflight.files import (
    SHOW,
    CheckpointFiles,
    Issue,
    first_items,
    read_checkpoint,
)

__all__ = [
    "TOKENIZER_POLICIES",
    "PreflightError",
    "check_checkpoint",
]

#: Values of ``tokenizer_policy`` (``merge.tokenizer_source`` in the config).
TOKENIZER_POLICIES = ("error", "base", "union")

#: Tensors indexed by token id under their usual names (Llama/Mistral/Qwen, GPT-2, NeoX).
VOCAB_TENSORS = frozenset(
    {"model.embed_tokens.weight", "lm_head.weight", "transformer.wte.weight", "embed_out.weight"}
)
_VOCAB_NAME_PARTS = ("embed", "lm_head")

TOKENIZER_FIX = (
    "set `merge.tokenizer_source` in the config (mergekit's tokenizer_source) to `base` "
    "(keep the base's vocabulary; each model's embedding rows are re-indexed to it and "
    "tokens the base lacks are dropped) or `union` (merged model gets the union of all "
    "vocabularies)"
)


class PreflightError(ValueError):
    """Checkpoints that cannot be merged as configured.

    The message names each checkpoint (config name and directory), the offending
    tensor or config key, both values and the fix; ``issues`` holds the same as
    JSON-able dicts (each with ``checkpoint`` and ``path``).
    """

    def __init__(self, message: str, issues: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.issues: list[dict[str, Any]] = list(issues or [])



def _is_vocab_tensor(name: str, shape: list[int], vocab: int | None) -> bool:
    if name in VOCAB_TENSORS:
        return True
    return (
        vocab is not None and bool(shape) and shape[0] == vocab
        and any(p in name.lower() for p in _VOCAB_NAME_PARTS)
    )


def _compare(base: CheckpointFiles, ck: CheckpointFiles) -> list[Issue]:
    """Every issue of ``ck`` against ``base`` (warnings go to ``ck.warnings``)."""
    issues, ignore_head = _config_checks(base, ck)
    issues += _tensor_checks(base, ck, ignore_head)
    issues += _compare_tokenizers(base, ck)
    return issues


def _where(base: CheckpointFiles, ck: CheckpointFiles) -> tuple[str, str]:
    return f"in {ck.role} '{ck.name}' but", f"in the base '{base.name}' ({base.path})"


def _config_checks(base: CheckpointFiles, ck: CheckpointFiles) -> tuple[list[Issue], bool]:
    """config.json: architecture, model type, tied output embedding, vocab_size. Also
    returns whether ``lm_head.weight`` is to be ignored (a head transformers does not load
    as saved)."""
    issues: list[Issue] = []
    vs, in_base = _where(base, ck)

    for key in ("architectures", "model_type"):
        b, v = base.cfg(key), ck.cfg(key)
        if b != v:
            issues.append(Issue(
                "architecture",
                f"config.json {key} is {v!r} {vs} {b!r} {in_base}",
                fix=f"experts must be fine-tunes of the base's architecture: remove '{ck.name}' "
                f"from this base's experts, or use the base it was fine-tuned from",
                key=f"config.json:{key}", base=b, value=v,
            ))

    b_tie, v_tie = base.cfg("tie_word_embeddings"), ck.cfg("tie_word_embeddings")
    head, embed = "lm_head.weight", "model.embed_tokens.weight"
    # heads transformers does not load as saved: what mergekit does with them is written down
    ignore_head = False
    if b_tie and head not in base.tensors and head in ck.tensors and v_tie:
        ignore_head = True
        ck.warnings.append(
            f"saves {head} although its config ties it to {embed}: transformers ignores it when "
            f"loading '{ck.name}', so the merge does too (dropped from the merged model, which "
            f"keeps the base's tied head)"
        )
    elif not b_tie and b_tie is not None and head in base.tensors and v_tie and head not in ck.tensors:
        ignore_head = True
        ck.warnings.append(
            f"ties its output embedding (no {head} saved): its head is its {embed}, as "
            f"transformers loads it, and mergekit merges that into the base's separate {head}"
        )
    elif b_tie is not None and v_tie is not None and bool(b_tie) != bool(v_tie):
        issues.append(Issue(
            "tie_word_embeddings",
            f"config.json tie_word_embeddings is {v_tie!r} {vs} {b_tie!r} {in_base}: "
            f"the output embedding is tied in one and separate in the other",
            fix=f"'{ck.name}' trained a separate output head that the base's tied layout cannot "
            f"hold (a merge would have to untie the merged model): remove it from this base's "
            f"experts (or restore the base's tie_word_embeddings in its config.json if it was edited)",
            key="config.json:tie_word_embeddings", base=b_tie, value=v_tie,
        ))
    elif (b_tie is None) != (v_tie is None):
        ck.warnings.append(
            "tie_word_embeddings is set in only one of base/expert config.json; "
            "compared via the tensor names instead"
        )

    b_vocab, v_vocab = base.vocab_size, ck.vocab_size
    if b_vocab != v_vocab:
        issues.append(Issue(
            "vocab_size",
            f"config.json vocab_size is {v_vocab} {vs} {b_vocab} {in_base}",
            fix=TOKENIZER_FIX, key="config.json:vocab_size", base=b_vocab, value=v_vocab,
            tokenizer=True,
        ))
    return issues, ignore_head


def _tensor_checks(base: CheckpointFiles, ck: CheckpointFiles, ignore_head: bool) -> list[Issue]:
    """Safetensors headers: the same tensor names and shapes (resized vocabulary rows are
    tokenizer issues); dtype differences are warnings."""
    issues: list[Issue] = []
    vs, in_base = _where(base, ck)
    head = "lm_head.weight"
    b_vocab, v_vocab = base.vocab_size, ck.vocab_size
    missing = sorted(set(base.tensors) - set(ck.tensors) - ({head} if ignore_head else set()))
    unexpected = sorted(set(ck.tensors) - set(base.tensors) - ({head} if ignore_head else set()))
    fix_names = (
        f"'{ck.name}' must hold exactly the base's tensors: use a full (not LoRA, pruned or "
        f"quantized) fine-tune of this base, or remove it from this base's experts"
    )
    if missing:
        issues.append(Issue(
            "missing_tensors",
            f"{len(missing)} tensors {in_base} are missing in {ck.role} '{ck.name}': "
            f"{first_items(missing)}",
            fix=fix_names, key=missing[0], value=missing[:SHOW],
        ))
    if unexpected:
        issues.append(Issue(
            "unexpected_tensors",
            f"{len(unexpected)} tensors in {ck.role} '{ck.name}' are not {in_base}: "
            f"{first_items(unexpected)}",
            fix=fix_names, key=unexpected[0], value=unexpected[:SHOW],
        ))

    mismatched: list[tuple[str, list[int], list[int]]] = []
    dtypes: list[str] = []
    for name in sorted(set(base.tensors) & set(ck.tensors)):
        (b_shape, b_dtype), (v_shape, v_dtype) = base.tensors[name], ck.tensors[name]
        if b_dtype != v_dtype:
            dtypes.append(f"{name}: {v_dtype} vs base {b_dtype}")
        if b_shape == v_shape:
            continue
        resized = (
            len(b_shape) == len(v_shape) and b_shape[1:] == v_shape[1:]
            and (_is_vocab_tensor(name, b_shape, b_vocab) or _is_vocab_tensor(name, v_shape, v_vocab))
        )
        if resized:
            issues.append(Issue(
                "resized_embeddings",
                f"tensor '{name}' has shape {v_shape} {vs} {b_shape} {in_base}: its "
                f"embeddings were resized from {b_shape[0]} to {v_shape[0]} token rows "
                f"(config.json vocab_size {v_vocab} vs base {b_vocab})",
                fix=TOKENIZER_FIX, key=name, base=b_shape, value=v_shape, tokenizer=True,
            ))
        else:
            mismatched.append((name, b_shape, v_shape))
    if mismatched:
        shown = "; ".join(f"'{n}': {v} vs base {b}" for n, b, v in mismatched[:SHOW])
        more = f"; ... ({len(mismatched)} in all)" if len(mismatched) > SHOW else ""
        name, b_shape, v_shape = mismatched[0]
        issues.append(Issue(
            "shape_mismatch",
            f"{len(mismatched)} tensors have other shapes in {ck.role} '{ck.name}' than "
            f"{in_base}: {shown}{more}",
            fix=f"'{ck.name}' is not a fine-tune of this base (different model size or "
            f"config): remove it from this base's experts, or use the base it was fine-tuned from",
            key=name, base=b_shape, value=v_shape,
        ))
    if dtypes:
        ck.warnings.append(f"dtype differs from the base (cast when merging): {first_items(dtypes)}")
    return issues


def _compare_tokenizers(base: CheckpointFiles, ck: CheckpointFiles) -> list[Issue]:
    """Tokenizer files: the same token -> id mapping (differences are tokenizer issues)."""
    bt, vt = base.tokenizer, ck.tokenizer
    if bt is None or vt is None or bt.fingerprint == vt.fingerprint:
        return []
    vs = f"in {ck.role} '{ck.name}'"
    in_base = f"in the base '{base.name}' ({base.path})"
    if bt.vocab is None or vt.vocab is None:
        if bt.source == vt.source:  # two tokenizer.model files, byte hashes only
            return [Issue(
                "tokenizer_mismatch",
                f"{vt.source} differs {vs} (fingerprint {vt.fingerprint}) from the one {in_base} "
                f"({bt.fingerprint}): a different tokenizer misaligns embedding rows and "
                f"silently breaks task vectors",
                fix=TOKENIZER_FIX, key=vt.source, base=bt.fingerprint, value=vt.fingerprint,
                tokenizer=True,
            )]
        ck.warnings.append(
            f"tokenizers could not be compared ({vt.source} vs the base's {bt.source})"
        )
        return []
    changed = [(t, i, vt.vocab[t]) for t, i in bt.vocab.items() if t in vt.vocab and vt.vocab[t] != i]
    dropped = [t for t in bt.vocab if t not in vt.vocab]
    extra = sorted((i, t) for t, i in vt.vocab.items() if t not in bt.vocab)
    if changed or dropped:
        parts = []
        if changed:
            changed.sort(key=lambda c: c[1])
            eg = ", ".join(f"{t!r}: {i} in the base vs {j}" for t, i, j in changed[:3])
            parts.append(f"{len(changed)} tokens have another id (e.g. {eg})")
        if dropped:
            parts.append(f"{len(dropped)} of the base's tokens are absent (e.g. {first_items(dropped, 3)})")
        same = (
            f"the same vocab_size ({ck.vocab_size})" if base.vocab_size == ck.vocab_size
            else f"vocab_size {ck.vocab_size} vs {base.vocab_size}"
        )
        return [Issue(
            "tokenizer_mismatch",
            f"the tokenizer {vs} maps tokens to other ids than the one {in_base}: "
            + "; ".join(parts)
            + f" (fingerprints {vt.fingerprint} vs {bt.fingerprint}); with {same} this "
            f"misaligns embedding rows and silently breaks task vectors",
            fix=TOKENIZER_FIX, key="tokenizer", base=bt.fingerprint, value=vt.fingerprint,
            tokenizer=True,
        )]
    if extra:
        ck.warnings.append(
            f"tokenizer adds {len(extra)} tokens the base lacks "
            f"(e.g. {', '.join(f'{t!r}={i}' for i, t in extra[:3])}); every base token keeps its id"
        )
    return []


# --------------------------------------------------------------------------- public API


def _check_policy(tokenizer_policy: str) -> None:
    if tokenizer_policy not in TOKENIZER_POLICIES:
        raise ValueError(
            f"merge.tokenizer_source: {tokenizer_policy!r} is not one of {list(TOKENIZER_POLICIES)}"
        )


def _render(ck: CheckpointFiles, issues: list[Issue]) -> str:
    lines = [f"preflight failed for {ck.label}:"]
    lines += [f"  - {i.message}" for i in issues]
    fixes = list(dict.fromkeys(i.fix for i in issues if i.fix))
    lines += [f"  fix: {f}" for f in fixes]
    return "\n".join(lines)


def _issue_dicts(ck: CheckpointFiles, issues: list[Issue]) -> list[dict[str, Any]]:
    return [{"checkpoint": ck.name, "path": str(ck.path), **i.as_dict()} for i in issues]


def _raise_if(ck: CheckpointFiles, issues: list[Issue]) -> None:
    if issues:
        raise PreflightError(_render(ck, issues), _issue_dicts(ck, issues))


def _expert_report(base: CheckpointFiles, ck: CheckpointFiles, tokenizer_policy: str) -> dict[str, Any]:
    """Report of one expert against ``base``; raises PreflightError on blocking issues."""
    if not ck.readable:  # nothing to compare
        _raise_if(ck, ck.issues)
    issues = ck.issues + _compare(base, ck)
    blocking = [i for i in issues if not i.tokenizer or tokenizer_policy == "error"]
    _raise_if(ck, blocking)
    resolved = [i for i in issues if i.tokenizer]
    report = ck.summary()
    report["issues"] = [i.as_dict(resolved=True) for i in resolved]
    report["resolution"] = {"tokenizer_source": tokenizer_policy} if resolved else None
    if resolved and ck.tokenizer is None:
        ck.warnings.append(
            "vocabulary differs from the base but no tokenizer files are present: mergekit will "
            "assume the base's tokenizer, so only the first rows of its embeddings line up"
        )
    report["warnings"] = list(ck.warnings)
    report["status"] = "resolved" if resolved else "ok"
    return report


def _same_files(a: Path, b: Path, chunk: int = 1 << 22) -> bool:
    """Whether two folders hold the same safetensors files (names, sizes, bytes): what
    ``wildmerge.provenance.model_hash`` hashes. Reads only while they agree (nothing when the
    names or sizes differ, as a fine-tune's shards usually do after their headers)."""
    fa, fb = (sorted(p.name for p in d.glob("*.safetensors")) for d in (a, b))
    if not fa or fa != fb or any((a / f).stat().st_size != (b / f).stat().st_size for f in fa):
        return False
    for f in fa:
        with open(a / f, "rb") as x, open(b / f, "rb") as y:
            while True:
                bx, by = x.read(chunk), y.read(chunk)
                if bx != by:
                    return False
                if not bx:
                    break
    return True


def _not_the_base(base_dir: Path, ckpt_dir: Path, name: str, base_name: str) -> None:
    """An expert in the base's own folder, or whose weights are the base's (a copy): its task
    vector is zero, so every subset holding it would merge nothing from it."""
    base_path, path = Path(base_dir), Path(ckpt_dir)
    if path.resolve() == base_path.resolve():
        why = "is the base's own folder"
    elif _same_files(base_path, path):
        why = "has the same weights as the base (identical safetensors files, so the same sha256)"
    else:
        return
    message = (
        f"preflight failed for expert '{name}' ({path}):\n  - it {why}: base '{base_name}' ({base_path}); "
        f"its task vector is zero and every subset holding it would merge nothing from it\n"
        f"  fix: remove '{name}' from bases.{base_name}'s experts, or point it at the fine-tuned checkpoint"
    )
    raise PreflightError(message, [{"checkpoint": name, "path": str(path), "kind": "same_as_base",
                                    "base": str(base_path)}])


def check_checkpoint(
    base_dir: Path,
    ckpt_dir: Path,
    *,
    name: str,
    tokenizer_policy: str = "error",
    trust_remote_code: bool = False,
    base_name: str = "base",
    role: str | None = None,
) -> dict[str, Any]:
    """Check that checkpoint ``name`` in ``ckpt_dir`` can be merged with the base in ``base_dir``.

    Reads config.json, safetensors headers and tokenizer files of both (and an expert's
    weights only where they may be the base's, below).  Returns
    the checkpoint's JSON-able report::

        {"name", "path", "role", "architectures", "model_type", "vocab_size",
         "tie_word_embeddings", "custom_code", "trust_remote_code",
         "weights": {"format", "layout", "files"}, "n_tensors", "n_parameters", "dtypes",
         "tokenizer": {"source", "files", "fingerprint", "n_tokens", "max_id"} | None,
         "issues": [...],       # vocabulary differences accepted by tokenizer_policy
         "resolution": {"tokenizer_source": policy} | None,
         "warnings": [...], "status": "ok" | "resolved"}

    Raises :class:`PreflightError` listing every blocking issue of this checkpoint
    (and ``ValueError`` for an unknown ``tokenizer_policy``).  The base's own custom
    code is judged only when the base is the checkpoint (``ckpt_dir`` is ``base_dir``, as in
    the workflow's job for the base), with ``trust_remote_code``; messages then name it as
    the base and point to ``bases.<base>.model``.

    ``role``: ``"base"`` or ``"expert"`` as the caller means the checkpoint (the workflow
    passes it); None tells it by the folder. An expert (``role="expert"``) in the base's own
    folder, or whose safetensors files are the base's byte for byte (read only when their
    names and sizes agree), is a :class:`PreflightError` naming both.
    """
    _check_policy(tokenizer_policy)
    base = read_checkpoint(base_dir, name=base_name, role="base", check_trust=False)
    _raise_if(base, base.issues)
    if role == "expert":
        _not_the_base(Path(base_dir), Path(ckpt_dir), name, base_name)
    # the workflow checks the base against itself: then messages name it (and its config key) as the base
    if role is None:
        role = "base" if Path(ckpt_dir).resolve() == Path(base_dir).resolve() else "expert"
    ck = read_checkpoint(ckpt_dir, name=name, role=role, trust_remote_code=trust_remote_code)
    return _expert_report(base, ck, tokenizer_policy)
