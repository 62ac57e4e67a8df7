"""The live view's widget state after real scripted runs: rows, plot, confirm bar, buttons.

Widgets are real ipywidgets objects (without a front-end their comms are inert); the view
is fed by the real event stream of a real server, runtime and agent.
"""

from __future__ import annotations

from typing import Any

from jupyter_convo.kernel.conversation import Conversation
from jupyter_convo.kernel.magics import ConvoMagics
from jupyter_convo.kernel.render import has_row
from jupyter_convo.kernel.widgets import HIDDEN, ConvoView
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

WAIT = 90.0

PLOT_CODE = """\
import matplotlib
import matplotlib.pyplot as plt
plt.plot([1, 3, 2])
plt.title("revenue")
plt.show()
print("plotted")
"""


def start(shell: Any, line: str) -> tuple[Conversation, ConvoView]:
    result = shell.run_cell(f"conv = %convo {line}")
    assert result.success, result.error_in_exec
    conversation: Conversation = shell.user_ns["conv"]
    (view,) = conversation.views
    return conversation, view


def rows_expected(conversation: Conversation) -> list[int]:
    return [e["id"] for e in conversation.events if has_row(e)]


def test_view_renders_the_run_with_its_plot(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    kernel_llm.add_script(
        [
            tool_call("python", {"code": PLOT_CODE, "security_risk": "low"}),
            tool_call("think", {"thought": "The plot shows the *dip* in March."}),
            reply("Here is **the plot**."),
        ],
        match=task_text,
    )
    conv, view = start(shell, f'start "{task_text}" --title "Plotting"')
    assert view.progress_box.layout.display is None  # start progress shows at first

    assert conv.wait(WAIT) == "awaiting_user_input"

    assert view.row_ids == rows_expected(conv)
    assert view.row_count == len(view.row_ids) >= 6
    html = view.html()
    assert '<img alt="plot" src="data:image/png;base64,' in html
    assert "plotted" in html
    assert "<strong>the plot</strong>" in html  # agent messages are Markdown
    assert "<details><summary>Thought</summary>" in html  # thoughts folded
    assert "Plotting" in view.header.value and "awaiting user input" in view.header.value
    assert "2 LLM calls" not in view.header.value and "3 LLM calls" in view.header.value
    assert view.progress_box.layout.display == HIDDEN  # READY: progress gone
    assert view.confirm_box.layout.display == HIDDEN
    # The saved form of the output: a transcript with the same plot, not a blank widget.
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "data:image/png;base64," in bundle["text/html"]
    assert "Here is **the plot**." in bundle["text/plain"]


def test_confirm_and_reject_buttons_steer_the_agent(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    kernel_llm.add_script(
        [
            tool_call("terminal", {"command": "echo first-risky", "security_risk": "high"}),
            tool_call("terminal", {"command": "echo second-risky", "security_risk": "high"}),
            reply("Ran the first, skipped the second."),
        ],
        match=task_text,
    )
    conv, view = start(shell, f'start "{task_text}" --confirm')

    assert conv.wait(WAIT) == "awaiting_user_confirmation"
    first = conv.pending_action
    assert first is not None and first["command"] == "echo first-risky"
    assert view.confirm_box.layout.display is None
    assert f"Action {first['id']}" in view.confirm_label.value
    assert "Waiting for your confirmation" in view.html()

    view.click("confirm")
    assert view.notice.value == ""
    assert conv.wait(WAIT) == "awaiting_user_confirmation"
    second = conv.pending_action
    assert second is not None and second["command"] == "echo second-risky"
    outputs = [e["output"] for e in conv.events if e["kind"] == "command_output"]
    assert any("first-risky" in out for out in outputs)

    view.click("reject")
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert view.confirm_box.layout.display == HIDDEN
    assert conv.last_message == "Ran the first, skipped the second."
    answers = [(e["cause"], e["confirmed"]) for e in conv.events if e["kind"] == "confirmation"]
    assert answers == [(first["id"], True), (second["id"], False)]
    outputs = [e["output"] for e in conv.events if e["kind"] == "command_output"]
    assert not any("second-risky" in out for out in outputs)
    assert view.row_ids == rows_expected(conv)
    assert f"Rejected action {second['id']}" in view.html()

    # Nothing left to confirm: the button says so in the view instead of raising.
    view.click("confirm")
    assert "no action is waiting for confirmation" in view.notice.value


def test_send_box_stop_button_and_folded_history(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    kernel_llm.add_script(
        [
            tool_call("terminal", {"command": f"echo step-{i}", "security_risk": "low"})
            for i in range(4)
        ]
        + [reply("four steps done"), reply("answered from the box")],
        match=task_text,
    )
    shell.run_line_magic("config", "ConvoMagics.max_rows = 4")
    conv, view = start(shell, f'start "{task_text}"')
    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()

    total = view.row_count
    assert total > 8
    assert view.chunk_rows == 50 and view.visible_row_count == total  # one chunk: all shown

    small = conv.view(max_rows=3)  # a second view with small chunks to see the folding
    small_chunks = ConvoView(conv, max_rows=3, chunk_rows=3)
    conv.sync_views()
    assert small.row_count == small_chunks.row_count == total
    assert small_chunks.visible_row_count < total
    assert small_chunks.earlier_button.layout.display is None
    assert "folded" in small_chunks.earlier_button.description
    first_row = f'data-event-id="{small_chunks.row_ids[0]}"'
    assert first_row not in small_chunks.html()  # folded rows are not even rendered yet
    small_chunks.click("earlier")
    assert small_chunks.visible_row_count > 3
    while small_chunks.earlier_button.layout.display != HIDDEN:
        small_chunks.click("earlier")
    assert small_chunks.visible_row_count == total
    assert small_chunks.html().count("data-event-id=") == total
    assert first_row in small_chunks.html()

    view.click("send")  # empty box: a notice, no request
    assert "type a message first" in view.notice.value
    view.input.value = "one more question"
    view.click("send")
    assert view.input.value == "" and view.notice.value == ""
    assert conv.wait(WAIT) == "awaiting_user_input"
    assert conv.last_message == "answered from the box"
    assert "one more question" in view.html()

    view.click("stop")
    assert conv.wait(WAIT) in ("stopped", "awaiting_user_input")
    conv.sync_views()
    assert conv.status == "STOPPED"
    assert view.stop_button.disabled
