"""Point Node Playwright at Debian's Chromium, so ``jupyterlab.browser_check`` needs no download.

``python -m jupyterlab.browser_check`` installs the npm ``playwright`` package in JupyterLab's
app dir, runs ``npx playwright install chromium`` (a browser download, which this closed
network refuses) and launches Playwright's own Chromium. Playwright looks for its browsers
under ``PLAYWRIGHT_BROWSERS_PATH``: a folder laid out like its registry, whose browser
executables are links to ``/usr/bin/chromium`` and which is marked installed, makes the
install a no-op and the launch use Debian's Chromium.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

CHROMIUM = os.environ.get("CONVO_CHROMIUM", "/usr/bin/chromium")
# Quiet on a closed network (no background fetches, no QUIC, no component updates).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The npm playwright browser_check installs when its folder is empty (the version this
# layout was made for; browser_check itself would take the newest 1.x).
PLAYWRIGHT_NPM = "playwright@1.65.1"
# Executables inside each registry folder (Playwright's "Chrome for Testing" layout).
_EXECUTABLES = {
    "x86_64": {
        "chromium": "chrome-linux64/chrome",
        "chromium-headless-shell": "chrome-headless-shell-linux64/chrome-headless-shell",
        "ffmpeg": "ffmpeg-linux",
    },
    "aarch64": {
        "chromium": "chrome-linux-arm64/chrome",
        "chromium-headless-shell": "chrome-headless-shell-linux-arm64/chrome-headless-shell",
        "ffmpeg": "ffmpeg-linux",
    },
}
_LOCATION = re.compile(r"^(.*) \(playwright ([\w-]+) v\d+\)\s*\n\s*Install location:\s*(\S+)", re.M)


def require_browser() -> None:
    """Fail (not skip) with the fix when the browser tools are missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash scripts/install-ui-deps.sh`")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the playwright package is missing: run `bash scripts/install-ui-deps.sh`")


def ensure_browser_test_package(app_dir: Path, timeout: float = 300) -> Path:
    """JupyterLab's ``browser_test`` folder with the npm playwright package installed."""
    target = app_dir / "browser_test"
    if not (target / "node_modules" / "playwright").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=target, check=True, capture_output=True)
        subprocess.run(
            ["npm", "install", PLAYWRIGHT_NPM],
            cwd=target,
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    return target


def install_locations(browser_test: Path, registry: Path) -> dict[str, Path]:
    """Where Playwright expects each browser of ``install chromium`` (from its dry run)."""
    result = subprocess.run(
        ["npx", "playwright", "install", "--dry-run", "chromium"],
        cwd=browser_test,
        env={**os.environ, "PLAYWRIGHT_BROWSERS_PATH": str(registry)},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {name: Path(path) for _, name, path in _LOCATION.findall(result.stdout)}
    if not found:
        raise RuntimeError(f"unexpected `playwright install --dry-run` output:\n{result.stdout}")
    return found


def make_registry(browser_test: Path, registry: Path, chromium: str) -> Path:
    """A Playwright browsers folder whose Chromium is ``chromium``; answers ``registry``."""
    executables = _EXECUTABLES.get(platform.machine())
    if executables is None:
        raise RuntimeError(f"no Playwright layout known for {platform.machine()}")
    for name, folder in install_locations(browser_test, registry).items():
        relative = executables.get(name)
        if relative is None:
            raise RuntimeError(f"no Playwright layout known for browser {name!r}")
        executable = folder / relative
        executable.parent.mkdir(parents=True, exist_ok=True)
        if not executable.exists():
            executable.symlink_to(chromium if name != "ffmpeg" else "/bin/true")
        for marker in ("INSTALLATION_COMPLETE", "DEPENDENCIES_VALIDATED"):
            (folder / marker).touch()
    return registry
