"""HTML rendering of events for the live view and the saved transcript."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_convo.events.schema import (
    EVENT_KINDS,
    AgentState,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    ErrorEvent,
    EventBase,
    FileContentEvent,
    FileEditEvent,
    FileEditResultEvent,
    FileReadEvent,
    FinishEvent,
    LLMCallEvent,
    MessageEvent,
    PythonError,
    PythonEvent,
    PythonOutputEvent,
    ReplayStepEvent,
    ReplaySummaryEvent,
    SandboxEvent,
    StatusEvent,
    ThinkEvent,
    TitleEvent,
    event_to_dict,
)
from jupyter_convo.kernel.render import (
    FOLD_LINES,
    Transcript,
    event_html,
    has_row,
    markdown_html,
    mime_html,
    transcript_html,
)

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def wire(event: EventBase, event_id: int = 1) -> dict[str, Any]:
    return event_to_dict(event.model_copy(update={"id": event_id}))


ONE_OF_EACH: list[EventBase] = [
    MessageEvent(source="user", text="hi"),
    ThinkEvent(thought="hmm"),
    FinishEvent(message="done"),
    CommandEvent(command="ls"),
    CommandOutputEvent(output="a\nb", exit_code=0),
    PythonEvent(code="1 + 1"),
    PythonOutputEvent(result={"text/plain": "2"}),
    FileReadEvent(path="a.txt"),
    FileContentEvent(path="a.txt", content="x"),
    FileEditEvent(command="create", path="a.txt", file_text="x"),
    FileEditResultEvent(path="a.txt", diff="+x"),
    ConfirmationEvent(confirmed=True, cause=3),
    AgentStateEvent(state=AgentState.FINISHED),
    StatusEvent(status="READY"),
    SandboxEvent(mechanism="none", confined=False, message="NOT CONFINED: no bwrap"),
    ErrorEvent(code="AGENT_ERROR$X", message="bad"),
    TitleEvent(title="T"),
    LLMCallEvent(model="m", prompt_tokens=3),
    ReplayStepEvent(step=1, recorded_event_id=4, verdict="diverged", diff="-a\n+b"),
    ReplaySummaryEvent(mode="actions", steps=2, reproduced=1, diverged=1, diverged_steps=[2]),
]


def test_every_event_kind_renders() -> None:
    assert sorted(e.kind for e in ONE_OF_EACH) == sorted(EVENT_KINDS)
    for event in ONE_OF_EACH:
        html = event_html(wire(event))
        if event.kind in ("title", "llm_call"):
            assert html == "" and not has_row(wire(event))
        else:
            assert 'data-event-id="1"' in html, event.kind


def test_routine_agent_states_only_move_the_badge() -> None:
    assert event_html(wire(AgentStateEvent(state=AgentState.RUNNING))) == ""
    assert "Agent error (boom)" in event_html(
        wire(AgentStateEvent(state=AgentState.ERROR, reason="boom"))
    )


def test_agent_text_is_markdown_with_raw_html_escaped() -> None:
    html = event_html(wire(MessageEvent(source="agent", text="**bold** <script>x()</script>")))
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<table>" in markdown_html("| a | b |\n|---|---|\n| 1 | 2 |")


def test_long_command_output_is_folded_and_short_is_open() -> None:
    short = event_html(wire(CommandOutputEvent(output="one\ntwo", exit_code=0)))
    long = event_html(wire(CommandOutputEvent(output="\n".join(["x"] * (FOLD_LINES + 5)))))
    assert "<details open>" in short
    assert "<details>" in long and "<details open>" not in long
    failed = event_html(wire(CommandOutputEvent(output="no", exit_code=2)))
    assert "convo-error" in failed and "exit 2" in failed


def test_python_rich_outputs_and_errors() -> None:
    output = PythonOutputEvent(
        stdout="\x1b[31mred\x1b[0m text",
        display_data=[{"image/png": PNG, "text/plain": "<Figure>"}],
        result={"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "df"},
        error=PythonError(ename="KeyError", evalue="'x'", traceback=["\x1b[0;31mKeyError\x1b[0m"]),
    )
    html = event_html(wire(output))
    assert f'src="data:image/png;base64,{PNG}"' in html
    assert "<table><tr><td>1</td></tr></table>" in html
    assert "red text" in html and "\x1b" not in html
    assert "KeyError: &#x27;x&#x27;" in html and "convo-error" in html


def test_mime_preference_and_svg_as_image() -> None:
    assert mime_html({"text/plain": "<b>"}) == "<pre>&lt;b&gt;</pre>"
    svg = mime_html({"image/svg+xml": "<svg onload='x()'></svg>"})
    assert svg.startswith('<img alt="figure" src="data:image/svg+xml;base64,')
    assert "onload" not in svg  # inline SVG never reaches the page as markup


def test_file_edit_diff_is_coloured() -> None:
    diff = "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-old\n+new"
    html = event_html(wire(FileEditResultEvent(path="f", diff=diff)))
    assert '<span class="convo-diff-del">-old</span>' in html
    assert '<span class="convo-diff-add">+new</span>' in html
    assert '<span class="convo-diff-hunk">@@ -1 +1 @@</span>' in html
    assert "+++ b/f" in html and '<span class="convo-diff-add">+++' not in html


def test_awaiting_action_says_so() -> None:
    html = event_html(wire(CommandEvent(command="rm -rf x", confirmation="awaiting")))
    assert "convo-awaiting" in html and "Waiting for your confirmation" in html


@pytest.mark.parametrize("max_rows", [None, 2])
def test_transcript_html_keeps_the_last_rows(max_rows: int | None) -> None:
    events = [wire(MessageEvent(source="agent", text=f"m{i}"), i) for i in range(5)]
    html = transcript_html(
        events, conversation_id="c1", title="T", state="finished", metrics={}, max_rows=max_rows
    )
    assert "<style>" in html and "<code>c1</code>" in html and "finished" in html
    if max_rows is None:
        assert "m0" in html and "earlier events not shown" not in html
    else:
        assert "m0" not in html and "m4" in html
        assert "3 earlier events not shown" in html


def test_transcript_object_text_and_html() -> None:
    events = [wire(MessageEvent(source="user", text="hello"), 0)]
    static = Transcript(events, conversation_id="c1", title="T", state="running")
    assert static.text().splitlines() == ["Conversation c1 'T' (running)", "[0] user: hello"]
    assert "hello" in static._repr_html_()
