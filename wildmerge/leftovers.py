"""What a killed run leaves behind that Snakemake does not know about."""

from __future__ import annotations

import os
import shutil
from base64 import urlsafe_b64decode
from pathlib import Path

__all__ = ["remove_partial_merges", "marked_incomplete"]


def remove_partial_merges(models_dir: str | Path) -> list[Path]:
    """Remove ``<models_dir>/<base>/<merge>.partial`` folders of killed merges.

    A merge writes to ``<merge>.partial`` and renames it when complete; a killed job leaves
    the folder, which its own rerun replaces -- but after a config change the rerun is
    another merge, and the old folder would hold disk forever. Called when a run starts
    (Snakemake holds the working directory's lock, so no merge of this study is running).
    """
    found = sorted(Path(models_dir).glob("*/*.partial"))
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return found


def marked_incomplete(workdir: str | Path = ".") -> set[str]:
    """Output files that Snakemake marks incomplete in ``<workdir>/.snakemake/incomplete``
    (a job started writing them and was killed), as the paths the rules name them by.

    Snakemake has no API for this at parse time, so its file backend's naming is read back
    (snakemake/persistence/file.py ``_record_path``: the key urlsafe-base64-encoded, split
    into path components of at most NAME_MAX - 1 characters, all but the last prefixed "@").
    """
    root = Path(workdir) / ".snakemake" / "incomplete"
    if not root.is_dir():
        return set()
    keys = set()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            parts = Path(dirpath, name).relative_to(root).parts
            if parts == ("migration_underway",):
                continue
            encoded = "".join(p.removeprefix("@") for p in parts)
            try:
                keys.add(urlsafe_b64decode(encoded.encode()).decode())
            except (ValueError, UnicodeDecodeError):
                continue  # not one of Snakemake's markers
    return keys
