"""A small in-memory server on 127.0.0.1 that speaks the Hub routes the tests need.

No Hub-compatible server exists in the package registry (ENVIRONMENT.md), so the publishing
tests start this one. It implements only what ``HfApi.create_repo``, ``create_branch``,
``upload_folder`` (validate-yaml, preupload, commit; every file as a "regular" upload),
``repo_info`` and ``hf_hub_download`` call, for dataset repos, with these Hub behaviours:

- ``Authorization: Bearer <token>``: an unknown token is answered 401 with
  ``X-Error-Message: Invalid credentials in Authorization header``; writing needs a valid
  token whose user owns the namespace (else 403); a private repo is invisible (404
  ``RepoNotFound``) without its owner's token.
- ``preupload`` returns each remote file's git blob sha1 as ``oid``, so huggingface_hub skips
  unchanged files and an unchanged folder creates no commit.
- Missing repo / revision / file: 404 with ``X-Error-Code`` ``RepoNotFound`` /
  ``RevisionNotFound`` / ``EntryNotFound``.

Every request is logged in :attr:`HubServer.requests` (method, path), and
:attr:`HubServer.headers_seen` keeps the headers (to check a token was sent, never printed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob (what the Hub reports for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def commit(self, parent: str | None, message: str, files: dict[str, bytes]) -> Commit:
        h = hashlib.sha1(f"{parent}\n{message}\n{len(self.commits)}".encode())
        for path in sorted(files):
            h.update(f"{path}:{git_blob_sha1(files[path])}\n".encode())
        c = Commit(h.hexdigest(), parent, message, dict(files))
        self.commits[c.oid] = c
        return c

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class HubServer:
    """The server; use as a context manager: ``with HubServer({"tok": "alice"}) as hub:``.

    Args:
        tokens: Token -> user name.
        orgs: User name -> extra namespaces the user may write to.
    """

    def __init__(self, tokens: dict[str, str], orgs: dict[str, list[str]] | None = None):
        self.tokens = tokens
        self.orgs = orgs or {}
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def n_commits(self, repo_id: str) -> int:
        """Commits in a repo, the initial one included."""
        return len(self.repos[repo_id].commits)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            # -- plumbing ------------------------------------------------------------

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(
                self,
                status: int,
                body: bytes | dict | None = None,
                headers: dict[str, str] | None = None,
                head_only: bool = False,
            ) -> None:
                data = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
                self.send_response(status)
                ctype = "application/json" if isinstance(body, dict) else "application/octet-stream"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head_only:
                    self.wfile.write(data)

            def _error(self, status: int, message: str, code: str | None = None) -> None:
                headers = {"X-Error-Message": message}
                if code:
                    headers["X-Error-Code"] = code
                self._send(status, {"error": message}, headers, head_only=self.command == "HEAD")

            def _user(self) -> tuple[bool, str | None]:
                """(token ok, user): a bad token is (False, None); no token is (True, None)."""
                auth = self.headers.get("Authorization")
                if not auth:
                    return True, None
                token = auth.removeprefix("Bearer ").strip()
                user = server.tokens.get(token)
                return (user is not None), user

            def _may_write(self, user: str | None, namespace: str) -> bool:
                return user is not None and (
                    namespace == user or namespace in server.orgs.get(user, [])
                )

            def _repo(self, repo_id: str, user: str | None) -> Repo | None:
                repo = server.repos.get(repo_id)
                if repo is None or (
                    repo.private and not self._may_write(user, repo_id.split("/")[0])
                ):
                    self._error(404, "Repository not found", "RepoNotFound")
                    return None
                return repo

            # -- dispatch ------------------------------------------------------------

            def do_HEAD(self) -> None:  # noqa: N802
                self._dispatch()

            def do_GET(self) -> None:  # noqa: N802
                self._dispatch()

            def do_POST(self) -> None:  # noqa: N802
                self._dispatch()

            def _dispatch(self) -> None:
                path = urlsplit(self.path).path
                with server.lock:
                    server.requests.append((self.command, path))
                    server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                body = self._body() if self.command == "POST" else b""
                ok, user = self._user()
                if not ok:
                    self._error(401, "Invalid credentials in Authorization header")
                    return
                parts = [unquote(p) for p in path.strip("/").split("/")]
                with server.lock:
                    try:
                        self._route(parts, body, user)
                    except Exception as err:  # noqa: BLE001 - a test server answers 500
                        self._error(500, f"test hub error: {err!r}")

            def _route(self, parts: list[str], body: bytes, user: str | None) -> None:
                m = self.command
                if m == "POST" and parts == ["api", "repos", "create"]:
                    return self._create(json.loads(body or b"{}"), user)
                if m == "POST" and parts == ["api", "validate-yaml"]:
                    return self._validate_yaml(json.loads(body or b"{}"))
                if m == "GET" and parts == ["api", "whoami-v2"]:
                    if user is None:
                        return self._error(401, "Invalid credentials in Authorization header")
                    return self._send(200, {"name": user, "type": "user", "orgs": []})
                if len(parts) >= 4 and parts[:2] == ["api", "datasets"]:
                    repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
                    if m == "GET" and not rest:
                        return self._info(repo_id, "main", user)
                    if m == "GET" and len(rest) == 2 and rest[0] == "revision":
                        return self._info(repo_id, rest[1], user)
                    if m == "POST" and len(rest) == 2 and rest[0] == "preupload":
                        return self._preupload(repo_id, rest[1], json.loads(body), user)
                    if m == "POST" and len(rest) == 2 and rest[0] == "commit":
                        return self._commit(repo_id, rest[1], body, user)
                    if m == "POST" and len(rest) == 2 and rest[0] == "branch":
                        return self._branch(repo_id, rest[1], user)
                if len(parts) >= 6 and parts[0] == "datasets" and parts[3] == "resolve":
                    if m in ("GET", "HEAD"):
                        return self._resolve(
                            f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]), user
                        )
                return self._error(404, f"no such route: {m} {'/'.join(parts)}")

            # -- routes --------------------------------------------------------------

            def _create(self, payload: dict, user: str | None) -> None:
                if user is None:
                    return self._error(401, "You must be authenticated to create a repo")
                ns = payload.get("organization") or user
                repo_id = f"{ns}/{payload['name']}"
                if payload.get("type") != "dataset":
                    return self._error(400, "this test hub only hosts dataset repos")
                if not self._may_write(user, ns):
                    return self._error(
                        403, "You don't have the rights to create a dataset under this namespace"
                    )
                url = f"{server.url}/datasets/{repo_id}"
                if repo_id in server.repos:  # the Hub's 409 answer also carries the url
                    msg = "You already created this dataset repo"
                    return self._send(409, {"error": msg, "url": url}, {"X-Error-Message": msg})
                repo = Repo(repo_id, private=payload.get("visibility") == "private")
                first = repo.commit(
                    None,
                    "initial commit",
                    {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"},
                )
                repo.branches["main"] = first.oid
                server.repos[repo_id] = repo
                return self._send(200, {"url": url, "name": repo_id})

            def _validate_yaml(self, payload: dict) -> None:
                text = payload.get("content", "")
                if text.startswith("---"):
                    try:
                        yaml.safe_load(text.split("---", 2)[1])
                    except yaml.YAMLError as err:
                        return self._send(400, {"errors": [{"message": str(err)}]})
                return self._send(200, {"errors": [], "warnings": []})

            def _info(self, repo_id: str, revision: str, user: str | None) -> None:
                repo = self._repo(repo_id, user)
                if repo is None:
                    return None
                c = repo.resolve(revision)
                if c is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                return self._send(
                    200,
                    {
                        "id": repo_id,
                        "sha": c.oid,
                        "private": repo.private,
                        "siblings": [{"rfilename": p} for p in sorted(c.files)],
                    },
                )

            def _write_target(
                self, repo_id: str, revision: str, user: str | None
            ) -> tuple[Repo | None, Commit | None]:
                repo = self._repo(repo_id, user)
                if repo is None:
                    return None, None
                if not self._may_write(user, repo_id.split("/")[0]):
                    self._error(403, "You don't have write access to this repo")
                    return None, None
                c = repo.resolve(revision)
                if c is None:
                    self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                    return None, None
                return repo, c

            def _preupload(
                self, repo_id: str, revision: str, payload: dict, user: str | None
            ) -> None:
                repo, c = self._write_target(repo_id, revision, user)
                if repo is None:
                    return None
                files = []
                for f in payload["files"]:
                    have = c.files.get(f["path"])
                    files.append(
                        {
                            "path": f["path"],
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_sha1(have) if have is not None else None,
                        }
                    )
                return self._send(200, {"files": files})

            def _commit(self, repo_id: str, revision: str, body: bytes, user: str | None) -> None:
                repo, c = self._write_target(repo_id, revision, user)
                if repo is None:
                    return None
                if revision not in repo.branches:
                    return self._error(400, "commits go to a branch")
                files = dict(c.files)
                summary = ""
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    op = json.loads(line)
                    key, value = op["key"], op["value"]
                    if key == "header":
                        summary = value.get("summary", "")
                    elif key == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif key in ("deletedFile", "deletedFolder"):
                        prefix = value["path"].rstrip("/")
                        files = {
                            p: b
                            for p, b in files.items()
                            if p != prefix and not p.startswith(prefix + "/")
                        }
                    else:
                        return self._error(400, f"this test hub does not support {key} operations")
                new = repo.commit(c.oid, summary, files)
                repo.branches[revision] = new.oid
                return self._send(
                    200,
                    {
                        "commitUrl": f"{server.url}/datasets/{repo_id}/commit/{new.oid}",
                        "commitOid": new.oid,
                        "pullRequestUrl": None,
                    },
                )

            def _branch(self, repo_id: str, branch: str, user: str | None) -> None:
                repo, c = self._write_target(repo_id, "main", user)
                if repo is None:
                    return None
                if branch in repo.branches:
                    return self._error(409, "Branch already exists")
                repo.branches[branch] = c.oid
                return self._send(200, {})

            def _resolve(self, repo_id: str, revision: str, path: str, user: str | None) -> None:
                repo = self._repo(repo_id, user)
                if repo is None:
                    return None
                c = repo.resolve(revision)
                if c is None:
                    return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                data = c.files.get(path)
                if data is None:
                    return self._error(404, "Entry not found", "EntryNotFound")
                headers = {"X-Repo-Commit": c.oid, "ETag": f'"{git_blob_sha1(data)}"'}
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and self.command == "GET":
                    start = int(rng[len("bytes=") :].split("-")[0] or 0)
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    return self._send(206, data[start:], headers)
                return self._send(200, data, headers, head_only=self.command == "HEAD")

        return Handler
