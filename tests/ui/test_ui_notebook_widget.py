"""The notebook live view in a real JupyterLab: rows stream in while the cell still runs.

One cell starts a conversation and blocks in ``conv.wait()``. The agent's rows must appear
as they happen, while the cell still runs (they come on IOPub; a request the widget sends
the kernel may wait for the cell to end), drawn by the panel's renderer (the anywidget
front end). The agent's last answer is held behind a gate until
the test has seen the first rows in the still-running cell. Screenshots go to
``test-output/ui/notebook-widget-*.png``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_process import LabServer
from playwright.sync_api import expect

from jupyter_convo.testing import ScriptedLLM, reply, tool_call

pytestmark = pytest.mark.timeout(300)

RUN_TIMEOUT = 120_000  # ms: kernel start, runtime start, two agent steps
KERNEL_IDLE = (
    "window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"
)


def test_rows_stream_while_the_cell_waits(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, output_dir: Path
) -> None:
    task = f"Count the csv files {uuid.uuid4().hex[:8]}"
    gate = f"answer-{task}"
    ui_llm.add_script(
        [
            tool_call(
                "terminal",
                {"command": "echo streamed-while-busy", "security_risk": "low"},
                content="Counting **now**.",
            ),
            reply("There are no csv files here.", gate=gate),
        ],
        match=task,
    )
    notebook_path = lab.root / "widget_stream.ipynb"
    cell = f'%load_ext jupyter_convo\nconv = %convo start "{task}"\nprint(conv.wait())'
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook_file = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(cell)], metadata={"kernelspec": kernelspec}
    )
    nbformat.write(notebook_file, notebook_path)

    page.goto(lab.lab_url("lab/tree/widget_stream.ipynb"))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    # Not awaited: the command's promise ends with the cell, which waits for the gate.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    view = notebook.locator(".jp-OutputArea-output .jp-convo-widget")
    expect(view).to_be_visible(timeout=RUN_TIMEOUT)
    command = view.locator('.jp-convo-row[data-kind="command_output"]')
    expect(command).to_contain_text("streamed-while-busy", timeout=RUN_TIMEOUT)
    expect(view.locator('.jp-convo-row[data-kind="command"]')).to_contain_text(
        "echo streamed-while-busy"
    )
    # The cell is still in conv.wait(): the answer is held, nothing printed yet.
    expect(notebook.locator(".jp-InputPrompt").first).to_contain_text("[*]")
    expect(notebook.locator(".jp-OutputArea-output")).not_to_contain_text(["awaiting_user_input"])
    expect(view.locator(".jp-convo-badge")).to_have_text("running")
    page.screenshot(path=str(output_dir / "notebook-widget-busy.png"), full_page=True)

    ui_llm.open_gate(gate)
    answer = view.locator('.jp-convo-row[data-kind="message"]').filter(
        has_text="There are no csv files here."
    )
    expect(answer).to_be_visible(timeout=RUN_TIMEOUT)
    expect(view.locator(".jp-convo-badge")).to_have_text("awaiting user input")
    page.wait_for_function(KERNEL_IDLE, timeout=RUN_TIMEOUT)
    expect(notebook.locator(".jp-OutputArea-output").last).to_contain_text("awaiting_user_input")
    # Each event once: the window answered after the cell merged with what had streamed.
    ids = view.locator(".jp-convo-row").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert len(ids) == len(set(ids)) and len(ids) >= 4
    assert view.locator(".jp-convo-row strong").first.text_content() == "now"
    page.screenshot(path=str(output_dir / "notebook-widget-done.png"), full_page=True)
