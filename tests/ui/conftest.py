"""Browser tests: Playwright driving Debian's Chromium against a real ``jupyter lab``.

One scripted LLM (in this process, so tests can hold an answer behind a gate and release
it when they are ready to watch it arrive) and one JupyterLab serve each test module; each
test gets a fresh browser page and scripts matched by a task text of its own.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (``bash
scripts/install-ui-deps.sh``) and the built labextension (``pip install -e .``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from debian_chromium import CHROMIUM, CHROMIUM_FLAGS, require_browser
from lab_process import LabServer, start_lab

from jupyter_convo.testing import ScriptedLLM

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO / "test-output" / "ui"
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="module")
def ui_llm() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()
    with llm.serve():
        yield llm


@pytest.fixture(scope="module")
def lab(ui_llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    server = start_lab(tmp_path_factory.mktemp("lab"), llm_base_url=ui_llm.base_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item (the page fixture screenshots failures)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


# Where the focus goes, in the console log a failed test leaves (focus races show there).
FOCUS_LOGGER = """document.addEventListener('focusin', event => {
  const node = event.target;
  const owner = node.closest('[id]')?.id ?? '';
  console.log(`focus: ${node.tagName}.${String(node.className).slice(0, 60)} in #${owner}`);
}, true);"""

# The Launcher has the focus, the file browser finished restoring (JupyterLab opens a
# Launcher once more after that if the main area is empty), and the focus stayed there for
# three animation frames: activation requests are Lumino messages, run one frame after
# they are posted, and the Launcher's MainAreaWidget focuses its content when one runs.
LAUNCHER_FOCUS_SETTLED = """() => {
  const node = document.activeElement;
  if (!node?.closest('.jp-Launcher') || document.querySelector('.jp-mod-restoring')) {
    window.__convoFocus = null;
    return false;
  }
  const seen = window.__convoFocus;
  if (!seen || seen.node !== node) {
    window.__convoFocus = { node, frames: 0 };
    return false;
  }
  return ++seen.frames >= 3;
}"""


def open_lab(
    browser: Any, server: LabServer, console: list[str] | None = None
) -> tuple[Any, Any, list[str]]:
    """A fresh context and page on JupyterLab (a workspace of its own, so no layout from
    another test is restored), once its shell is up and its Launcher focused. Uncaught
    page errors are collected in the list answered; console lines in ``console``."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.add_init_script(FOCUS_LOGGER)
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if console is not None:
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(server.lab_url(f"lab/workspaces/test-{uuid.uuid4().hex[:12]}"))
    page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=60_000)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=60_000)
    # The workspace is new, so its main area is empty: once the layout and the file
    # browser are restored (after the splash), JupyterLab opens a Launcher and focuses it.
    # A test acting before that loses focus to it (the command palette closes on blur).
    page.wait_for_function(LAUNCHER_FOCUS_SETTLED, polling="raf", timeout=60_000)
    return context, page, errors


def real_errors(errors: list[str], console: list[str]) -> list[str]:
    """Page errors, less fetches Chromium aborted because the machine's network changed
    (interfaces come and go on a shared host; the page recovers by itself)."""
    if any("ERR_NETWORK_CHANGED" in line for line in console):
        return [error for error in errors if error != "Failed to fetch"]
    return errors


@pytest.fixture
def page(browser: Any, lab: LabServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    console: list[str] = []
    context, page, errors = open_lab(browser, lab, console)
    try:
        yield page
        assert not real_errors(errors, console), f"uncaught errors in the page: {errors}"
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            failures = OUTPUT_DIR / "failures"
            failures.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(failures / f"{request.node.name}.png"))
            (failures / f"{request.node.name}.server.log").write_text(lab.log_text())
            (failures / f"{request.node.name}.console.log").write_text("\n".join(console))
        context.close()
