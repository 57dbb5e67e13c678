"""What a killed run leaves behind that Snakemake does not know about."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["remove_partial_merges"]


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
