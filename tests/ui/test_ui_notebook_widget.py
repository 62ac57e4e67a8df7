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
from page_checks import (
    AT_END,
    IMAGE_LOADED,
    ONE_LINE_CELLS,
    SCROLLS_SIDEWAYS,
    WIDE_TABLE_CODE,
    tall_image_code,
)
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


def _run_new_cell(page: Any, source: str) -> None:
    """Add a code cell at the end of the current notebook and run it (not awaited)."""
    page.evaluate(
        """source => {
          const panel = window.jupyterapp.shell.currentWidget;
          const cells = panel.content.model.sharedModel;
          cells.insertCell(cells.cells.length, { cell_type: 'code', source });
          panel.content.activeCellIndex = cells.cells.length - 1;
          window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        source,
    )


def test_widget_confirms_follows_and_never_repeats_a_row(
    page: Any, lab: LabServer, ui_llm: ScriptedLLM, output_dir: Path
) -> None:
    """Confirm from the widget (the row stops waiting), a wide table scrolls sideways, the
    view follows a tall image to the end, and a `%convo send` cell's view continues the
    conversation without the first view repeating its rows."""
    task = f"Plot the wide sales table {uuid.uuid4().hex[:8]}"
    ui_llm.add_script(
        [
            tool_call(
                "terminal",
                {"command": "echo confirmed-in-widget", "security_risk": "high"},
                content="Checking first.",
            ),
            tool_call("python", {"code": WIDE_TABLE_CODE, "security_risk": "low"}),
            tool_call("python", {"code": tall_image_code(1400), "security_risk": "low"}),
            reply("The table and the plot are above."),
            tool_call(
                "file_editor",
                {
                    "command": "create",
                    "path": "widget-notes.md",
                    "file_text": "noted\n",
                    "security_risk": "low",
                },
            ),
            reply("Notes written."),
        ],
        match=task,
    )
    notebook_path = lab.root / "widget_confirm.ipynb"
    cell = f'%load_ext jupyter_convo\nconv = %convo start --confirm "{task}"'
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(cell)], metadata={"kernelspec": kernelspec}
        ),
        notebook_path,
    )
    # A workspace of its own: the default one would restore another test's notebook.
    page.goto(lab.lab_url(f"lab/workspaces/w-{uuid.uuid4().hex[:8]}/tree/widget_confirm.ipynb"))
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    expect(notebook.locator(".jp-Cell").first).to_be_visible(timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    views = notebook.locator(".jp-OutputArea-output .jp-convo-widget")
    first = views.first
    bar = first.locator(".jp-convo-confirm")
    expect(bar).to_be_visible(timeout=RUN_TIMEOUT)
    command = first.locator('.jp-convo-row[data-kind="command"]')
    expect(command).to_contain_text("Waiting for your confirmation")
    bar.locator("button.jp-convo-confirm-button").click()
    expect(first.locator('.jp-convo-row[data-kind="command_output"]')).to_contain_text(
        "confirmed-in-widget", timeout=RUN_TIMEOUT
    )
    expect(bar).to_be_hidden(timeout=RUN_TIMEOUT)
    expect(command).not_to_contain_text("Waiting for your confirmation")
    expect(command).to_contain_text("confirmed")

    # The wide table keeps its cells on one line and scrolls sideways.
    table = first.locator('.jp-convo-row[data-kind="python_output"] table').first
    expect(table).to_be_visible(timeout=RUN_TIMEOUT)
    assert table.evaluate(ONE_LINE_CELLS)
    assert table.evaluate(SCROLLS_SIDEWAYS)

    # The tall image arrives before the last answer: the view still ends at the bottom.
    answer = first.locator('.jp-convo-row[data-kind="message"]').filter(
        has_text="The table and the plot are above."
    )
    expect(answer).to_be_visible(timeout=RUN_TIMEOUT)
    image = first.locator('.jp-convo-row[data-kind="python_output"] img').last
    page.wait_for_function(IMAGE_LOADED, arg=image.element_handle())
    scroll = first.locator(".jp-convo-scroll")
    page.wait_for_function(AT_END, arg=scroll.element_handle())
    page.screenshot(path=str(output_dir / "notebook-widget-confirmed.png"), full_page=True)

    # A second cell sends the next message: its view shows the new turn; the first view
    # stops where the second begins, so no row shows twice in the notebook.
    page.wait_for_function(KERNEL_IDLE, timeout=RUN_TIMEOUT)
    _run_new_cell(page, '%convo send "Now write the notes"')
    expect(views).to_have_count(2, timeout=RUN_TIMEOUT)
    second = views.nth(1)
    expect(second.locator('.jp-convo-row[data-kind="message"]').last).to_contain_text(
        "Notes written.", timeout=RUN_TIMEOUT
    )
    expect(second.locator('.jp-convo-row[data-kind="file_edit"]')).to_have_count(1)
    expect(second.locator(".jp-convo-row").filter(has_text="You")).to_have_count(1)
    expect(first.locator(".jp-convo-row").filter(has_text="Notes written.")).to_have_count(0)
    expect(first.locator(".jp-convo-notice")).to_contain_text("continues in a later cell")
    ids = notebook.locator(".jp-convo-widget .jp-convo-row").evaluate_all(
        "rows => rows.map(r => r.dataset.eventId)"
    )
    assert len(ids) == len(set(ids)), ids
    page.screenshot(path=str(output_dir / "notebook-widget-send.png"), full_page=True)
