"""The labextension as users get it: listed as installed and enabled, and JupyterLab's own
browser check (the app loads in a browser with no errors) passes with it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from debian_chromium import (
    CHROMIUM,
    ensure_browser_test_package,
    make_registry,
    require_browser,
)
from lab_process import isolated_jupyter_env

pytestmark = pytest.mark.timeout(300)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    result = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{output[-5000:]}"
    return output


def test_labextension_list_shows_it_enabled(tmp_path: Path) -> None:
    env = {**os.environ, **isolated_jupyter_env(tmp_path)}
    output = run([sys.executable, "-m", "jupyter", "labextension", "list"], env, tmp_path, 120)
    assert re.search(r"jupyter-convo v\S+ enabled OK \(python, jupyter_convo\)", output), (
        f"jupyter-convo is not listed as enabled OK (python, jupyter_convo):\n{output}"
    )


def test_jupyterlab_browser_check_passes(tmp_path: Path) -> None:
    require_browser()
    from jupyterlab.commands import get_app_dir

    browser_test = ensure_browser_test_package(Path(get_app_dir()))
    registry = make_registry(browser_test, tmp_path / "playwright-browsers", CHROMIUM)
    env = {
        **os.environ,
        **isolated_jupyter_env(tmp_path),
        "PLAYWRIGHT_BROWSERS_PATH": str(registry),
    }
    output = run(
        [sys.executable, "-m", "jupyterlab.browser_check", "--allow-root"], env, tmp_path, 240
    )
    assert "Browser test complete" in output, output[-5000:]
    assert "Exiting normally" in output, output[-5000:]
