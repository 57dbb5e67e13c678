"""A tiny hub-compatible HTTP server for the tests (127.0.0.1 only), behaving like the real hub
where wildmerge's fetch code depends on it.

Endpoints (what huggingface_hub 2.4 calls): ``/api/{models,datasets}/{repo}[/revision/{rev}]``
(repository info with file sizes and LFS sha256), ``/api/.../{repo}/tree/{rev}`` (file list) and
``/[datasets/]{repo}/resolve/{rev}/{file}`` (HEAD and GET, with Range). How each answer follows
the real hub, and where huggingface_hub reads it:

* **Errors** carry ``X-Error-Code`` and ``X-Error-Message`` headers and a JSON ``{"error": ...}``
  body: ``hf_raise_for_status`` (huggingface_hub/utils/_http.py) picks the exception from
  ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``) and
  appends ``X-Error-Message`` to its text (``_format``); huggingface_hub's own tests build such
  responses (tests/test_utils_http.py, tests/test_utils_errors.py). Unknown repositories get
  401 ``RepoNotFound``, as the real hub answers private and missing repositories alike (the
  comment in ``hf_raise_for_status``; huggingface/huggingface_hub#1202).
* **Gated repositories** (``Repo(gated=True, granted={token})``) are *listed*: the info and tree
  calls answer 200 (with ``"gated": "manual"``), as on the hub, whose gated pages say "You can
  list files but not access them" (https://huggingface.co/docs/hub/models-gated). Only
  ``/resolve/`` is refused: 401 without a token ("Access to model X is restricted. You must have
  access to it and be authenticated to access it. Please log in.", as in the 401
  ``GatedRepoError``s quoted in ToTheBeginning/PuLID#97 and city96/ComfyUI_ExtraModels#99) and
  403 with a token that was not granted ("... is restricted and you are not in the authorized
  list. Visit https://huggingface.co/X to ask for access.", the text huggingface_hub's
  tests/test_file_download.py::test_download_from_a_gated_repo_with_hf_hub_download expects),
  both with ``X-Error-Code: GatedRepo``. A granted token downloads.
* **LFS files redirect to a file host.** ``/resolve/`` of an LFS file answers 302 with
  ``Location`` on another origin (here a second server on another port, as cdn-lfs.hf.co /
  cas-bridge.xethub.hf.co are for the hub; tests/test_file_download.py::
  test_get_hf_file_metadata_from_a_lfs_file checks that redirection) and the metadata headers
  ``X-Repo-Commit``, ``X-Linked-Etag`` (the LFS sha256) and ``X-Linked-Size``. huggingface_hub's
  HEAD does not follow a redirect off the hub and reads the metadata from the 302
  (``_httpx2_follow_hub_redirects_with_backoff`` in utils/_http.py, called by
  ``get_hf_file_metadata`` in file_download.py); its GET follows it (the HTTP client has ``follow_redirects=True``) and
  drops the Authorization header on the way (httpx ``_redirect_headers``): the file host records
  any it receives. Non-LFS files are served by the hub itself.
* **Xet is not advertised**: no ``X-Xet-Hash`` header and no ``xetHash`` in tree entries, so
  huggingface_hub downloads over plain HTTP even with ``hf_xet`` installed
  (``parse_xet_file_data_from_response`` returns None without ``X-Xet-Hash``: huggingface_hub's
  tests/test_xet_utils.py::test_parse_invalid_headers_file_info; ``xet_get`` is only used when
  that data exists, file_download.py ``_download_to_tmp_and_move``), which is also what the
  hub does for repositories not stored on Xet. The tests therefore leave ``HF_HUB_DISABLE_XET``
  unset, as in production.

Faults on demand: a number of 429 answers to the next requests (``Retry-After: 0``), bursts of
given status codes (e.g. two 503) on the next info calls or GETs of one file, a connection
dropped half-way through a file, and a file served slowly (so a client can be killed mid-file).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlparse


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    refs: dict[str, str] = field(default_factory=dict)  # "main" -> commit
    gated: bool = False  # listed by the info call; downloads need a granted token
    granted: set[str] = field(default_factory=set)  # tokens whose user accepted the license

    def push(self, files: dict[str, bytes]) -> str:
        commit = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items())).encode()).hexdigest()
        self.commits[commit] = dict(files)
        self.refs["main"] = commit
        return commit


def is_lfs(name: str) -> bool:
    return name.endswith((".safetensors", ".bin", ".parquet"))


@dataclass
class HubState:
    repos: dict[str, Repo] = field(default_factory=dict)
    fail_429: int = 0  # answer this many next requests with 429
    bursts: dict[str, list[int]] = field(default_factory=dict)  # "info" or a file name -> status codes of its next GETs
    drop_once: set[str] = field(default_factory=set)  # file names whose next GET is cut half-way
    slow_once: dict[str, int] = field(default_factory=dict)  # file name -> offset past which its next GET trickles
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # hub: method, path, Range
    times: list[float] = field(default_factory=list)  # hub: time.monotonic() of each request
    file_host: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)  # method, path, Range, Authorization
    blobs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # sha256 -> (file name, bytes), for the file host
    file_host_url: str = ""


def _tree(files: dict[str, bytes], sub: str, recursive: bool) -> list[dict[str, object]]:
    """The hub's ``tree`` listing of folder ``sub``: its files and (not recursive) its subfolders."""
    prefix = sub.rstrip("/") + "/" if sub else ""
    out: list[dict[str, object]] = []
    folders: set[str] = set()
    for n, b in sorted(files.items()):
        if not n.startswith(prefix):
            continue
        rel = n[len(prefix):]
        if "/" in rel and not recursive:
            folders.add(prefix + rel.split("/")[0])
            continue
        lfs = {"lfs": {"oid": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}} if is_lfs(n) else {}
        out.append({"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest(), **lfs})
    out += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in sorted(folders)]
    return out


class _Base(BaseHTTPRequestHandler):
    state: HubState

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _json(self, code: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, code: int, error_code: str, message: str | None = None) -> None:
        message = message or error_code
        self._json(code, {"error": message}, {"X-Error-Code": error_code, "X-Error-Message": message})

    def _send_file(self, data: bytes, name: str, headers: dict[str, str]) -> None:
        """``data`` from the Range start on (206), with the faults asked for ``name``."""
        st = self.state
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        self.send_response(206 if start else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        if name in st.drop_once and not start:
            st.drop_once.discard(name)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if name in st.slow_once:
            fast = max(st.slow_once.pop(name) - start, 0)
            self.wfile.write(body[:fast])
            try:
                for i in range(fast, len(body), 64 * 1024):  # then 64 KiB every 50 ms
                    time.sleep(0.05)
                    self.wfile.write(body[i : i + 64 * 1024])
            except (BrokenPipeError, ConnectionResetError):  # the client was killed
                self.close_connection = True
            return
        self.wfile.write(body)

    def _burst(self, key: str) -> bool:
        """Answer with the next status code queued for ``key`` (GET only), if any."""
        codes = self.state.bursts.get(key)
        if self.command != "GET" or not codes:
            return False
        code = codes.pop(0)
        self._error(code, "ServiceUnavailable" if code == 503 else f"HTTP{code}", f"the hub answered {code}")
        return True


class _Handler(_Base):
    def _find(self, parts: list[str]) -> tuple[str, Repo] | None:
        for n in (2, 1):
            repo_id = "/".join(parts[:n])
            if repo_id in self.state.repos:
                return repo_id, self.state.repos[repo_id]
        return None

    def _commit(self, repo: Repo, rev: str) -> str | None:
        return rev if rev in repo.commits else repo.refs.get(rev)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    def _handle(self) -> None:
        st = self.state
        path = unquote(urlparse(self.path).path)
        st.requests.append((self.command, path, self.headers.get("Range")))
        st.times.append(time.monotonic())
        if st.fail_429 > 0:
            st.fail_429 -= 1
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = [p for p in path.split("/") if p]
        kind = "model"
        if parts[:2] == ["api", "datasets"]:
            parts, kind = ["api", "models", *parts[2:]], "dataset"
        elif parts[:1] == ["datasets"]:
            parts, kind = parts[1:], "dataset"
        api = parts[:2] == ["api", "models"]
        found = self._find(parts[2:] if api else parts)
        if found is None:
            return self._error(401, "RepoNotFound", "Repository not found")  # as for private ones
        repo_id, repo = found
        rest = (parts[2:] if api else parts)[len(repo_id.split("/")):]
        if api:
            if rest[:1] != ["tree"] and self._burst("info"):
                return
            rev = rest[1] if rest[:1] in (["revision"], ["tree"]) and len(rest) > 1 else "main"
            commit = self._commit(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            files = repo.commits[commit]
            if rest[:1] == ["tree"]:
                return self._json(200, _tree(files, "/".join(rest[2:]), "recursive=true" in self.path))
            siblings = [
                {"rfilename": n, "size": len(b), **({"lfs": {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}} if is_lfs(n) else {})}
                for n, b in sorted(files.items())
            ]
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings, "private": False,
                                    "gated": "manual" if repo.gated else False, "cardData": {}, "tags": []})
        if rest[:1] != ["resolve"] or len(rest) < 3:
            return self._error(404, "EntryNotFound")
        commit = self._commit(repo, rest[1])
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rest[1]}")
        name = "/".join(rest[2:])
        if repo.gated and self._token() not in repo.granted:
            what = f"{kind} {repo_id}"
            if self._token() is None:
                return self._error(401, "GatedRepo", f"Access to {what} is restricted. You must have access to it and be "
                                                     "authenticated to access it. Please log in.")
            page = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
            return self._error(403, "GatedRepo", f"Access to {what} is restricted and you are not in the authorized "
                                                 f"list. Visit {page} to ask for access.")
        if name not in repo.commits[commit]:
            return self._error(404, "EntryNotFound", f"{name} does not exist on \"{rest[1]}\"")
        if self._burst(name):
            return
        data = repo.commits[commit][name]
        if is_lfs(name):  # 302 to the file host, the metadata on the redirect itself
            sha = hashlib.sha256(data).hexdigest()
            st.blobs[sha] = (name, data)
            self.send_response(302)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Location", f"{st.file_host_url}/repos/{sha[:2]}/{sha}?filename={quote(name)}&Expires=0&Signature=x")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(data, name, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'})

    do_GET = _handle
    do_HEAD = _handle


class _FileHost(_Base):
    """The LFS file host the hub redirects to: serves blobs by sha256, with Range."""

    def _handle(self) -> None:
        st = self.state
        url = urlparse(self.path)
        st.file_host.append((self.command, url.path, self.headers.get("Range"), self.headers.get("Authorization")))
        parts = [p for p in url.path.split("/") if p]
        if len(parts) != 3 or parts[0] != "repos" or parts[2] not in st.blobs:
            return self._error(404, "NoSuchKey")
        name, data = st.blobs[parts[2]]
        filename = parse_qs(url.query).get("filename", [name])[0]
        self._send_file(data, name, {"ETag": f'"{parts[2]}"', "Content-Disposition": f'inline; filename="{filename}"'})

    do_GET = _handle
    do_HEAD = _handle


class HubServer:
    """Start with ``with HubServer(state) as url:``; stops (and joins its threads) on exit."""

    def __init__(self, state: HubState) -> None:
        self.servers = [
            ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"state": state})),
            ThreadingHTTPServer(("127.0.0.1", 0), type("FileHost", (_FileHost,), {"state": state})),
        ]
        state.file_host_url = f"http://127.0.0.1:{self.servers[1].server_address[1]}"
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self.servers]

    def __enter__(self) -> str:
        for t in self.threads:
            t.start()
        return f"http://127.0.0.1:{self.servers[0].server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        for s in self.servers:
            s.shutdown()
            s.server_close()
        for t in self.threads:
            t.join(timeout=10)
