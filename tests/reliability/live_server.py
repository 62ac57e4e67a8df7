"""A real ``jupyter server`` subprocess with jupyter-convo, for the reliability tier.

Unlike the pytest-jupyter server of ``tests/server``, this one is a separate process: it
can be killed with SIGKILL and started again on the same data directory, slow or hostile
clients reach it over a real socket, and its log file can be scanned for secrets.

Readiness is the line the server logs with its URL (read from stderr by a thread that
also keeps the log); the users are the two of ``two_users.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
# The tree these tests belong to comes first on the server's path, whatever install is active.
REPO = HERE.parents[1]
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0
URL_LINE = re.compile(r"(http://127\.0\.0\.1:(\d+)/)")
QUIET_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")
ALICE = {"Authorization": "token alice-token"}
BOB = {"Authorization": "token bob-token"}
TEST_API_KEY = "test-key-not-secret"


@dataclass
class LiveServer:
    """A running server (or the description of one to start again on the same dirs)."""

    base: Path
    llm_base_url: str
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def data_dir(self) -> Path:
        return self.base / "convo-data"

    @property
    def log_path(self) -> Path:
        return self.base / "jupyter-server.log"

    @property
    def port(self) -> int:
        match = URL_LINE.search(self.url)
        assert match, self.url
        return int(match.group(2))

    @property
    def api(self) -> str:
        return self.url + "api/convo/"

    @property
    def ws_api(self) -> str:
        return "ws" + self.api[len("http") :]

    def client(self, headers: Mapping[str, str] = ALICE, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.api, headers=dict(headers), timeout=timeout)

    def async_client(
        self, headers: Mapping[str, str] = ALICE, timeout: float = 60.0
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api, headers=dict(headers), timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> LiveServer:
        """Start the server (again, on the same dirs) and wait for its URL line."""
        for path in (self.root, self.data_dir, self.base / "jupyter-runtime"):
            path.mkdir(parents=True, exist_ok=True)
        enabled: dict[str, bool] = {name: False for name in QUIET_EXTENSIONS}
        enabled["jupyter_convo"] = True
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(self.base / "jupyter-runtime"),
            "JUPYTER_CONVO_LLM_MODEL": "scripted-model",
            "JUPYTER_CONVO_LLM_API_KEY": TEST_API_KEY,
            "JUPYTER_CONVO_LLM_BASE_URL": self.llm_base_url,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            **self.env,
        }
        for name in ("JUPYTER_CONVO_URL", "JUPYTER_CONVO_TOKEN"):
            env.pop(name, None)
        args = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--ServerApp.allow_root=True",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            "--ServerApp.allow_unauthenticated_access=False",
            "--ServerApp.identity_provider_class=two_users.TwoUsersIdentityProvider",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.jpserver_extensions=" + repr(enabled),
            f"--ConvoExtension.data_dir={self.data_dir}",
            "--ConvoExtension.single_user=False",
        ]
        for name, value in self.config.items():
            args.append(f"--ConvoExtension.{name}={value}")
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts + 1}\n".encode())
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(self.root),
            start_new_session=True,
        )
        self.starts += 1
        found: list[str] = []
        ready = threading.Event()
        threading.Thread(
            target=_pump, args=(self.proc.stderr, self.log_path, found, ready), daemon=True
        ).start()
        if not ready.wait(READY_TIMEOUT) or not found:
            self.kill()
            tail = self.log_text()[-8000:]
            raise RuntimeError(f"jupyter server not ready within {READY_TIMEOUT} s; log:\n{tail}")
        self.url = found[0]
        wait_listening(self.port, READY_TIMEOUT)
        return self

    def kill(self) -> int | None:
        """SIGKILL the server alone (its runtimes live in process groups of their own)."""
        proc = self.proc
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=EXIT_TIMEOUT)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it hangs; kills leftover runtimes."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        self.kill_runtimes()

    def kill_runtimes(self) -> None:
        for record in self.data_dir.glob("conversations/*/runtime.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(record.read_text())
                group = int(data.get("pgid") or data.get("pid") or 0)
                if group > 0 and group != os.getpgrp():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(group, signal.SIGKILL)


def wait_listening(port: int, timeout: float) -> None:
    """Until 127.0.0.1:``port`` accepts connections. The server logs its URL before it
    binds (the bind is queued on its event loop), so the URL line alone is not enough.
    A bounded check of the condition, every 10 ms; fails loudly after ``timeout``."""
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


def _pump(stream: Any, log_path: Path, found: list[str], ready: threading.Event) -> None:
    """Copy the server's stderr to its log; note the URL line when it appears."""
    with log_path.open("ab") as log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            log.flush()
            if not found:
                match = URL_LINE.search(raw.decode(errors="replace"))
                if match:
                    found.append(match.group(1))
                    ready.set()
    ready.set()  # the server exited: wake the waiter, which then sees no URL


@contextlib.contextmanager
def live_server(base: Path, llm_base_url: str, **options: Any) -> Iterator[LiveServer]:
    server = LiveServer(base, llm_base_url, **options).start()
    try:
        yield server
    finally:
        server.stop()
