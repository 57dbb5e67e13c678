"""Hub calls retried with backoff (429, 5xx, dropped connections) and hub errors explained:
401/403 (gated), 404 (revision), naming the config key; these fail at once, without retries."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

RETRY_STATUS = (429, 500, 502, 503, 504)
MAX_TRIES = 5
T = TypeVar("T")


class HubError(RuntimeError):
    """A hub checkpoint that cannot be fetched; the message says which config key and how to fix it."""


def _status(err: BaseException) -> int | None:
    resp = getattr(err, "response", None)
    return getattr(resp, "status_code", None)


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from (``__cause__``, ``__context__``)."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not seen for seen in out):
            out.append(e)
            todo += [e.__cause__, e.__context__]
    return out


def _gated(err: BaseException) -> int | None:
    """The HTTP status (401: no token, 403: a token without access) of a refused download of a
    gated repository, else None. ``datasets`` turns huggingface_hub's GatedRepoError into its own
    DatasetNotFoundError and drops the original (``raise ... from None``); its text tells which."""
    from huggingface_hub.errors import GatedRepoError

    for e in _chain(err):
        if isinstance(e, GatedRepoError):
            return _status(e)
        if type(e).__name__ == "DatasetNotFoundError" and "is a gated dataset" in str(e):
            return 401 if "must be authenticated" in str(e) else 403
    return None


def _explain(err: BaseException, repo_id: str, revision: str | None, key: str, repo_type: str = "model") -> HubError | None:
    """A clear error for a failure that retrying cannot fix (401/403/404), else None."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if type(err).__name__ == "OfflineModeIsEnabled":
        local = "" if os.path.isabs(repo_id) else f" (read as a hub id: no local directory {repo_id} exists here)"
        return HubError(
            f"{key}: {repo_id!r}{local} is not fetched yet and the hub is offline (HF_HUB_OFFLINE=1): "
            f"for a local checkpoint give an existing directory; to download it unset HF_HUB_OFFLINE"
        )
    status = _status(err)
    what = "hub dataset" if repo_type == "dataset" else "hub repository"
    page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    access = (
        f"accept its license at {page} and export HF_TOKEN with a token that has "
        f"read access (or run `hf auth login`), then rerun"
    )
    gated = _gated(err)
    if gated is not None or status == 403:
        why = {401: "no token was sent", 403: "the token sent has no access to it yet"}.get(gated or status, "")
        return HubError(f"{key}: {what} {repo_id!r} is gated (HTTP {gated or status}{': ' + why if why else ''}): {access}")
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{key}: revision {revision!r} of {what} {repo_id!r} does not exist (HTTP 404); fix the revision")
    if isinstance(err, RepositoryNotFoundError) or status in (401, 404):
        return HubError(
            f"{key}: {what} {repo_id!r} not found, or private/gated (HTTP {status}): fix the source, "
            f"or if it is private or gated, {access}"
        )
    return None


def _dropped(err: BaseException) -> bool:
    """A connection refused, reset or cut mid-transfer (huggingface_hub's HTTP client or the OS)."""
    if _status(err) is not None:
        return False
    lib = type(err).__module__.split(".")[0]
    return isinstance(err, (ConnectionError, TimeoutError)) or lib in ("httpx", "httpx2", "httpcore", "h11")


def retrying(what: Callable[[], T], repo_id: str, revision: str | None, key: str, log: logging.Logger,
             repo_type: str = "model") -> T:
    """Run ``what``; back off and retry on 429/5xx and dropped connections, at most MAX_TRIES times
    (the first wait WILDMERGE_HUB_BACKOFF_S seconds, default 2, doubling); 401/403/404 raise a
    HubError naming ``key`` at once."""
    delay = float(os.environ.get("WILDMERGE_HUB_BACKOFF_S", "2"))
    for attempt in range(1, MAX_TRIES + 1):
        try:
            return what()
        except Exception as err:  # classified below; anything else propagates unchanged
            clear = _explain(err, repo_id, revision, key, repo_type)
            if clear is not None:
                raise clear from None
            transient = _status(err) in RETRY_STATUS or _dropped(err)
            if not transient or attempt == MAX_TRIES:
                raise
            log.warning("%s: %s (try %d/%d), retrying in %.1fs", repo_id, type(err).__name__, attempt, MAX_TRIES, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
