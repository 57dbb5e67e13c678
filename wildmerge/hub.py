"""Download hub checkpoints as jobs (never at DAG-build time)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

ALLOW = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer*", "*.model", "*.tiktoken", "*.txt"]


def fetch(repo_id: str, revision: str | None, out_dir: Path, log: logging.Logger | None = None) -> Path:
    """Snapshot ``repo_id`` (safetensors only) into ``out_dir``; record the commit sha."""
    from huggingface_hub import HfApi, snapshot_download

    log = log or logging.getLogger(__name__)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        log.warning("HF_HUB_OFFLINE=1: %s must already be in the local hub cache", repo_id)
    info_rev = revision
    try:
        info_rev = HfApi().model_info(repo_id, revision=revision).sha or revision
    except Exception as err:  # offline or gated: keep the requested revision
        log.warning("could not resolve revision of %s: %s", repo_id, err)
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    snapshot_download(repo_id, revision=info_rev, local_dir=partial, allow_patterns=ALLOW)
    if not any(partial.glob("*.safetensors")):
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(
            f"{repo_id}: no .safetensors weights on the hub (pickle checkpoints are refused); "
            f"convert it or pick another checkpoint"
        )
    (partial / ".wildmerge_revision").write_text(f"{info_rev or 'unknown'}\n")
    shutil.rmtree(partial / ".cache", ignore_errors=True)
    os.replace(partial, out_dir)
    log.info("fetched %s@%s into %s", repo_id, info_rev, out_dir)
    return out_dir
