"""A git smart-HTTP server for tests: git's own ``http-backend`` behind a token check.

    make_bare_repository(root / "project.git", {"main": {"README.md": "hi"}})
    with GitHTTPServer(root, token="tok-123456") as server:
        url = server.url("project.git")   # http://127.0.0.1:PORT/project.git

Requests without ``Authorization: Basic base64(<any user>:<token>)`` get 401 (a clone
then fails fast: git does not prompt when ``GIT_TERMINAL_PROMPT=0``). Every request's
path and whether it was authorised are kept in ``requests``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit


def make_bare_repository(path: Path, branches: Mapping[str, Mapping[str, str]]) -> Path:
    """A bare repository at ``path`` whose branches (the first one is the default) each
    add ``{relative path: text}`` files on top of the branch before them."""
    work = path.with_name(path.name + ".work")
    work.mkdir(parents=True)

    def git(*args: str) -> None:
        command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
        subprocess.run(command, cwd=work, check=True, capture_output=True)

    for index, (branch, files) in enumerate(branches.items()):
        if index == 0:
            git("init", "-q", "-b", branch)
        else:
            git("checkout", "-q", "-b", branch)
        for name, text in files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        git("add", "-A")
        git("commit", "-q", "-m", f"{branch} files")
    first = next(iter(branches))
    git("checkout", "-q", first)
    git("clone", "-q", "--bare", str(work), str(path))
    shutil.rmtree(work)
    return path


class GitHTTPServer:
    """Serves the bare repositories under ``root`` on 127.0.0.1 (see the module doc)."""

    def __init__(self, root: Path, *, token: str | None = None) -> None:
        found = shutil.which("git")
        if found is None:
            raise RuntimeError("git is not installed")
        git: str = found
        self.root = root
        self.token = token
        self.requests: list[tuple[str, bool]] = []
        self.headers_seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                header = self.headers.get("Authorization", "")
                server.headers_seen.append(header)
                allowed = server._authorised(header)
                server.requests.append((self.path, allowed))
                if not allowed:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                env = {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": parts.path,
                    "QUERY_STRING": parts.query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "test",
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                done = subprocess.run(
                    [git, "http-backend"], input=body, env=env, capture_output=True, check=False
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers: list[tuple[str, str]] = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _authorised(self, header: str) -> bool:
        if self.token is None:
            return True
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded.partition(":")[2] == self.token

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> GitHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> GitHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
