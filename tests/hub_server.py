"""A tiny hub-compatible HTTP server for the tests (127.0.0.1 only).

Serves the endpoints huggingface_hub uses: ``/api/models/{repo}[/revision/{rev}]`` (repository
info with file sizes and LFS sha256), ``/api/models/{repo}/tree/{rev}`` (file list) and ``/{repo}/resolve/{rev}/{file}`` (HEAD with
X-Repo-Commit / X-Linked-Etag / X-Linked-Size, GET with Range). Faults on demand: 401 for
gated repositories, 404 for unknown ones, a number of 429 answers, a connection dropped
half-way through a file, and a file served slowly (so a client can be killed mid-file).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> files
    refs: dict[str, str] = field(default_factory=dict)  # "main" -> commit
    gated: bool = False

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
    drop_once: set[str] = field(default_factory=set)  # file names whose next GET is cut half-way
    slow_once: dict[str, int] = field(default_factory=dict)  # file name -> offset past which its next GET trickles
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range


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


class _Handler(BaseHTTPRequestHandler):
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

    def _error(self, code: int, error_code: str) -> None:
        self._json(code, {"error": error_code}, {"X-Error-Code": error_code, "X-Error-Message": error_code})

    def _find(self, parts: list[str]) -> tuple[str, Repo] | None:
        for n in (2, 1):
            repo_id = "/".join(parts[:n])
            if repo_id in self.state.repos:
                return repo_id, self.state.repos[repo_id]
        return None

    def _commit(self, repo: Repo, rev: str) -> str | None:
        return rev if rev in repo.commits else repo.refs.get(rev)

    def _handle(self) -> None:
        st = self.state
        path = unquote(urlparse(self.path).path)
        st.requests.append((self.command, path, self.headers.get("Range")))
        if st.fail_429 > 0:
            st.fail_429 -= 1
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "datasets"]:
            parts = ["api", "models", *parts[2:]]
        elif parts[:1] == ["datasets"]:
            parts = parts[1:]
        api = parts[:2] == ["api", "models"]
        found = self._find(parts[2:] if api else parts)
        if found is None:
            return self._error(401, "RepoNotFound")  # the hub answers unknown repos like private ones
        repo_id, repo = found
        rest = (parts[2:] if api else parts)[len(repo_id.split("/")):]
        if repo.gated:
            return self._error(403 if api else 401, "GatedRepo")
        if api:
            rev = rest[1] if rest[:1] in (["revision"], ["tree"]) and len(rest) > 1 else "main"
            commit = self._commit(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound")
            files = repo.commits[commit]
            if rest[:1] == ["tree"]:
                return self._json(200, _tree(files, "/".join(rest[2:]), "recursive=true" in self.path))
            siblings = [
                {"rfilename": n, "size": len(b), **({"lfs": {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134}} if is_lfs(n) else {})}
                for n, b in sorted(files.items())
            ]
            return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings, "private": False, "cardData": {}, "tags": []})
        if rest[:1] != ["resolve"] or len(rest) < 3:
            return self._error(404, "EntryNotFound")
        commit = self._commit(repo, rest[1])
        if commit is None:
            return self._error(404, "RevisionNotFound")
        name = "/".join(rest[2:])
        if name not in repo.commits[commit]:
            return self._error(404, "EntryNotFound")
        data = repo.commits[commit][name]
        etag = hashlib.sha256(data).hexdigest() if is_lfs(name) else hashlib.sha1(data).hexdigest()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{etag}"')
        if is_lfs(name):
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(data)))
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

    do_GET = _handle
    do_HEAD = _handle


class HubServer:
    """Start with ``with HubServer(state) as url:``; stops (and joins its thread) on exit."""

    def __init__(self, state: HubState) -> None:
        handler = type("Handler", (_Handler,), {"state": state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
