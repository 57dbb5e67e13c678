"""Reading a checkpoint directory for pre-flight: ``config.json``, safetensors headers and
tokenizer files, never tensor data.

:func:`read_checkpoint` returns a :class:`CheckpointFiles`: what was read, plus the issues
the checkpoint has on its own (weights format, custom code without ``trust_remote_code``,
unreadable files). Comparing it with its base is :mod:`wildmerge.preflight.checks`'s job.
"""


import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open


SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
#: How many names/tokens an error message lists before "...".
SHOW = 5


@dataclass(frozen=True)
class Issue:
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
class Tokenizer:
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
class CheckpointFiles:
    """What was read of one checkpoint directory, plus its own (base-independent) issues."""

    name: str
    path: Path
    role: str  # "base" or "expert"
    trust_remote_code: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[list[int], str]] = field(default_factory=dict)
    tokenizer: Tokenizer | None = None
    custom_code: dict[str, Any] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
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


def first_items(items: Iterable[Any], n: int = SHOW) -> str:
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


def _read_config(ck: CheckpointFiles) -> None:
    path = ck.path / "config.json"
    if not path.is_file():
        if (ck.path / "adapter_config.json").is_file():
            ck.issues.append(Issue(
                "adapter",
                f"{ck.label} is a PEFT/LoRA adapter (adapter_config.json, no config.json), "
                f"not a full checkpoint",
                fix="merge the adapter into its base first (peft: "
                "`PeftModel.from_pretrained(base, dir).merge_and_unload().save_pretrained(out, "
                "safe_serialization=True)`) and point the config's source at the result",
                key="config.json",
            ))
        else:
            ck.issues.append(Issue(
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
        ck.issues.append(Issue(
            "bad_config", f"{ck.label}: config.json is not readable JSON ({err})",
            fix="re-download or re-save the checkpoint", key="config.json",
        ))
        return
    if not isinstance(cfg, dict):
        ck.issues.append(Issue(
            "bad_config", f"{ck.label}: config.json is not a JSON object",
            fix="re-download or re-save the checkpoint", key="config.json",
        ))
        return
    ck.config = cfg


def _read_custom_code(ck: CheckpointFiles, check_trust: bool) -> None:
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
        ck.issues.append(Issue(
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


def _read_weights(ck: CheckpointFiles) -> None:
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
            ck.issues.append(Issue(
                "pickle_weights",
                f"{ck.label} has only pickle weights ({first_items(pickles)}): pickle checkpoints "
                f"are refused because loading them can execute arbitrary code",
                fix=convert,
                key="weights",
                value=pickles,
            ))
        elif st_files:
            adapter = (d / "adapter_config.json").is_file()
            ck.issues.append(Issue(
                "adapter" if adapter else "no_weights",
                f"{ck.label} has safetensors files {first_items(st_files)} but neither "
                f"{SAFETENSORS_FILE} nor {SAFETENSORS_INDEX}"
                + (" (it looks like a PEFT/LoRA adapter)" if adapter else ""),
                fix="merge adapters into their base first; otherwise rename/re-save the weights "
                f"as {SAFETENSORS_FILE} (or shards listed in {SAFETENSORS_INDEX})",
                key="weights",
                value=st_files,
            ))
        else:
            ck.issues.append(Issue(
                "no_weights",
                f"{ck.label} has no model weights ({SAFETENSORS_FILE} or {SAFETENSORS_INDEX})",
                fix="check the checkpoint's source in the config (a download may have failed "
                "or the directory is incomplete)",
                key="weights",
            ))
        return
    if pickles:
        ck.warnings.append(f"pickle files ignored (never loaded): {first_items(pickles)}")
    try:
        if index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, Mapping) or not weight_map:
                raise ValueError(f"{SAFETENSORS_INDEX} has no weight_map")
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (d / s).is_file()]
            if missing:
                ck.issues.append(Issue(
                    "missing_shard",
                    f"{ck.label}: {SAFETENSORS_INDEX} lists shards that are missing: "
                    f"{first_items(missing)}",
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
                ck.issues.append(Issue(
                    "bad_index",
                    f"{ck.label}: {SAFETENSORS_INDEX} lists tensors its shards do not contain: "
                    f"{first_items(sorted(absent))}",
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
        ck.issues.append(Issue(
            "bad_weights",
            f"{ck.label}: safetensors weights are unreadable ({type(err).__name__}: {err})",
            fix="re-download or re-save the checkpoint",
            key="weights",
        ))
        return
    if not ck.tensors:
        ck.issues.append(Issue(
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


def read_tokenizer(d: Path) -> Tokenizer | None:
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
        return Tokenizer("tokenizer.json", files, _vocab_fingerprint(vocab), vocab)
    sp_file = d / "tokenizer.model"
    if sp_file.is_file():
        sp_vocab = _sentencepiece_vocab(sp_file)
        if sp_vocab is not None:
            sp_vocab.update(_added_tokens(d))
            return Tokenizer("tokenizer.model", files, _vocab_fingerprint(sp_vocab), sp_vocab)
        digest = hashlib.sha256(sp_file.read_bytes()).hexdigest()
        return Tokenizer("tokenizer.model", files, "sha256-bytes:" + digest, None)
    vj = d / "vocab.json"
    if vj.is_file():
        raw = _read_json(vj)
        if isinstance(raw, Mapping):
            vocab = {str(k): int(v) for k, v in raw.items()}
            vocab.update(_added_tokens(d))
            return Tokenizer("vocab.json", files, _vocab_fingerprint(vocab), vocab)
    return None


def read_checkpoint(
    ckpt_dir: str | Path,
    *,
    name: str,
    role: str = "expert",
    trust_remote_code: bool = False,
    check_trust: bool = True,
) -> CheckpointFiles:
    """Read one checkpoint's config, safetensors headers and tokenizer (no tensor data).

    Problems of the checkpoint itself (no config, pickle-only weights, custom code
    without trust, ...) are collected in ``.issues``, not raised.
    """
    ck = CheckpointFiles(name=name, path=Path(ckpt_dir), role=role, trust_remote_code=trust_remote_code)
    if not ck.path.is_dir():
        ck.issues.append(Issue(
            "no_directory", f"{ck.label} does not exist or is not a directory",
            fix="check the checkpoint's source in the config (was it fetched?)", key="source",
        ))
        return ck
    _read_config(ck)
    _read_custom_code(ck, check_trust)
    _read_weights(ck)
    try:
        ck.tokenizer = read_tokenizer(ck.path)
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


def tokenizer_fingerprint(model_dir: str | Path) -> str | None:
    """Fingerprint of a checkpoint's token -> id mapping (``None`` without tokenizer files)."""
    tok = read_tokenizer(Path(model_dir))
    return tok.fingerprint if tok else None
