"""The live notebook view (an anywidget) after real scripted runs: state, event batches,
buttons.

The widget is a real anywidget fed by the real event stream of a real server, runtime and
agent. Its front end (a browser) cannot run in this tier, so the widget's comm is
``FrontEnd``: it records the messages the kernel sends, as the browser would receive them.
The browser itself draws these messages in tests/ui/test_ui_quickstart.py, and Jest tests
the front-end module (labextension/src/__tests__/widget.spec.ts).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import comm
import pytest
from comm import DummyComm

from jupyter_convo.kernel.conversation import Conversation
from jupyter_convo.kernel.magics import ConvoMagics
from jupyter_convo.kernel.widgets import ConvoView
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


class FrontEnd(DummyComm):
    """The browser's side of a widget comm: keeps what the kernel sends it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if msg_type == "comm_msg" and data and data.get("method") == "custom":
            self.messages.append(data["content"])


@pytest.fixture(autouse=True)
def front_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(comm, "create_comm", FrontEnd)
    yield


def sent(view: ConvoView, kind: str | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = view.widget.comm.messages
    return [m for m in messages if kind is None or m["type"] == kind]


def appended_ids(view: ConvoView) -> list[int]:
    return [e["id"] for m in sent(view, "append") for e in m["events"]]


def start(shell: Any, line: str) -> tuple[Conversation, ConvoView]:
    result = shell.run_cell(f"conv = %convo {line}")
    assert result.success, result.error_in_exec
    conversation: Conversation = shell.user_ns["conv"]
    (view,) = conversation.views
    return conversation, view


def test_view_streams_the_run_with_its_plot(
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
    assert view.state["start_task"] is not None  # start progress shows at first

    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()

    # Every logged event reached the front end once, in order, in a few batches.
    ids = [e["id"] for e in conv.events]
    assert appended_ids(view) == ids == view.event_ids
    assert len(sent(view, "append")) < len(ids)
    outputs = [e for e in conv.events if e["kind"] == "python_output"]
    assert outputs and any("image/png" in b for b in outputs[0]["display_data"])
    state = view.state
    assert state["title"] == "Plotting" and state["agent_state"] == "awaiting_user_input"
    assert state["metrics"]["llm_calls"] == 3 and state["metrics"]["prompt_tokens"] > 0
    assert state["start_task"]["status"] == "READY" and state["awaiting"] is None
    # A view rendered now asks for its window and gets the last events.
    view.widget._handle_custom_msg({"type": "sync", "view": "v1"}, [])
    (window,) = sent(view, "window")
    assert window["view"] == "v1" and window["total"] == len(ids)
    assert [e["id"] for e in window["events"]] == ids[-view.max_rows :]
    # The saved form of the output: a transcript with the same plot, not a blank widget.
    bundle, _ = view._repr_mimebundle_()
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
    assert view.state["awaiting"] == {"id": first["id"], "kind": "command", "security_risk": "high"}

    view.click("confirm")
    assert sent(view, "done")[-1] == {
        "type": "done",
        "view": "kernel",
        "action": "confirm",
        "ok": True,
    }, view.widget.notice  # the failure's message, when the button failed
    assert view.notice == ""
    assert conv.wait(WAIT) == "awaiting_user_confirmation"
    second = conv.pending_action
    assert second is not None and second["command"] == "echo second-risky"
    outputs = [e["output"] for e in conv.events if e["kind"] == "command_output"]
    assert any("first-risky" in out for out in outputs)

    view.click("reject")
    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()
    assert view.state["awaiting"] is None
    assert conv.last_message == "Ran the first, skipped the second."
    answers = [(e["cause"], e["confirmed"]) for e in conv.events if e["kind"] == "confirmation"]
    assert answers == [(first["id"], True), (second["id"], False)]
    outputs = [e["output"] for e in conv.events if e["kind"] == "command_output"]
    assert not any("second-risky" in out for out in outputs)
    assert appended_ids(view) == [e["id"] for e in conv.events]

    # Nothing left to confirm: the button says so in the view instead of raising.
    view.click("confirm")
    assert "no action is waiting for confirmation" in view.notice
    assert sent(view, "done")[-1]["ok"] is False


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
    assert view.max_rows == view.widget.max_rows == 4

    ids = [e["id"] for e in conv.events]
    total = len(ids)
    assert total > 8
    window = view.window()
    assert [e["id"] for e in window["events"]] == ids[-4:] and window["total"] == total
    earlier = view.window(before_id=ids[-4], count=4)
    assert [e["id"] for e in earlier["events"]] == ids[-8:-4]

    # A view made after the history: it arrives as one batch, more than the view keeps,
    # so the front end gets only the last rows and starts over from them.
    late = ConvoView(conv, max_rows=3)
    conv.sync_views()
    (batch,) = sent(late, "append")
    assert batch["gap"] is True and batch["total"] == total
    assert [e["id"] for e in batch["events"]] == ids[-3:]
    late.close()

    view.click("send")  # empty box: a notice, no request
    assert "type a message first" in view.notice
    view.click("send", "one more question")
    assert view.notice == "" and sent(view, "done")[-1]["ok"] is True
    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()
    assert conv.last_message == "answered from the box"
    (question,) = [e for e in conv.events if e.get("text") == "one more question"]
    assert question["id"] in view.event_ids
    assert question in view.window(count=10)["events"]

    view.click("stop")
    assert conv.wait(WAIT) in ("stopped", "awaiting_user_input")
    conv.sync_views()
    assert conv.status == "STOPPED"
    assert view.state["status"] == "STOPPED"  # the front end disables Stop


def test_a_send_cell_view_takes_over_from_the_earlier_view(
    shell: Any, magics: ConvoMagics, kernel_llm: ScriptedLLM, task_text: str
) -> None:
    """`%convo send` shows the new turn in its own cell; the start cell's view stops where
    that one begins, so the notebook shows every event once (it showed the turn twice)."""
    kernel_llm.add_script(
        [
            reply("First answer."),
            tool_call(
                "file_editor",
                {"command": "create", "path": "notes.md", "file_text": "noted\n"},
            ),
            reply("Notes written."),
        ],
        match=task_text,
    )
    conv, first = start(shell, f'start "{task_text}"')
    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()
    before = [e["id"] for e in conv.events]
    assert first.event_ids == before

    result = shell.run_cell('%convo send "Now write the notes"')
    assert result.success, result.error_in_exec
    assert len(conv.views) == 2
    second = conv.views[1]
    assert conv.wait(WAIT) == "awaiting_user_input"
    conv.sync_views()
    assert conv.last_message == "Notes written."

    everything = [e["id"] for e in conv.events]
    assert first.event_ids == before
    assert second.event_ids == everything[len(before) :]
    assert first.notice == "The conversation continues in a later cell's view."
    first.click("confirm")  # its buttons still work and say what went wrong
    assert "no action is waiting" in first.notice
    assert "Notes written." not in first.transcript().text()
    assert "Notes written." in second.transcript().text()
