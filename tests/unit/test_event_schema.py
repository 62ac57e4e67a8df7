"""The event schema: exact JSON round trips, a strict discriminator, UTC timestamps."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from jupyter_convo.events.schema import (
    ACTION_KINDS,
    EVENT_KINDS,
    OBSERVATION_KINDS,
    AgentState,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    CondensationEvent,
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
    PermissionChoice,
    PlanEvent,
    PlanStep,
    PythonError,
    PythonEvent,
    PythonOutputEvent,
    ReplayStepEvent,
    ReplaySummaryEvent,
    SandboxEvent,
    SandboxMount,
    StatusEvent,
    ThinkEvent,
    TitleEvent,
    ToolCallEvent,
    ToolLocation,
    ToolResultEvent,
    event_from_dict,
    event_from_json,
    event_to_dict,
    event_to_json,
    is_action,
)

WHEN = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
# Text that tends to break serializers: quotes, backslashes, newlines, tabs, NUL, non-ASCII,
# U+2028 (a line separator for str.splitlines, not for JSON) and an emoji.
TRICKY = 'say "hi"\\n\nline2\tcol \x00 café \u2028 \U0001f600'

SAMPLES: dict[str, EventBase] = {
    "message": MessageEvent(
        id=0, timestamp=WHEN, source="user", text=TRICKY, image_urls=["data:image/png;base64,AA"]
    ),
    "think": ThinkEvent(id=1, timestamp=WHEN, thought="plan: " + TRICKY),
    "finish": FinishEvent(id=2, timestamp=WHEN, message="done", tool_call_id="call_9"),
    "command": CommandEvent(
        id=3,
        timestamp=WHEN,
        command="ls -la | grep 'x'",
        timeout=12.5,
        security_risk="medium",
        confirmation="awaiting",
        tool_call_id="call_1",
        thought="look around",
    ),
    "command_output": CommandOutputEvent(
        id=4,
        timestamp=WHEN,
        cause=3,
        command="ls -la",
        exit_code=0,
        output=TRICKY,
        truncated=True,
        timed_out=False,
        cwd="/w",
    ),
    "python": PythonEvent(id=5, timestamp=WHEN, code="print(1)\n1/0", timeout=None),
    "python_output": PythonOutputEvent(
        id=6,
        timestamp=WHEN,
        cause=5,
        stdout="1\n",
        stderr="warn",
        result={"text/plain": "2", "application/json": {"a": [1, 2.5, None, True]}},
        display_data=[{"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}],
        error=PythonError(ename="ZeroDivisionError", evalue="division by zero", traceback=["a"]),
        execution_count=3,
    ),
    "file_read": FileReadEvent(id=7, timestamp=WHEN, path="src/a.py", view_range=[1, 20]),
    "file_content": FileContentEvent(id=8, timestamp=WHEN, cause=7, path="src/a.py", content="x"),
    "file_edit": FileEditEvent(
        id=9, timestamp=WHEN, command="str_replace", path="a.py", old_str="a", new_str=TRICKY
    ),
    "file_edit_result": FileEditResultEvent(
        id=10, timestamp=WHEN, cause=9, command="str_replace", path="a.py", diff="-a\n+b\n"
    ),
    "confirmation": ConfirmationEvent(id=11, timestamp=WHEN, cause=3, confirmed=False, reason="no"),
    "agent_state": AgentStateEvent(
        id=12, timestamp=WHEN, state=AgentState.AWAITING_USER_CONFIRMATION, reason="risky"
    ),
    "status": StatusEvent(id=13, timestamp=WHEN, status="READY", message="runtime ready"),
    "sandbox": SandboxEvent(
        id=13,
        timestamp=WHEN,
        mechanism="bubblewrap",
        confined=True,
        network=False,
        network_off_by="conversation",
        home="/data/conversations/c1/home",
        mounts=[
            SandboxMount(path="/usr", mode="ro"),
            SandboxMount(path="/bin", mode="link", source="usr/bin"),
            SandboxMount(path="/tmp", mode="rw", source="/data/conversations/c1/tmp"),
            SandboxMount(path="/data", mode="hidden"),
        ],
        message="confined",
    ),
    "error": ErrorEvent(
        id=14, timestamp=WHEN, code="AGENT_ERROR$TOO_MANY_CONVERSATIONS", message="limit"
    ),
    "title": TitleEvent(id=15, timestamp=WHEN, title="Clean sales.csv"),
    "llm_call": LLMCallEvent(
        id=16,
        timestamp=WHEN,
        model="gpt-4o-mini",
        prompt_tokens=1234,
        completion_tokens=56,
        cost=0.000123,
        latency=1.25,
        response_id="chatcmpl-1",
    ),
    "replay_step": ReplayStepEvent(
        id=17,
        timestamp=WHEN,
        cause=3,
        step=1,
        recorded_event_id=3,
        recorded_observation_id=4,
        observation_id=18,
        verdict="diverged",
        diff="--- recorded\n+++ replayed\n-" + TRICKY + "\n+b\n",
    ),
    "replay_summary": ReplaySummaryEvent(
        id=19,
        timestamp=WHEN,
        mode="cassette",
        source_conversation_id="abc123",
        steps=2,
        reproduced=1,
        diverged=1,
        diverged_steps=[1],
        message="1 of 2 steps diverged",
    ),
    "tool_call": ToolCallEvent(
        id=20,
        timestamp=WHEN,
        tool_call_id="call-7",
        tool_kind="edit",
        title="Write " + TRICKY,
        locations=[ToolLocation(path="notes.txt", line=3)],
        arguments='{"path": "notes.txt"}',
        options=[PermissionChoice(option_id="yes", name="Allow", kind="allow_once")],
        confirmation="awaiting",
    ),
    "tool_result": ToolResultEvent(
        id=21,
        timestamp=WHEN,
        cause=20,
        tool_call_id="call-7",
        status="failed",
        title="Write",
        output=TRICKY,
        diff="--- a/x\n+++ b/x\n+y\n",
    ),
    "plan": PlanEvent(
        id=22,
        timestamp=WHEN,
        entries=[PlanStep(content=TRICKY, priority="high", status="in_progress")],
    ),
    "condensation": CondensationEvent(
        id=19,
        timestamp=WHEN,
        start_id=4,
        end_id=12,
        summary="The agent cleaned sales.csv.\n\n[What the user said]\n- keep the header",
        turns=3,
        reason="context_error",
        tokens_before=9000,
        tokens_after=2100,
        model="gpt-4o-mini",
        prompt_tokens=2000,
        completion_tokens=120,
        cost=0.001,
    ),
}


def test_there_is_a_sample_for_every_kind() -> None:
    assert set(SAMPLES) == set(EVENT_KINDS)
    assert all(event.kind == kind for kind, event in SAMPLES.items())


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_kind_round_trips_json_exactly(kind: str) -> None:
    line = event_to_json(SAMPLES[kind])
    assert "\n" not in line  # one event per line, whatever the text holds
    parsed = event_from_json(line)
    assert type(parsed) is type(SAMPLES[kind])
    assert parsed == SAMPLES[kind]
    assert event_to_json(parsed) == line
    assert event_to_json(event_from_json(line.encode())) == line


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_kind_round_trips_through_dicts(kind: str) -> None:
    data = event_to_dict(SAMPLES[kind])
    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    assert event_from_dict(data) == SAMPLES[kind]


def test_defaults_are_written_and_read_back() -> None:
    line = event_to_json(CommandEvent(command="true", timestamp=WHEN))
    data = json.loads(line)
    assert data["id"] == -1
    assert data["source"] == "agent"
    assert data["cause"] is None
    assert data["security_risk"] == "unknown"
    assert data["confirmation"] == "none"
    assert event_to_json(event_from_json(line)) == line


def test_unknown_kind_is_rejected_by_the_discriminator() -> None:
    with pytest.raises(ValidationError) as caught:
        event_from_json('{"kind": "teleport", "source": "agent"}')
    (error,) = caught.value.errors()
    assert error["type"] == "union_tag_invalid"
    assert "'teleport'" in str(caught.value)
    assert "'message'" in str(caught.value)  # the message lists the kinds that exist


def test_missing_kind_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        event_from_dict({"source": "user", "text": "hi"})
    assert caught.value.errors()[0]["type"] == "union_tag_not_found"


def test_unknown_field_and_wrong_types_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        event_from_dict({"kind": "message", "source": "user", "text": "x", "colour": "red"})
    with pytest.raises(ValidationError, match="source"):
        event_from_dict({"kind": "message", "source": "robot", "text": "x"})
    with pytest.raises(ValidationError, match="state"):
        event_from_dict({"kind": "agent_state", "state": "dancing"})


def test_events_are_frozen_and_copied_with_updates() -> None:
    event = MessageEvent(source="user", text="hi")
    with pytest.raises(ValidationError):
        event.text = "changed"
    copy = event.model_copy(update={"id": 7})
    assert (copy.id, copy.text, event.id) == (7, "hi", -1)


def test_timestamps_are_utc_iso_8601_with_z() -> None:
    line = event_to_json(MessageEvent(source="user", text="now"))
    stamp = json.loads(line)["timestamp"]
    assert ISO_Z.match(stamp), stamp
    assert event_to_dict(SAMPLES["message"])["timestamp"] == "2026-03-04T05:06:07.891011Z"


def test_other_time_zones_are_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    event = MessageEvent(
        source="user", text="x", timestamp=datetime(2026, 6, 1, 14, 0, tzinfo=paris)
    )
    assert event.timestamp == datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert json.loads(event_to_json(event))["timestamp"] == "2026-06-01T12:00:00.000000Z"


def test_naive_timestamps_are_taken_as_utc() -> None:
    event = event_from_dict(
        {"kind": "message", "source": "user", "text": "x", "timestamp": "2026-06-01T12:00:00"}
    )
    assert event.timestamp == datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def test_offset_timestamps_in_json_are_normalised_to_z() -> None:
    line = '{"kind":"message","source":"user","text":"x","timestamp":"2026-06-01T14:00:00+02:00"}'
    assert event_to_dict(event_from_json(line))["timestamp"] == "2026-06-01T12:00:00.000000Z"


def test_action_and_observation_kinds_are_known_kinds() -> None:
    assert set(EVENT_KINDS) >= ACTION_KINDS
    assert set(EVENT_KINDS) >= OBSERVATION_KINDS
    assert not ACTION_KINDS & OBSERVATION_KINDS
    assert is_action(SAMPLES["command"])
    assert not is_action(SAMPLES["command_output"])
    assert all(SAMPLES[kind].source == "environment" for kind in OBSERVATION_KINDS)
