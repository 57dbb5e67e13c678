"""Pre-flight compatibility check of a base model and its experts, before any merge.

A merge of checkpoints that do not line up fails late (hours into a study) or,
worse, silently produces garbage: a fine-tune whose tokenizer numbers tokens
differently has embedding rows that mean other tokens, so its task vector is noise.
``preflight()`` compares every expert against its base using only cheap, safe
reads -- ``config.json``, safetensors *headers* (tensor names, shapes, dtypes; no
tensor data is ever loaded) and the tokenizer files -- and either returns a
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

``tokenizer_policy`` (the config's ``merge.tokenizer_source``): ``"error"`` refuses
vocabulary differences; ``"base"`` / ``"union"`` accept them and record
``{"tokenizer_source": policy}`` as the resolution, which the merge step passes on
to mergekit's ``tokenizer_source`` (embeddings are then re-indexed per model).

The module has no CLI: the workflow calls ``preflight(...)`` and writes the report
with :func:`wildmerge.provenance.atomic_write_json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

LOG = logging.getLogger(__name__)

__all__ = [
    "TOKENIZER_POLICIES",
    "PreflightError",
    "check_checkpoint",
    "preflight",
    "tokenizer_fingerprint",
]

#: Values of ``tokenizer_policy`` (``merge.tokenizer_source`` in the config).
TOKENIZER_POLICIES = ("error", "base", "union")

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
#: Tensors indexed by token id under their usual names (Llama/Mistral/Qwen, GPT-2, NeoX).
VOCAB_TENSORS = frozenset(
    {"model.embed_tokens.weight", "lm_head.weight", "transformer.wte.weight", "embed_out.weight"}
)
_VOCAB_NAME_PARTS = ("embed", "lm_head")
#: How many names/tokens an error message lists before "...".
SHOW = 5

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


@dataclass(frozen=True)
class _Issue:
    kind: str
    message: str
    fix: str | None = None
    key: str | None = None  # tensor name or config key
    base: Any = None  # the base's value
    value: Any = None  # the checkpoint's value
    tokenizer: bool = False  # resolvable with tokenizer_policy "base" / "union"

    def as_dict(self, resolved: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        for k in ("key", "base", "value", "fix"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.tokenizer:
            out["resolvable_by"] = "merge.tokenizer_source"
        if resolved:
            out["resolved"] = True
        return out


@dataclass
class _Tokenizer:
    source: str  # file the mapping / fingerprint was read from
    files: list[str]
    fingerprint: str
    vocab: dict[str, int] | None  # token -> id, None when only a byte hash was possible

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "files": self.files,
            "fingerprint": self.fingerprint,
        }
        if self.vocab is not None:
            out["n_tokens"] = len(self.vocab)
            out["max_id"] = max(self.vocab.values(), default=-1)
        return out


@dataclass
class _Checkpoint:
    """What was read of one checkpoint directory, plus its own (base-independent) issues."""

    name: str
    path: Path
    role: str  # "base" or "expert"
    trust_remote_code: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[list[int], str]] = field(default_factory=dict)
    tokenizer: _Tokenizer | None = None
    custom_code: dict[str, Any] = field(default_factory=dict)
    issues: list[_Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.role} '{self.name}' ({self.path})"

    @property
    def readable(self) -> bool:
        """Config and tensor headers were read (comparisons make sense)."""
        return bool(self.config) and bool(self.tensors)

    def cfg(self, key: str) -> Any:
        """A config value, falling back to a nested ``text_config`` (multimodal configs)."""
        if key in self.config:
            return self.config[key]
        text = self.config.get("text_config")
        if isinstance(text, Mapping):
            return text.get(key)
        return None

    @property
    def vocab_size(self) -> int | None:
        v = self.cfg("vocab_size")
        return int(v) if isinstance(v, int) else None

    def summary(self) -> dict[str, Any]:
        dtypes: dict[str, int] = {}
        n_params = 0
        for shape, dtype in self.tensors.values():
            dtypes[dtype] = dtypes.get(dtype, 0) + 1
            n = 1
            for d in shape:
                n *= d
            n_params += n
        return {
            "name": self.name,
            "path": str(self.path),
            "role": self.role,
            "architectures": self.cfg("architectures"),
            "model_type": self.config.get("model_type"),
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.cfg("tie_word_embeddings"),
            "custom_code": self.custom_code or None,
            "trust_remote_code": self.trust_remote_code,
            "weights": self.weights,
            "n_tensors": len(self.tensors),
            "n_parameters": n_params,
            "dtypes": dtypes,
            "tokenizer": self.tokenizer.summary() if self.tokenizer else None,
        }


# --------------------------------------------------------------------------- reading


def _first(items: Iterable[Any], n: int = SHOW) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _pickle_files(d: Path) -> list[str]:
    found: set[str] = set()
    for pat in PICKLE_PATTERNS:
        found.update(p.name for p in d.glob(pat) if p.is_file())
    return sorted(found)


def _read_config(ck: _Checkpoint) -> None:
    path = ck.path / "config.json"
    if not path.is_file():
        if (ck.path / "adapter_config.json").is_file():
            ck.issues.append(_Issue(
                "adapter",
                f"{ck.label} is a PEFT/LoRA adapter (adapter_config.json, no config.json), "
                f"not a full checkpoint",
                fix="merge the adapter into its base first (peft: "
                "`PeftModel.from_pretrained(base, dir).merge_and_unload().save_pretrained(out, "
                "safe_serialization=True)`) and point the config's source at the result",
                key="config.json",
            ))
        else:
            ck.issues.append(_Issue(
                "no_config",
                f"{ck.label} has no config.json",
                fix="point the config's source at a Hugging Face model directory "
                "(config.json + model.safetensors + tokenizer files)",
                key="config.json",
            ))
        return
    try:
        cfg = _read_json(path)
    except (OSError, ValueError) as err:
        ck.issues.append(_Issue(
            "bad_config", f"{ck.label}: config.json is not readable JSON ({err})",
            fix="re-download or re-save the checkpoint", key="config.json",
        ))
        return
    if not isinstance(cfg, dict):
        ck.issues.append(_Issue(
            "bad_config", f"{ck.label}: config.json is not a JSON object",
            fix="re-download or re-save the checkpoint", key="config.json",
        ))
        return
    ck.config = cfg


def _read_custom_code(ck: _Checkpoint, check_trust: bool) -> None:
    found: dict[str, Any] = {}
    if isinstance(ck.config.get("auto_map"), Mapping):
        found["config.json"] = dict(ck.config["auto_map"])
    tok_cfg = ck.path / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            tc = _read_json(tok_cfg)
        except (OSError, ValueError):
            tc = None
        if isinstance(tc, Mapping) and tc.get("auto_map"):
            found["tokenizer_config.json"] = tc["auto_map"]
    ck.custom_code = found
    if not found:
        return
    where = " and ".join(f"{f} auto_map {found[f]!r}" for f in found)
    if ck.trust_remote_code:
        ck.warnings.append(f"custom code ({where}) will be executed: trust_remote_code is true")
    elif check_trust:
        ck.issues.append(_Issue(
            "remote_code",
            f"{ck.label} ships custom code ({where}); loading it executes that code, "
            f"but trust_remote_code is false for this checkpoint",
            fix=f"if you trust this checkpoint, set trust_remote_code: true for it in the config "
            f"(`{ck.name}: {{source: ..., trust_remote_code: true}}` under "
            f"`bases.<base>.{'model' if ck.role == 'base' else 'experts'}`); otherwise remove it",
            key="trust_remote_code",
            value=False,
        ))


def _header(path: Path) -> dict[str, tuple[list[int], str]]:
    """Tensor names -> (shape, dtype) from a safetensors header; no tensor data is read."""
    out: dict[str, tuple[list[int], str]] = {}
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            sl = f.get_slice(name)
            out[name] = ([int(d) for d in sl.get_shape()], str(sl.get_dtype()))
    return out


def _read_weights(ck: _Checkpoint) -> None:
    d = ck.path
    index = d / SAFETENSORS_INDEX
    single = d / SAFETENSORS_FILE
    st_files = sorted(p.name for p in d.glob("*.safetensors") if p.is_file())
    pickles = _pickle_files(d)
    convert = (
        "convert it once, in a trusted environment (e.g. a sandbox), with "
        "`AutoModelForCausalLM.from_pretrained(dir, torch_dtype='auto')"
        ".save_pretrained(out_dir, safe_serialization=True)` (and the tokenizer's "
        "save_pretrained), then point the config's source at out_dir"
    )
    if not index.is_file() and not single.is_file():
        if pickles:
            ck.issues.append(_Issue(
                "pickle_weights",
                f"{ck.label} has only pickle weights ({_first(pickles)}): pickle checkpoints "
                f"are refused because loading them can execute arbitrary code",
                fix=convert,
                key="weights",
                value=pickles,
            ))
        elif st_files:
            adapter = (d / "adapter_config.json").is_file()
            ck.issues.append(_Issue(
                "adapter" if adapter else "no_weights",
                f"{ck.label} has safetensors files {_first(st_files)} but neither "
                f"{SAFETENSORS_FILE} nor {SAFETENSORS_INDEX}"
                + (" (it looks like a PEFT/LoRA adapter)" if adapter else ""),
                fix="merge adapters into their base first; otherwise rename/re-save the weights "
                f"as {SAFETENSORS_FILE} (or shards listed in {SAFETENSORS_INDEX})",
                key="weights",
                value=st_files,
            ))
        else:
            ck.issues.append(_Issue(
                "no_weights",
                f"{ck.label} has no model weights ({SAFETENSORS_FILE} or {SAFETENSORS_INDEX})",
                fix="check the checkpoint's source in the config (a download may have failed "
                "or the directory is incomplete)",
                key="weights",
            ))
        return
    if pickles:
        ck.warnings.append(f"pickle files ignored (never loaded): {_first(pickles)}")
    try:
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, Mapping) or not weight_map:
                raise ValueError(f"{SAFETENSORS_INDEX} has no weight_map")
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (d / s).is_file()]
            if missing:
                ck.issues.append(_Issue(
                    "missing_shard",
                    f"{ck.label}: {SAFETENSORS_INDEX} lists shards that are missing: "
                    f"{_first(missing)}",
                    fix="re-download the checkpoint (the download is incomplete)",
                    key=SAFETENSORS_INDEX,
                    value=missing,
                ))
                return
            headers: dict[str, tuple[list[int], str]] = {}
            for s in shards:
                headers.update({k: v for k, v in _header(d / s).items()})
            absent = [k for k, s in weight_map.items() if k not in headers]
            if absent:
                ck.issues.append(_Issue(
                    "bad_index",
                    f"{ck.label}: {SAFETENSORS_INDEX} lists tensors its shards do not contain: "
                    f"{_first(sorted(absent))}",
                    fix="re-download or re-save the checkpoint",
                    key=SAFETENSORS_INDEX,
                ))
                return
            ck.tensors = {k: headers[k] for k in weight_map}
            ck.weights = {"format": "safetensors", "layout": "sharded", "files": shards}
        else:
            ck.tensors = _header(single)
            ck.weights = {"format": "safetensors", "layout": "single", "files": [SAFETENSORS_FILE]}
    except (SafetensorError, OSError, ValueError, TypeError, AttributeError) as err:
        ck.issues.append(_Issue(
            "bad_weights",
            f"{ck.label}: safetensors weights are unreadable ({type(err).__name__}: {err})",
            fix="re-download or re-save the checkpoint",
            key="weights",
        ))
        return
    if not ck.tensors:
        ck.issues.append(_Issue(
            "no_weights", f"{ck.label}: the safetensors weights contain no tensors",
            fix="re-download or re-save the checkpoint", key="weights",
        ))


def _vocab_fingerprint(vocab: Mapping[str, int]) -> str:
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _added_tokens(d: Path) -> dict[str, int]:
    """Added tokens recorded next to a slow tokenizer (added_tokens.json, tokenizer_config.json)."""
    out: dict[str, int] = {}
    f = d / "added_tokens.json"
    if f.is_file():
        data = _read_json(f)
        if isinstance(data, Mapping):
            out.update({str(k): int(v) for k, v in data.items()})
    f = d / "tokenizer_config.json"
    if f.is_file():
        data = _read_json(f)
        dec = data.get("added_tokens_decoder") if isinstance(data, Mapping) else None
        if isinstance(dec, Mapping):
            for i, info in dec.items():
                if isinstance(info, Mapping) and "content" in info:
                    out[str(info["content"])] = int(i)
    return out


def _sentencepiece_vocab(path: Path) -> dict[str, int] | None:
    try:
        import sentencepiece as spm  # protobuf parsing only: no code is executed
    except ImportError:
        return None
    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
        return {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    except (RuntimeError, OSError, ValueError):  # not a sentencepiece model (e.g. tiktoken)
        return None


def _read_tokenizer(d: Path) -> _Tokenizer | None:
    files = sorted(
        p.name for p in d.iterdir()
        if p.is_file() and (p.name.startswith("tokenizer") or p.name in (
            "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"))
    )
    tj = d / "tokenizer.json"
    if tj.is_file():
        data = _read_json(tj)
        model = data.get("model") or {}
        raw = model.get("vocab")
        vocab: dict[str, int] = {}
        if isinstance(raw, Mapping):  # BPE, WordLevel, WordPiece
            vocab = {str(k): int(v) for k, v in raw.items()}
        elif isinstance(raw, list):  # Unigram: [[piece, score], ...], id = position
            vocab = {str(e[0]): i for i, e in enumerate(raw)}
        for t in data.get("added_tokens") or []:
            vocab[str(t["content"])] = int(t["id"])
        return _Tokenizer("tokenizer.json", files, _vocab_fingerprint(vocab), vocab)
    sp_file = d / "tokenizer.model"
    if sp_file.is_file():
        sp_vocab = _sentencepiece_vocab(sp_file)
        if sp_vocab is not None:
            sp_vocab.update(_added_tokens(d))
            return _Tokenizer("tokenizer.model", files, _vocab_fingerprint(sp_vocab), sp_vocab)
        digest = hashlib.sha256(sp_file.read_bytes()).hexdigest()
        return _Tokenizer("tokenizer.model", files, "sha256-bytes:" + digest, None)
    vj = d / "vocab.json"
    if vj.is_file():
        raw = _read_json(vj)
        if isinstance(raw, Mapping):
            vocab = {str(k): int(v) for k, v in raw.items()}
            vocab.update(_added_tokens(d))
            return _Tokenizer("vocab.json", files, _vocab_fingerprint(vocab), vocab)
    return None


def _inspect(
    ckpt_dir: str | Path,
    *,
    name: str,
    role: str = "expert",
    trust_remote_code: bool = False,
    check_trust: bool = True,
) -> _Checkpoint:
    """Read one checkpoint's config, safetensors headers and tokenizer (no tensor data).

    Problems of the checkpoint itself (no config, pickle-only weights, custom code
    without trust, ...) are collected in ``.issues``, not raised.
    """
    ck = _Checkpoint(name=name, path=Path(ckpt_dir), role=role, trust_remote_code=trust_remote_code)
    if not ck.path.is_dir():
        ck.issues.append(_Issue(
            "no_directory", f"{ck.label} does not exist or is not a directory",
            fix="check the checkpoint's source in the config (was it fetched?)", key="source",
        ))
        return ck
    _read_config(ck)
    _read_custom_code(ck, check_trust)
    _read_weights(ck)
    try:
        ck.tokenizer = _read_tokenizer(ck.path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        ck.warnings.append(f"tokenizer files could not be read ({type(err).__name__}: {err})")
    if ck.tokenizer is None:
        ck.warnings.append(
            "no tokenizer files (tokenizer.json / tokenizer.model / vocab.json)"
            + ("; the base's tokenizer is assumed" if role == "expert" else
               "; merged models will have no tokenizer to copy")
        )
    elif ck.tokenizer.vocab is not None and ck.vocab_size is not None:
        top = max(ck.tokenizer.vocab.values(), default=-1)
        if top >= ck.vocab_size:
            ck.warnings.append(
                f"tokenizer has token ids up to {top} but config.json vocab_size is "
                f"{ck.vocab_size} (ids >= vocab_size have no embedding row)"
            )
    return ck


# --------------------------------------------------------------------------- comparing


def _is_vocab_tensor(name: str, shape: list[int], vocab: int | None) -> bool:
    if name in VOCAB_TENSORS:
        return True
    return (
        vocab is not None and bool(shape) and shape[0] == vocab
        and any(p in name.lower() for p in _VOCAB_NAME_PARTS)
    )


def _compare(base: _Checkpoint, ck: _Checkpoint) -> list[_Issue]:
    issues: list[_Issue] = []
    vs = f"in {ck.role} '{ck.name}' but"
    in_base = f"in the base '{base.name}' ({base.path})"

    for key in ("architectures", "model_type"):
        b, v = base.cfg(key), ck.cfg(key)
        if b != v:
            issues.append(_Issue(
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
        issues.append(_Issue(
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
        issues.append(_Issue(
            "vocab_size",
            f"config.json vocab_size is {v_vocab} {vs} {b_vocab} {in_base}",
            fix=TOKENIZER_FIX, key="config.json:vocab_size", base=b_vocab, value=v_vocab,
            tokenizer=True,
        ))

    missing = sorted(set(base.tensors) - set(ck.tensors) - ({head} if ignore_head else set()))
    unexpected = sorted(set(ck.tensors) - set(base.tensors) - ({head} if ignore_head else set()))
    fix_names = (
        f"'{ck.name}' must hold exactly the base's tensors: use a full (not LoRA, pruned or "
        f"quantized) fine-tune of this base, or remove it from this base's experts"
    )
    if missing:
        issues.append(_Issue(
            "missing_tensors",
            f"{len(missing)} tensors {in_base} are missing in {ck.role} '{ck.name}': "
            f"{_first(missing)}",
            fix=fix_names, key=missing[0], value=missing[:SHOW],
        ))
    if unexpected:
        issues.append(_Issue(
            "unexpected_tensors",
            f"{len(unexpected)} tensors in {ck.role} '{ck.name}' are not {in_base}: "
            f"{_first(unexpected)}",
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
            issues.append(_Issue(
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
        issues.append(_Issue(
            "shape_mismatch",
            f"{len(mismatched)} tensors have other shapes in {ck.role} '{ck.name}' than "
            f"{in_base}: {shown}{more}",
            fix=f"'{ck.name}' is not a fine-tune of this base (different model size or "
            f"config): remove it from this base's experts, or use the base it was fine-tuned from",
            key=name, base=b_shape, value=v_shape,
        ))
    if dtypes:
        ck.warnings.append(f"dtype differs from the base (cast when merging): {_first(dtypes)}")

    issues.extend(_compare_tokenizers(base, ck))
    return issues


def _compare_tokenizers(base: _Checkpoint, ck: _Checkpoint) -> list[_Issue]:
    bt, vt = base.tokenizer, ck.tokenizer
    if bt is None or vt is None or bt.fingerprint == vt.fingerprint:
        return []
    vs = f"in {ck.role} '{ck.name}'"
    in_base = f"in the base '{base.name}' ({base.path})"
    if bt.vocab is None or vt.vocab is None:
        if bt.source == vt.source:  # two tokenizer.model files, byte hashes only
            return [_Issue(
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
            parts.append(f"{len(dropped)} of the base's tokens are absent (e.g. {_first(dropped, 3)})")
        same = (
            f"the same vocab_size ({ck.vocab_size})" if base.vocab_size == ck.vocab_size
            else f"vocab_size {ck.vocab_size} vs {base.vocab_size}"
        )
        return [_Issue(
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


def _render(ck: _Checkpoint, issues: list[_Issue]) -> str:
    lines = [f"preflight failed for {ck.label}:"]
    lines += [f"  - {i.message}" for i in issues]
    fixes = list(dict.fromkeys(i.fix for i in issues if i.fix))
    lines += [f"  fix: {f}" for f in fixes]
    return "\n".join(lines)


def _issue_dicts(ck: _Checkpoint, issues: list[_Issue]) -> list[dict[str, Any]]:
    return [{"checkpoint": ck.name, "path": str(ck.path), **i.as_dict()} for i in issues]


def _raise_if(ck: _Checkpoint, issues: list[_Issue]) -> None:
    if issues:
        raise PreflightError(_render(ck, issues), _issue_dicts(ck, issues))


def _expert_report(base: _Checkpoint, ck: _Checkpoint, tokenizer_policy: str) -> dict[str, Any]:
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


def _base_report(base: _Checkpoint) -> dict[str, Any]:
    _raise_if(base, base.issues)
    report = base.summary()
    report.update(issues=[], resolution=None, warnings=list(base.warnings), status="ok")
    return report


def check_checkpoint(
    base_dir: Path,
    ckpt_dir: Path,
    *,
    name: str,
    tokenizer_policy: str = "error",
    trust_remote_code: bool = False,
    base_name: str = "base",
) -> dict[str, Any]:
    """Check that checkpoint ``name`` in ``ckpt_dir`` can be merged with the base in ``base_dir``.

    Reads only config.json, safetensors headers and tokenizer files of both.  Returns
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
    code is not judged here (``preflight`` does that with the base's trust flag).
    """
    _check_policy(tokenizer_policy)
    base = _inspect(base_dir, name=base_name, role="base", check_trust=False)
    _raise_if(base, base.issues)
    ck = _inspect(ckpt_dir, name=name, trust_remote_code=trust_remote_code)
    return _expert_report(base, ck, tokenizer_policy)


def preflight(
    base_dir: str | Path,
    experts: Mapping[str, str | Path],
    *,
    tokenizer_policy: str = "error",
    trust_remote_code: Mapping[str, bool] | None = None,
    base_name: str = "base",
) -> dict[str, Any]:
    """Check a base and all its experts; return the report or raise one PreflightError.

    ``trust_remote_code`` maps checkpoint names (the experts' and ``base_name``) to
    their config flag; missing names are untrusted.  All checkpoints are checked
    before raising, so the error lists every problem at once.  Report::

        {"base": <checkpoint report>, "experts": {name: <checkpoint report>},
         "tokenizer_policy": policy,
         "resolution": {"tokenizer_source": policy} | None,  # set iff any expert needs it
         "ok": True}
    """
    _check_policy(tokenizer_policy)
    trust = dict(trust_remote_code or {})
    base = _inspect(
        base_dir, name=base_name, role="base", trust_remote_code=bool(trust.get(base_name, False))
    )
    errors: list[PreflightError] = []
    try:
        base_report = _base_report(base)
    except PreflightError as err:
        if not base.readable:
            raise  # nothing to compare the experts with
        errors.append(err)
        base_report = {}
    reports: dict[str, dict[str, Any]] = {}
    for name in sorted(experts):
        ck = _inspect(
            experts[name], name=name, trust_remote_code=bool(trust.get(name, False))
        )
        try:
            reports[name] = _expert_report(base, ck, tokenizer_policy)
        except PreflightError as err:
            errors.append(err)
    if errors:
        n = len(errors)
        head = f"preflight: {n} checkpoint{'s' if n > 1 else ''} of base '{base_name}' cannot be merged"
        raise PreflightError(
            head + "\n" + "\n".join(str(e) for e in errors),
            [i for e in errors for i in e.issues],
        )
    needed = any(r["resolution"] for r in reports.values())
    for r in reports.values():
        if r["warnings"]:
            LOG.warning("%s: %s", r["name"], "; ".join(r["warnings"]))
    return {
        "base": base_report,
        "experts": reports,
        "tokenizer_policy": tokenizer_policy,
        "resolution": {"tokenizer_source": tokenizer_policy} if needed else None,
        "ok": True,
    }


def tokenizer_fingerprint(model_dir: str | Path) -> str | None:
    """Fingerprint of a checkpoint's token -> id mapping (``None`` without tokenizer files)."""
    tok = _read_tokenizer(Path(model_dir))
    return tok.fingerprint if tok else None
