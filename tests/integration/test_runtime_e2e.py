"""Whole conversations in a real runtime subprocess, with the scripted LLM as the only double.

The scripted LLM serves from a thread of the test process; the runtime reaches it over HTTP
through the real openai SDK. Every wait is on an event (a WebSocket frame, the process
exit), with a bounded timeout.
"""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    ACTION_KINDS,
    OBSERVATION_KINDS,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    FileEditResultEvent,
    FinishEvent,
    MessageEvent,
    PythonOutputEvent,
    StatusEvent,
    event_to_json,
)
from jupyter_convo.testing import ScriptedLLM, error, llm_config_for, reply, tool_call

if TYPE_CHECKING:
    from runtime_harness import StartRuntime

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOT_CODE = (
    "import matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3], [1, 4, 9])\n"
    "plt.title('squares')\n"
    "plt.show()\n"
)


def state_is(*states: str) -> Any:
    return lambda event: isinstance(event, AgentStateEvent) and event.state.value in states


def stored_events(path: Path) -> list[Event]:
    log = EventLog(path, read_only=True)
    try:
        return log.read()
    finally:
        log.close()


def assert_causes_linked(events: list[Event]) -> None:
    by_id = {event.id: event for event in events}
    for event in events:
        if event.kind in OBSERVATION_KINDS or isinstance(event, ConfirmationEvent):
            assert event.cause is not None, event
            action = by_id[event.cause]
            assert action.kind in ACTION_KINDS
            assert action.id < event.id


async def test_conversation_with_shell_python_edit_and_finish(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo hello-from-shell", "security_risk": "low"}),
            tool_call("python", {"code": PLOT_CODE, "security_risk": "low"}),
            tool_call(
                "file_editor",
                {"command": "create", "path": "notes.txt", "file_text": "line one\n"},
            ),
            tool_call(
                "file_editor",
                {"command": "str_replace", "path": "notes.txt", "old_str": "one", "new_str": "two"},
            ),
            tool_call("finish", {"message": "plotted and noted"}),
        ]
    )
    runtime = await start_runtime()
    cid = "e2e-full"
    created = await runtime.create(
        cid, llm_config_for(scripted_llm), initial_message="plot squares and take notes"
    )
    assert created["conversation_id"] == cid
    stream = await runtime.connect(cid)
    await stream.until(state_is("finished"), timeout=90)

    received = stream.events
    assert [event.id for event in received] == list(range(len(received)))
    stored = stored_events(runtime.conversation_dir(cid) / "events.jsonl")
    assert [event_to_json(e) for e in stored[: len(received)]] == [
        event_to_json(e) for e in received
    ]
    assert_causes_linked(stored)

    kinds = [e.kind for e in stored if e.kind not in ("status", "agent_state", "llm_call")]
    assert kinds == [
        "sandbox",  # how the tools are isolated: before the first message
        "message",
        "command",
        "command_output",
        "python",
        "python_output",
        "file_edit",
        "file_edit_result",
        "file_edit",
        "file_edit_result",
        "finish",
    ]
    statuses = [e.status for e in stored if isinstance(e, StatusEvent)]
    assert statuses[:2] == ["STARTING_RUNTIME", "READY"]

    shell = next(e for e in stored if isinstance(e, CommandOutputEvent))
    assert shell.exit_code == 0
    assert "hello-from-shell" in shell.output
    assert isinstance(stored[shell.cause or 0], CommandEvent)

    python = next(e for e in stored if isinstance(e, PythonOutputEvent))
    assert python.error is None, python.error
    pngs = [bundle["image/png"] for bundle in python.display_data if "image/png" in bundle]
    assert pngs, python.display_data
    assert base64.b64decode(pngs[0]).startswith(PNG_MAGIC)

    edits = [e for e in stored if isinstance(e, FileEditResultEvent)]
    assert [e.error for e in edits] == [None, None]
    assert "-line one" in edits[1].diff and "+line two" in edits[1].diff
    workspace = runtime.conversation_dir(cid) / "workspace"
    assert (workspace / "notes.txt").read_text() == "line two\n"
    finish = next(e for e in stored if isinstance(e, FinishEvent))
    assert finish.message == "plotted and noted"

    async with runtime.client() as client:
        info = (await client.get(f"/api/conversations/{cid}")).json()
        assert info["status"] == "RUNNING"
        assert info["agent_state"] == "finished"
        assert info["runtime_status"] == "READY"
        assert info["metrics"]["llm_calls"] == 5
        assert info["last_event_id"] == stored[-1].id
        page = (
            await client.get(
                f"/api/conversations/{cid}/events/search",
                params={"kind": "command_output,python_output", "limit": 1},
            )
        ).json()
        assert [item["kind"] for item in page["items"]] == ["command_output"]
        assert page["next_page_id"]
        rest = (
            await client.get(
                f"/api/conversations/{cid}/events/search",
                params={"kind": "command_output,python_output", "page_id": page["next_page_id"]},
            )
        ).json()
        assert [item["kind"] for item in rest["items"]] == ["python_output"]
        assert rest["next_page_id"] is None
        count = await client.get(
            f"/api/conversations/{cid}/events/count", params={"source": "agent"}
        )
        assert count.json() == {"count": sum(1 for e in stored if e.source == "agent")}
        for params in ({"limit": "0"}, {"kind": "nope"}, {"after_id": "x"}, {"page_id": "zz"}):
            bad = await client.get(f"/api/conversations/{cid}/events/search", params=params)
            assert bad.status_code == 400, params
            assert bad.json()["status"] == 400
        bad_count = await client.get(f"/api/conversations/{cid}/events/count?limit=3")
        assert bad_count.status_code == 400
    stream.close()


async def test_late_websocket_client_gets_exactly_the_missing_events_then_sigterm(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo first", "security_risk": "low"}),
            reply("first task done"),
            reply("second answer"),
        ]
    )
    runtime = await start_runtime()
    cid = "e2e-late"
    await runtime.create(cid, llm_config_for(scripted_llm), initial_message="say first")
    early = await runtime.connect(cid)
    await early.until(state_is("awaiting_user_input"))
    last = early.events[-1].id
    middle = last // 2

    late = await runtime.connect(cid, after_id=middle)
    for expected_id in range(middle + 1, last + 1):
        event = await late.next_event()
        assert event is not None and event.id == expected_id
    assert [event_to_json(e) for e in late.events] == [
        event_to_json(e) for e in early.events[middle + 1 :]
    ]

    # Live events follow without a gap or a repeat, on both sockets.
    await late.send({"kind": "message", "text": "and now?"})
    reply_event = await late.until(lambda e: isinstance(e, MessageEvent) and e.source == "agent")
    assert isinstance(reply_event, MessageEvent) and reply_event.text == "second answer"
    assert [e.id for e in late.events] == list(range(middle + 1, reply_event.id + 1))
    await early.until(lambda e: e.id == reply_event.id)
    assert [e.id for e in early.events] == list(range(reply_event.id + 1))

    # A bad frame is answered with an error frame; the connection stays usable.
    await late.send("{not json")
    bad = await late.next_error()
    assert bad["status"] == 400 and "user input" in bad["error"]
    await late.send({"kind": "confirmation", "action_id": 0, "confirmed": True})
    refused = await late.next_error()
    assert refused["status"] == 400 and "awaiting confirmation" in refused["error"]

    # SIGTERM is a graceful stop: both sockets get the last events, then the process exits.
    runtime.proc.send_signal(signal.SIGTERM)
    for stream in (early, late):
        await stream.until(lambda e: isinstance(e, StatusEvent) and e.status == "STOPPED")
        assert await stream.next_event() is None
    assert runtime.wait_exit() == 0
    stored = stored_events(runtime.conversation_dir(cid) / "events.jsonl")
    assert [event_to_json(e) for e in stored] == [event_to_json(e) for e in early.events]
    assert "SIGTERM received" in runtime.log_text()


async def test_kill_9_mid_command_keeps_every_flushed_event(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo before", "security_risk": "low"}),
            tool_call("terminal", {"command": "sleep 60", "security_risk": "low"}),
            reply("never reached"),
        ]
    )
    runtime = await start_runtime()
    cid = "e2e-kill"
    await runtime.create(cid, llm_config_for(scripted_llm), initial_message="sleep a while")
    stream = await runtime.connect(cid)
    await stream.until(lambda e: isinstance(e, CommandEvent) and e.command == "sleep 60")
    os.kill(runtime.proc.pid, signal.SIGKILL)
    assert runtime.wait_exit() == -signal.SIGKILL
    runtime.kill_group()  # the shell and its sleep

    path = runtime.conversation_dir(cid) / "events.jsonl"
    reopened = EventLog(path)  # as the next runtime does: the writer's open
    try:
        assert reopened.recovered is None
        stored = [event_to_json(e) for e in reopened.read()]
    finally:
        reopened.close()
    received = [event_to_json(e) for e in stream.events]
    assert stored[: len(received)] == received
    assert len(stored) >= len(received)

    # A new runtime continues from the log.
    again = await start_runtime()
    info = await again.create(cid, llm_config_for(scripted_llm))
    assert info["last_event_id"] >= len(received) - 1
    resumed = await again.connect(cid, after_id=len(stored) - 1)
    status = await resumed.until(lambda e: isinstance(e, StatusEvent) and e.status == "READY")
    assert status.id >= len(stored)
    resumed.close()
    stream.close()


async def test_confirmation_mode_waits_and_records_a_rejection(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "rm -rf data", "security_risk": "high"}),
            tool_call("terminal", {"command": "echo safe-choice", "security_risk": "low"}),
            tool_call("finish", {"message": "chose the safe path"}),
        ]
    )
    runtime = await start_runtime()
    cid = "e2e-confirm"
    workspace = runtime.conversation_dir(cid) / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "data").mkdir()
    await runtime.create(
        cid, llm_config_for(scripted_llm), initial_message="clean up", confirmation_mode=True
    )
    stream = await runtime.connect(cid)
    await stream.until(state_is("awaiting_user_confirmation"))
    risky = next(e for e in stream.events if isinstance(e, CommandEvent))
    assert risky.confirmation == "awaiting"
    async with runtime.client() as client:
        info = (await client.get(f"/api/conversations/{cid}")).json()
        assert info["agent_state"] == "awaiting_user_confirmation"
        answer = await client.post(
            f"/api/conversations/{cid}/events",
            json={
                "kind": "confirmation",
                "action_id": risky.id,
                "confirmed": False,
                "reason": "keep data",
            },
        )
        assert answer.status_code == 200, answer.text
        rejection = answer.json()
        assert rejection["kind"] == "confirmation"
        assert rejection["cause"] == risky.id and rejection["confirmed"] is False
    await stream.until(state_is("finished"))
    assert (workspace / "data").is_dir()
    outputs = [e for e in stream.events if isinstance(e, CommandOutputEvent)]
    assert all(e.cause != risky.id for e in outputs)
    assert len(outputs) == 1 and "safe-choice" in outputs[0].output
    confirmation = next(e for e in stream.events if isinstance(e, ConfirmationEvent))
    assert confirmation.reason == "keep data"
    assert_causes_linked(stream.events)
    stream.close()


@pytest.mark.parametrize(
    ("status", "code", "state"),
    [(401, "LLM_AUTHENTICATION", "error"), (429, "LLM_RATE_LIMITED", "rate_limited")],
)
async def test_llm_errors_reach_the_conversation_status(
    start_runtime: StartRuntime,
    scripted_llm: ScriptedLLM,
    status: int,
    code: str,
    state: str,
) -> None:
    scripted_llm.add_script([error(status, f"scripted {status}", times=None)])
    runtime = await start_runtime()
    cid = f"e2e-llm-{status}"
    llm = llm_config_for(scripted_llm, max_retries=1)
    await runtime.create(cid, llm, initial_message="hello")
    stream = await runtime.connect(cid)
    await stream.until(state_is(state))
    failure = next(e for e in stream.events if isinstance(e, ErrorEvent))
    assert failure.code == code
    async with runtime.client() as client:
        info = (await client.get(f"/api/conversations/{cid}")).json()
        errors = (
            await client.get(f"/api/conversations/{cid}/events/search", params={"kind": "error"})
        ).json()
    assert info["agent_state"] == state
    assert info["status"] == "RUNNING"
    assert [item["code"] for item in errors["items"]] == [code]
    stream.close()


async def test_stop_route_closes_everything_and_the_process_exits(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [tool_call("terminal", {"command": "sleep 60", "security_risk": "low"})]
    )
    runtime = await start_runtime()
    cid = "e2e-stop"
    await runtime.create(cid, llm_config_for(scripted_llm), initial_message="go")
    stream = await runtime.connect(cid)
    await stream.until(lambda e: isinstance(e, CommandEvent))
    async with runtime.client() as client:
        stopped = await client.post(f"/api/conversations/{cid}/stop")
    assert stopped.status_code == 200
    assert stopped.json() == {"status": "STOPPED"}
    await stream.until(lambda e: isinstance(e, StatusEvent) and e.status == "STOPPED")
    assert await stream.next_event() is None  # the server closed the socket
    assert runtime.wait_exit() == 0
    stored = stored_events(runtime.conversation_dir(cid) / "events.jsonl")
    assert [event_to_json(e) for e in stored] == [event_to_json(e) for e in stream.events]
    states = [e.state.value for e in stored if isinstance(e, AgentStateEvent)]
    assert states[-1] == "stopped"
    assert isinstance(stored[-1], StatusEvent) and stored[-1].status == "STOPPED"
