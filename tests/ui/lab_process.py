"""A real ``jupyter lab`` in a subprocess for the browser tests.

Everything it writes stays under one temporary folder (Jupyter config, data and runtime
dirs, JupyterLab workspaces and user settings, the conversations' data), so a test run
never touches the user's own Jupyter state. Readiness is the URL line the server logs,
read from its stderr by a thread that also keeps the whole log for failure messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jupyter_convo.testing import TEST_API_KEY

READY_TIMEOUT = 90.0
EXIT_TIMEOUT = 20.0
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)")
# User settings for the tests: JupyterLab asks no question about news and checks for no
# update; the panel fetches small pages (so lists of a few conversations are paged).
PAGE_SIZE = 3
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "jupyter-convo/plugin.jupyterlab-settings": {"pageSize": PAGE_SIZE},
}


@dataclass
class LabServer:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    root: Path
    data_dir: Path
    log_path: Path

    def lab_url(self, path: str = "lab") -> str:
        return f"{self.url}{path}?token={self.token}"

    def api_url(self, path: str) -> str:
        return f"{self.url}api/convo/{path}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

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
        # The server stops its runtimes (keep_runtimes_on_shutdown=False); if it could not,
        # their records name their process groups.
        for record in self.data_dir.glob("conversations/*/runtime.json"):
            _kill_runtime(record)


def _kill_runtime(record: Path) -> None:
    try:
        data = json.loads(record.read_text())
        pgid = int(data.get("pgid") or data.get("pid") or 0)
    except (OSError, ValueError):
        return
    if pgid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _pump(stream: IO[bytes], log_path: Path, found: list[str], ready: threading.Event) -> None:
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


def isolated_jupyter_env(base: Path) -> dict[str, str]:
    """Environment variables that point Jupyter's user-level dirs into ``base``."""
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "jupyter-config",
        "JUPYTER_DATA_DIR": base / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": base / "jupyter-runtime",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    return {name: str(path) for name, path in dirs.items()}


def start_lab(
    base: Path,
    *,
    llm_base_url: str | None,
    convo_enabled: bool = True,
    env: Mapping[str, str] | None = None,
) -> LabServer:
    """Start ``jupyter lab`` and wait for its URL; fail loudly if it dies or stays silent."""
    token = secrets.token_hex(16)
    root = base / "root"
    data_dir = base / "convo-data"
    settings_dir = base / "lab-user-settings"
    workspaces_dir = base / "lab-workspaces"
    for path in (root, data_dir, settings_dir, workspaces_dir):
        path.mkdir(parents=True, exist_ok=True)
    for name, values in USER_SETTINGS.items():
        target = settings_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    full_env = {
        **os.environ,
        **isolated_jupyter_env(base),
        "JUPYTER_CONVO_LLM_MODEL": "scripted-model",
        "JUPYTER_CONVO_LLM_API_KEY": TEST_API_KEY,
        **(env or {}),
    }
    if llm_base_url is not None:
        full_env["JUPYTER_CONVO_LLM_BASE_URL"] = llm_base_url
    for name in ("JUPYTER_CONVO_URL", "JUPYTER_CONVO_TOKEN"):
        full_env.pop(name, None)
    extensions = {"jupyterlab": True, "jupyter_convo": convo_enabled, "jupyter_lsp": False}
    args = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.jpserver_extensions={extensions!r}",
        f"--ConvoExtension.data_dir={data_dir}",
        "--ConvoExtension.keep_runtimes_on_shutdown=False",
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={workspaces_dir}",
        # Lets a test run JupyterLab commands (e.g. switch the theme) through window.jupyterapp.
        "--LabApp.expose_app_in_browser=True",
    ]
    log_path = base / "jupyter-lab.log"
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
    assert proc.stderr is not None
    threading.Thread(target=_pump, args=(proc.stderr, log_path, found, ready), daemon=True).start()
    server = LabServer(proc, "", token, root, data_dir, log_path)
    if not ready.wait(READY_TIMEOUT) or not found:
        server.stop()
        raise RuntimeError(
            f"jupyter lab not ready within {READY_TIMEOUT} s; log:\n{server.log_text()}"
        )
    server.url = found[0]
    return server


@contextlib.contextmanager
def running_lab(base: Path, **options: object) -> Iterator[LabServer]:
    server = start_lab(base, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
