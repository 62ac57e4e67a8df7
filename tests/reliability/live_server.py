"""A real ``jupyter server`` subprocess with jupyter-convo, for the reliability tier.

Unlike the pytest-jupyter server of ``tests/server``, this one is a separate process: it
can be killed with SIGKILL and started again on the same data directory, slow or hostile
clients reach it over a real socket, and its log file can be scanned for secrets.

Starting, waiting until it accepts connections and stopping are
``jupyter_convo.testing.jupyter_server``'s; the users are the two of ``two_users.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jupyter_convo.testing.jupyter_server import (
    QUIET_EXTENSIONS,
    kill_runtimes,
    start_server,
    stop_process,
    url_port,
)

HERE = Path(__file__).resolve().parent
# The tree these tests belong to comes first on the server's path, whatever install is active.
REPO = HERE.parents[1]
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0
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
        return url_port(self.url)

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
            "--ServerApp.allow_root=True",
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
        self.starts += 1
        started = start_server(
            args, env=env, cwd=self.root, log_path=self.log_path, ready_timeout=READY_TIMEOUT
        )
        self.proc, self.url = started.proc, started.url
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
        if self.proc is not None:
            stop_process(self.proc, EXIT_TIMEOUT)
        self.kill_runtimes()

    def kill_runtimes(self) -> None:
        kill_runtimes(self.data_dir)


@contextlib.contextmanager
def live_server(base: Path, llm_base_url: str, **options: Any) -> Iterator[LiveServer]:
    server = LiveServer(base, llm_base_url, **options).start()
    try:
        yield server
    finally:
        server.stop()
