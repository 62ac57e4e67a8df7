"""``%convo start --kernel``: the agent's Python runs in the notebook's own kernel.

A real notebook kernel (nbclient) runs the cells; the agent (real runtime, scripted LLM)
connects to that kernel through its connection file, reads a DataFrame the notebook made
and leaves a variable the next cell uses. Between cells the test waits, from outside the
kernel, for the agent to settle: the way a user watches the live view before going on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_process import JupyterServer
from nbclient import NotebookClient

from jupyter_convo.kernel.conversation import Conversation
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

WAIT = 90.0

AGENT_CODE = """\
monthly_total = float(sales["revenue"].sum())
print("total", monthly_total, "over", len(sales), "months")
"""


def text_of(cell: Any) -> str:
    """What a cell printed, and its error if it raised (not the displayed views)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}")
    return "".join(parts)


def test_agent_works_in_the_notebook_kernel(
    convo_server: JupyterServer,
    kernel_llm: ScriptedLLM,
    task_text: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel_llm.add_script(
        [
            tool_call("python", {"code": AGENT_CODE, "security_risk": "high"}),
            reply("I stored the total in `monthly_total`."),
        ],
        match=task_text,
    )
    for name, value in convo_server.env().items():
        monkeypatch.setenv(name, value)  # the kernel finds the server like a user's would
    cells = [
        "%load_ext jupyter_convo",
        "import pandas as pd\n"
        "sales = pd.DataFrame({'month': ['2024-01', '2024-02', '2024-03'],\n"
        "                      'revenue': [100.0, 250.5, 49.5]})",
        f'conv = %convo start "{task_text}" --kernel\nprint(conv.id)',
        'assert conv.wait(60) == "awaiting_user_confirmation"\nconv.confirm()\nconv.wait(60)',
        "print('next cell sees', monthly_total)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    watcher = convo_server.client()
    with client.setup_kernel():
        for index in range(3):
            client.execute_cell(notebook.cells[index], index)
        conversation_id = text_of(notebook.cells[2]).strip().splitlines()[-1]
        outside = Conversation.attach(watcher, conversation_id)
        # Confirmation mode is on by default with --kernel: the agent asks first.
        assert outside.wait(WAIT) == "awaiting_user_confirmation"
        assert outside.pending_action is not None
        assert outside.pending_action["code"] == AGENT_CODE

        # Waiting for a confirmation in the kernel is fine (the agent needs nothing from it);
        # confirming and then blocking the kernel with wait() would stall the agent, whose
        # code needs this kernel: wait() says so at once instead of hanging.
        client.execute_cell(notebook.cells[3], 3)
        assert "KernelBusyError" in text_of(notebook.cells[3])
        assert "end the cell" in text_of(notebook.cells[3])

        # With the cell over, the kernel runs the agent's queued code.
        assert outside.wait(WAIT) == "awaiting_user_input"
        output = next(e for e in outside.events if e["kind"] == "python_output")
        assert "total 400.0 over 3 months" in output["stdout"]
        assert outside.last_message == "I stored the total in `monthly_total`."

        client.execute_cell(notebook.cells[4], 4)
        assert text_of(notebook.cells[4]).strip() == "next cell sees 400.0"
    outside.close()
    watcher.close()
