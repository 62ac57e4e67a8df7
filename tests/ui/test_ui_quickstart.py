"""The quickstart notebook run in a real JupyterLab: the live view shows the agent's events.

JupyterLab opens ``notebooks/quickstart.ipynb`` (the folder copied into its root) and
runs every cell; the live view (an anywidget whose front end is the side panel's renderer,
jupyter_convo/kernel/static/widget.js) renders the conversation as it streams. The
kernel finds the server by itself (its runtime dir); the agent's answers come from the
notebook's script (``notebooks/demo_llm/quickstart.json``). A screenshot is written
to ``test-output/ui/quickstart.png``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from lab_process import LabServer
from playwright.sync_api import expect

from jupyter_convo.testing import ScriptedLLM, load_script_file

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 120_000  # ms: kernel start, runtime start and two agent turns
# Every code cell has run (a queued or running cell has no execution count) and the kernel
# is idle.
ALL_CELLS_RAN = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type === "code" && cell.executionCount === null) return false;
  }
  return panel.sessionContext.session.kernel.status === "idle";
}"""


def test_quickstart_shows_the_live_view(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, output_dir: Path
) -> None:
    ui_llm.load(load_script_file(REPO / "notebooks" / "demo_llm" / "quickstart.json"))
    shutil.copytree(REPO / "notebooks", lab.root, dirs_exist_ok=True)  # with its runs/

    page.goto(lab.lab_url("lab/tree/quickstart.ipynb"))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=60_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # The first view (the start cell): header, then the agent's rows as they arrive.
    views = notebook.locator(".jp-OutputArea-output .convo-view .jp-convo-widget")
    expect(views.first).to_be_visible(timeout=RUN_TIMEOUT)
    first = views.first
    expect(first).to_contain_text("Quickstart: Fibonacci", timeout=RUN_TIMEOUT)
    command_rows = first.locator("[data-event-id]").filter(has_text="python hello.py")
    expect(command_rows.first).to_be_visible(timeout=RUN_TIMEOUT)
    expect(first.locator(".jp-convo-diff-add").first).to_be_visible()  # the file edit's diff
    expect(first.locator(".jp-convo-badge")).to_be_visible()
    expect(first.locator(".jp-convo-markdown").first).to_be_visible()  # agent text: Markdown
    expect(first).to_contain_text("0 1 1 2 3 5 8 13 21 34")
    expect(first.locator("button", has_text="Send")).to_be_visible()
    expect(first.locator("button", has_text="Stop")).to_be_visible()

    # The send cell's view continues the conversation; %convo stop ends the run.
    expect(views).to_have_count(2, timeout=RUN_TIMEOUT)
    expect(views.nth(1)).to_contain_text("ending with 233 and 377", timeout=RUN_TIMEOUT)
    expect(notebook).to_contain_text("Stopped conversation", timeout=RUN_TIMEOUT)
    page.wait_for_function(
        "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=RUN_TIMEOUT,
    )
    expect(notebook.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
    assert first.locator("[data-event-id]").count() >= 6

    first.scroll_into_view_if_needed()
    page.screenshot(path=str(output_dir / "quickstart.png"), full_page=True)
    assert (output_dir / "quickstart.png").stat().st_size > 10_000
