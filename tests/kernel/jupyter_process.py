"""A real Jupyter server with jupyter-convo in a subprocess, for kernel-side tests.

The kernel side reaches the server only over HTTP/WebSocket, as in a notebook, so the tests
run ``python -m jupyter_server`` with the extension, a token and private data/runtime dirs,
and the LLM settings in its environment (the scripted LLM's URL). Starting, waiting until
it accepts connections and stopping are ``jupyter_convo.testing.jupyter_server``'s.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_convo.client import ConvoClient, ServerInfo
from jupyter_convo.testing.jupyter_server import (
    QUIET_EXTENSIONS,
    kill_runtimes,
    start_server,
    stop_process,
)

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 20.0


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
        stop_process(self.proc, EXIT_TIMEOUT)
        # Runtimes outlive the server by design (found again on restart): stop them here.
        kill_runtimes(self.data_dir)


def start_jupyter_server(
    base: Path,
    *,
    llm_base_url: str | None,
    env: Mapping[str, str] | None = None,
    extensions: Mapping[str, bool] | None = None,
    root: Path | None = None,
    convo_enabled: bool = True,
) -> JupyterServer:
    """Start the server and wait until it accepts connections; fail loudly if it dies or
    stays silent."""
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
        "--ServerApp.allow_root=True",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--ConvoExtension.data_dir={data_dir}",
        "--ConvoExtension.keep_runtimes_on_shutdown=False",
        "--ServerApp.jpserver_extensions=" + repr(enabled),
    ]
    log_path = base / "jupyter-server.log"
    started = start_server(
        args, env=full_env, cwd=root, log_path=log_path, ready_timeout=READY_TIMEOUT
    )
    return JupyterServer(started.proc, started.url, token, root, data_dir, log_path)


@contextlib.contextmanager
def jupyter_server(base: Path, **options: object) -> Iterator[JupyterServer]:
    server = start_jupyter_server(base, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
