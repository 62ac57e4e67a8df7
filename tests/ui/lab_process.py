"""A real ``jupyter lab`` in a subprocess for the browser tests.

Everything it writes stays under one temporary folder (Jupyter config, data and runtime
dirs, JupyterLab workspaces and user settings, the conversations' data), so a test run
never touches the user's own Jupyter state. Starting, waiting until it accepts connections
and stopping are ``jupyter_convo.testing.jupyter_server``'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_convo.testing import TEST_API_KEY
from jupyter_convo.testing.jupyter_server import kill_runtimes, start_server, stop_process

READY_TIMEOUT = 90.0
EXIT_TIMEOUT = 20.0
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
        stop_process(self.proc, EXIT_TIMEOUT)
        # The server stops its runtimes (keep_runtimes_on_shutdown=False); if it could not,
        # their records name their process groups.
        kill_runtimes(self.data_dir)


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
    """Start ``jupyter lab`` and wait until it accepts connections; fail loudly if it dies
    or stays silent."""
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
        "--allow-root",
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
    started = start_server(
        args, env=full_env, cwd=root, log_path=log_path, app="lab", ready_timeout=READY_TIMEOUT
    )
    return LabServer(started.proc, started.url, token, root, data_dir, log_path)


@contextlib.contextmanager
def running_lab(base: Path, **options: object) -> Iterator[LabServer]:
    server = start_lab(base, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
