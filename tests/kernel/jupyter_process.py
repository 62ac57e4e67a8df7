"""A real Jupyter server with jupyter-convo in a subprocess, for kernel-side tests.

The kernel side reaches the server only over HTTP/WebSocket, as in a notebook, so the tests
run ``python -m jupyter_server`` with the extension, a token and private data/runtime dirs,
and the LLM settings in its environment (the scripted LLM's URL). Readiness is the line the
server logs with its URL, read from its stderr by a thread that also keeps the log, and
then the port accepting connections (the server logs its URL before it binds).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_convo.client import ConvoClient, ServerInfo

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 20.0
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)")
# Other server extensions only slow the start; the browser test turns jupyterlab back on.
QUIET_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")


@dataclass
class JupyterServer:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    root: Path
    data_dir: Path
    log_path: Path

    @property
    def server_info(self) -> ServerInfo:
        return ServerInfo(url=self.url, token=self.token)

    def client(self) -> ConvoClient:
        return ConvoClient(self.server_info)

    def env(self) -> dict[str, str]:
        """What a kernel needs to find this server."""
        return {"JUPYTER_CONVO_URL": self.url, "JUPYTER_CONVO_TOKEN": self.token}

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20_000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=EXIT_TIMEOUT)
        # Runtimes outlive the server by design (found again on restart): stop them here.
        for pid_file in self.data_dir.glob("conversations/*/runtime.json"):
            _kill_runtime(pid_file)


def _kill_runtime(record: Path) -> None:
    import json

    try:
        data = json.loads(record.read_text())
        pid = int(data.get("pgid") or data.get("pid") or 0)
    except (OSError, ValueError):
        return
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def _pump(stream: object, log_path: Path, found: list[str], ready: threading.Event) -> None:
    """Copy the server's stderr to its log; note the URL line when it appears."""
    assert hasattr(stream, "readline")
    with log_path.open("ab") as log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            log.flush()
            if not found:
                match = URL_LINE.search(raw.decode(errors="replace"))
                if match:
                    found.append(match.group(1))
                    ready.set()
    ready.set()  # the server exited: wake the waiter, which sees no URL


def start_jupyter_server(
    base: Path,
    *,
    llm_base_url: str | None,
    env: Mapping[str, str] | None = None,
    extensions: Mapping[str, bool] | None = None,
    root: Path | None = None,
    convo_enabled: bool = True,
) -> JupyterServer:
    """Start the server and wait for its URL line; fail loudly if it dies or stays silent."""
    token = secrets.token_hex(16)
    root = root or base / "root"
    data_dir = base / "convo-data"
    runtime_dir = base / "jupyter-runtime"
    for path in (root, data_dir, runtime_dir):
        path.mkdir(parents=True, exist_ok=True)
    enabled = {name: False for name in QUIET_EXTENSIONS}
    enabled.update(extensions or {})
    enabled["jupyter_convo"] = convo_enabled
    full_env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(runtime_dir),
        "JUPYTER_CONVO_LLM_MODEL": "scripted-model",
        "JUPYTER_CONVO_LLM_API_KEY": "test-key-not-secret",
        **(env or {}),
    }
    if llm_base_url is not None:
        full_env["JUPYTER_CONVO_LLM_BASE_URL"] = llm_base_url
    for name in ("JUPYTER_CONVO_URL", "JUPYTER_CONVO_TOKEN"):
        full_env.pop(name, None)
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--ServerApp.allow_root=True",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--ConvoExtension.data_dir={data_dir}",
        "--ConvoExtension.keep_runtimes_on_shutdown=False",
        "--ServerApp.jpserver_extensions=" + repr(enabled),
    ]
    log_path = base / "jupyter-server.log"
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=str(root),
        start_new_session=True,
    )
    found: list[str] = []
    ready = threading.Event()
    threading.Thread(target=_pump, args=(proc.stderr, log_path, found, ready), daemon=True).start()
    server = JupyterServer(proc, "", token, root, data_dir, log_path)
    if not ready.wait(READY_TIMEOUT) or not found:
        server.stop()
        raise RuntimeError(
            f"jupyter server not ready within {READY_TIMEOUT} s; log:\n{server.log_text()}"
        )
    server.url = found[0]
    try:
        _wait_listening(server.url, READY_TIMEOUT)
    except RuntimeError as exc:
        server.stop()
        raise RuntimeError(f"{exc}; log:\n{server.log_text()}") from None
    return server


def _wait_listening(url: str, timeout: float) -> None:
    """Until the server at ``url`` accepts connections: it logs its URL before it binds
    (the bind is queued on its event loop). A bounded retry every 10 ms; fails loudly."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout} s") from None
            pause.wait(0.01)


@contextlib.contextmanager
def jupyter_server(base: Path, **options: object) -> Iterator[JupyterServer]:
    server = start_jupyter_server(base, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
