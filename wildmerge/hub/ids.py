"""Hub repository ids: the grammar (``org/name``) and the folder a fetched checkpoint lands in."""

from __future__ import annotations

import re

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def hub_dirname(repo_id: str, revision: str | None) -> str:
    return repo_id.replace("/", "--") + (f"@{revision}" if revision else "")
