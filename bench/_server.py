"""A real Jupyter server with jupyter-convo and the scripted LLM, for end-to-end benches.

``bench_server(tmp)`` starts ``python -m jupyter_server`` with the extension (token auth,
private data and runtime dirs, other extensions off) pointed at a started ``ScriptedLLM``,
waits for the URL line on its stderr and yields a ``BenchServer``; on exit it stops the
server and kills any runtime left. Figures from here include every real hop: HTTP,
WebSocket, the relay, the runtime process.
"""

from __future__ import annotations

import contextlib
import json
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
from typing import Any

from jupyter_convo.testing import TEST_API_KEY, ScriptedLLM

URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)")
QUIET_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")
READY_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parent.parent


@dataclass
class BenchServer:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    data_dir: Path
    log_path: Path
    llm: ScriptedLLM

    @property
    def api(self) -> str:
        return self.url + "api/convo/"

    @property
    def ws_api(self) -> str:
        return "ws" + self.api[len("http") :]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def runtime_pids(self) -> dict[str, int]:
        """conversation id -> runtime pid, from the sandbox records."""
        pids = {}
        for record in self.data_dir.glob("conversations/*/runtime.json"):
            with contextlib.suppress(OSError, ValueError):
                pids[record.parent.name] = int(json.loads(record.read_text())["pid"])
        return pids


def _pump(stream: Any, log_path: Path, found: list[str], ready: threading.Event) -> None:
    with log_path.open("ab") as log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            if not found:
                match = URL_LINE.search(raw.decode(errors="replace"))
                if match:
                    found.append(match.group(1))
                    ready.set()
    ready.set()


@contextlib.contextmanager
def bench_server(
    base: Path, config: Mapping[str, object] | None = None, *, stream_chunk_chars: int = 8
) -> Iterator[BenchServer]:
    """``stream_chunk_chars``: characters per streamed chunk of the scripted LLM's answers
    (the openai SDK parses each chunk into models, ~0.4 ms each: big chunks keep a bench
    about what it measures rather than about the SDK)."""
    llm = ScriptedLLM(stream_chunk_chars=stream_chunk_chars)
    with llm.serve():
        token = secrets.token_hex(16)
        root, data_dir, runtime_dir = base / "root", base / "convo-data", base / "runtime"
        for path in (root, data_dir, runtime_dir):
            path.mkdir(parents=True, exist_ok=True)
        enabled = {name: False for name in QUIET_EXTENSIONS}
        enabled["jupyter_convo"] = True
        env = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(runtime_dir),
            "JUPYTER_CONVO_LLM_MODEL": llm.models[0],
            "JUPYTER_CONVO_LLM_API_KEY": TEST_API_KEY,
            "JUPYTER_CONVO_LLM_BASE_URL": llm.base_url,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
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
            "--ServerApp.jpserver_extensions=" + repr(enabled),
            f"--ConvoExtension.data_dir={data_dir}",
            "--ConvoExtension.keep_runtimes_on_shutdown=False",
        ]
        args += [f"--ConvoExtension.{name}={value}" for name, value in (config or {}).items()]
        log_path = base / "jupyter-server.log"
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(root),
            start_new_session=True,
        )
        found: list[str] = []
        ready = threading.Event()
        threading.Thread(
            target=_pump, args=(proc.stderr, log_path, found, ready), daemon=True
        ).start()
        server = BenchServer(proc, "", token, data_dir, log_path, llm)
        try:
            if not ready.wait(READY_TIMEOUT) or not found:
                raise RuntimeError(
                    f"jupyter server not ready; log:\n{log_path.read_text()[-4000:]}"
                )
            server.url = found[0]
            _wait_listening(int(server.url.rsplit(":", 1)[1].strip("/")))
            yield server
        finally:
            _stop(server)


def _wait_listening(port: int) -> None:
    """The server logs its URL before it binds: wait (bounded) until it accepts."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _stop(server: BenchServer) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=30)
    for pid in server.runtime_pids().values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
