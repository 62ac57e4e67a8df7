"""A real ``jupyter server`` (or ``jupyter lab``) in a subprocess, for end-to-end tests.

The mechanics every such test needs, whatever its configuration: start the app in a
session of its own, copy its stderr to a log file while looking for the line with its URL,
wait for that URL and then for the port to accept connections (the server logs its URL
before it binds), and stop it again, with the conversations' runtimes it leaves behind.
Every wait is bounded and a failure says why, with the tail of the server's log::

    from jupyter_convo.testing.jupyter_server import start_server

    server = start_server(
        ["--ServerApp.token=secret", f"--ConvoExtension.data_dir={data_dir}"],
        env={**os.environ, "JUPYTER_CONVO_LLM_BASE_URL": llm.base_url},
        cwd=root,
        log_path=tmp / "server.log",
    )
    try:
        ...  # talk to server.url
    finally:
        server.stop()
        kill_runtimes(data_dir)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 20.0
LOG_TAIL_CHARS = 8000
URL_LINE = re.compile(r"(http://127\.0\.0\.1:(\d+)/)")
# Server extensions that only slow a test server's start; a test that needs one turns it on.
QUIET_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")
# The common arguments: loopback only, any free port, no browser.
LOCAL_ARGS = ("--no-browser", "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0")
APP_MODULES = {"server": "jupyter_server", "lab": "jupyterlab"}


class ServerStartError(RuntimeError):
    """The server died, or did not log its URL or accept connections in time."""


@dataclass
class ServerProcess:
    """A started server: its process, its URL (``http://127.0.0.1:PORT/``) and its log."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def port(self) -> int:
        return url_port(self.url)

    def log_text(self, limit: int | None = None) -> str:
        """The server's log so far (its last ``limit`` characters if given)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if limit is None else text[-limit:]

    def stop(self, timeout: float = EXIT_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL of the whole process group after ``timeout``."""
        return stop_process(self.proc, timeout)


def start_server(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    app: Literal["server", "lab"] = "server",
    ready_timeout: float = READY_TIMEOUT,
) -> ServerProcess:
    """Run ``python -m jupyter_server`` (or ``jupyterlab``) with ``LOCAL_ARGS`` + ``args``
    and return once it accepts connections. On failure the process is stopped and
    ``ServerStartError`` carries the tail of its log."""
    command = [sys.executable, "-m", APP_MODULES[app], *LOCAL_ARGS, *args]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=str(cwd),
        start_new_session=True,
    )
    assert proc.stderr is not None
    found: list[str] = []
    ready = threading.Event()
    threading.Thread(target=_pump, args=(proc.stderr, log_path, found, ready), daemon=True).start()
    server = ServerProcess(proc, "", log_path)
    try:
        if not ready.wait(ready_timeout) or not found:
            code = proc.poll()
            why = f"exited with {code}" if code is not None else f"silent for {ready_timeout} s"
            raise ServerStartError(f"jupyter {app} logged no URL ({why})")
        server.url = found[0]
        wait_listening(server.port, ready_timeout)
    except ServerStartError as exc:
        stop_process(proc, EXIT_TIMEOUT)
        raise ServerStartError(f"{exc}; log:\n{server.log_text(LOG_TAIL_CHARS)}") from None
    log.info("jupyter %s ready at %s (pid %s)", app, server.url, proc.pid)
    return server


def url_port(url: str) -> int:
    """The port of a local server's ``http://127.0.0.1:PORT/`` URL."""
    match = URL_LINE.search(url)
    if match is None:
        raise ValueError(f"not a local server URL: {url!r}")
    return int(match.group(2))


def wait_listening(port: int, timeout: float) -> None:
    """Until 127.0.0.1:``port`` accepts connections: a bounded retry every 10 ms."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"nothing listens on port {port} after {timeout} s"
                ) from None
            pause.wait(0.01)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = EXIT_TIMEOUT) -> int | None:
    """SIGTERM ``proc``; if it is still running after ``timeout``, SIGKILL its process group
    (it was started in a session of its own)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.info("server pid %s ignored SIGTERM for %s s; killing its group", proc.pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            return proc.wait(timeout=timeout)
    return proc.returncode


def kill_runtimes(data_dir: Path) -> None:
    """SIGKILL the process group of every runtime recorded in ``data_dir``'s
    ``conversations/*/runtime.json`` (runtimes may outlive their server by design)."""
    for record in data_dir.glob("conversations/*/runtime.json"):
        try:
            data = json.loads(record.read_text())
            group = int(data.get("pgid") or data.get("pid") or 0)
        except (OSError, ValueError, AttributeError):
            continue
        if group > 0 and group != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _pump(stream: IO[bytes], log_path: Path, found: list[str], ready: threading.Event) -> None:
    """Copy the server's stderr to its log; note the URL line when it appears."""
    with log_path.open("ab") as out:
        for raw in iter(stream.readline, b""):
            out.write(raw)
            out.flush()
            if not found:
                match = URL_LINE.search(raw.decode(errors="replace"))
                if match:
                    found.append(match.group(1))
                    ready.set()
    ready.set()  # the server exited: wake the waiter, which then sees no URL
