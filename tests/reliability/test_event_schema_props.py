"""Hypothesis on the event schema and the log reader.

- Any event survives ``event_to_json`` -> ``event_from_json`` unchanged, and a log
  reopened from disk answers exactly the events its ``append`` acknowledged.
- Whatever bytes a crash or a stray writer leaves after (or between) acknowledged lines,
  reopening the log (as writer or reader) still gives every acknowledged event back, and
  appends after the recovery continue the ids and survive the next reopen.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from props import PROPERTY_SETTINGS

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.redact import SecretRegistry
from jupyter_convo.events.schema import (
    AgentState,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    ErrorEvent,
    Event,
    EventBase,
    FileEditEvent,
    LLMCallEvent,
    MessageEvent,
    PlanEvent,
    PlanStep,
    PythonError,
    PythonOutputEvent,
    ThinkEvent,
    TitleEvent,
    ToolCallEvent,
    ToolLocation,
    ToolResultEvent,
    event_from_json,
    event_to_json,
)

# Any Unicode a JSON string can carry (lone surrogates cannot be encoded as UTF-8).
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=200)
short = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=30)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_id = st.none() | st.integers(min_value=0, max_value=10**6)

events: st.SearchStrategy[EventBase] = st.one_of(
    st.builds(
        MessageEvent,
        source=st.sampled_from(["agent", "user"]),
        text=texts,
        image_urls=st.lists(short, max_size=2),
    ),
    st.builds(ThinkEvent, thought=texts),
    st.builds(
        CommandEvent,
        command=texts,
        timeout=st.none() | finite,
        security_risk=st.sampled_from(["unknown", "low", "medium", "high"]),
        confirmation=st.sampled_from(["none", "awaiting", "confirmed", "rejected"]),
    ),
    st.builds(
        CommandOutputEvent,
        cause=maybe_id,
        exit_code=st.none() | st.integers(-255, 255),
        output=texts,
        truncated=st.booleans(),
    ),
    st.builds(
        PythonOutputEvent,
        cause=maybe_id,
        stdout=texts,
        stderr=texts,
        result=st.none() | st.dictionaries(st.sampled_from(["text/plain", "text/html"]), texts),
        error=st.none()
        | st.builds(PythonError, ename=short, evalue=texts, traceback=st.lists(texts, max_size=3)),
    ),
    st.builds(
        FileEditEvent,
        command=st.sampled_from(["create", "str_replace", "insert", "undo"]),
        path=short,
        file_text=st.none() | texts,
        old_str=st.none() | texts,
        new_str=st.none() | texts,
        insert_line=st.none() | st.integers(0, 10_000),
    ),
    st.builds(AgentStateEvent, state=st.sampled_from(list(AgentState)), reason=texts),
    st.builds(ErrorEvent, code=short, message=texts, tool_arguments=st.none() | texts),
    st.builds(TitleEvent, title=short),
    st.builds(
        ToolCallEvent,
        tool_kind=short,
        title=texts,
        arguments=texts,
        locations=st.lists(st.builds(ToolLocation, path=short), max_size=2),
    ),
    st.builds(ToolResultEvent, status=short, title=texts, output=texts, diff=texts),
    st.builds(PlanEvent, entries=st.lists(st.builds(PlanStep, content=texts), max_size=3)),
    st.builds(
        LLMCallEvent,
        model=short,
        prompt_tokens=st.integers(0, 10**7),
        completion_tokens=st.integers(0, 10**7),
        cost=finite,
        latency=finite,
    ),
)


@contextmanager
def log_path() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="props-") as tmp:
        yield Path(tmp) / "events.jsonl"


def write(path: Path, batch: list[EventBase]) -> list[Event]:
    """Append ``batch``; the stored events are the acknowledged ones."""
    with EventLog(path) as event_log:
        return [event_log.append(event) for event in batch]


def as_json(items: list[Event]) -> list[str]:
    return [event_to_json(event) for event in items]


@PROPERTY_SETTINGS
@given(event=events, event_id=st.integers(0, 10**9))
def test_every_event_survives_the_json_round_trip(event: EventBase, event_id: int) -> None:
    stored = event.model_copy(update={"id": event_id})
    line = event_to_json(stored)
    assert "\n" not in line, "one event is one line"
    again = event_from_json(line)
    assert again == stored
    assert event_to_json(again) == line
    json.loads(line)  # plain JSON any reader can parse


@PROPERTY_SETTINGS
@given(batch=st.lists(events, min_size=1, max_size=25))
def test_a_reopened_log_answers_what_append_acknowledged(batch: list[EventBase]) -> None:
    with log_path() as path:
        acknowledged = write(path, batch)
        assert [event.id for event in acknowledged] == list(range(len(batch)))
        with EventLog(path, read_only=True) as reader:
            assert as_json(reader.read()) == as_json(acknowledged)
            assert reader.skipped == [] and reader.recovered is None
            for event in acknowledged:
                assert reader.get(event.id) == event


@PROPERTY_SETTINGS
@given(
    batch=st.lists(events, min_size=1, max_size=12),
    tail=st.binary(min_size=1, max_size=400).filter(lambda data: b"\n" not in data),
    later=st.lists(events, min_size=0, max_size=5),
)
def test_a_torn_tail_of_any_bytes_loses_no_acknowledged_event(
    batch: list[EventBase], tail: bytes, later: list[EventBase]
) -> None:
    """A crash mid-write leaves bytes without a newline after the last complete line."""
    with log_path() as path:
        acknowledged = write(path, batch)
        with path.open("ab") as handle:
            handle.write(tail)
        with EventLog(path, read_only=True) as reader:  # a reader leaves the file alone
            assert as_json(reader.read()) == as_json(acknowledged)
        with EventLog(path) as writer:  # the next writer drops the torn tail, goes on
            assert writer.recovered is not None
            assert as_json(writer.read()) == as_json(acknowledged)
            acknowledged += [writer.append(event) for event in later]
        with EventLog(path, read_only=True) as reader:
            assert as_json(reader.read()) == as_json(acknowledged)
            assert [event.id for event in acknowledged] == list(range(len(acknowledged)))


@PROPERTY_SETTINGS
@given(
    batch=st.lists(events, min_size=2, max_size=12),
    data=st.data(),
)
def test_a_line_cut_anywhere_keeps_every_line_before_the_cut(
    batch: list[EventBase], data: st.DataObject
) -> None:
    """Truncating the file at any byte keeps each event whose whole line precedes the cut."""
    with log_path() as path:
        acknowledged = write(path, batch)
        raw = path.read_bytes()
        cut = data.draw(st.integers(0, len(raw)), label="cut")
        path.write_bytes(raw[:cut])
        complete = raw[:cut].count(b"\n")
        with EventLog(path) as writer:
            assert as_json(writer.read()) == as_json(acknowledged[:complete])
            assert writer.next_id == complete
            writer.append(MessageEvent(source="user", text="after the cut"))
        with EventLog(path, read_only=True) as reader:
            assert [event.id for event in reader.read()] == list(range(complete + 1))


@PROPERTY_SETTINGS
@given(
    batch=st.lists(events, min_size=1, max_size=10),
    junk=st.lists(st.binary(max_size=200), min_size=1, max_size=4),
    data=st.data(),
)
def test_junk_lines_between_events_are_skipped_never_the_events(
    batch: list[EventBase], junk: list[bytes], data: st.DataObject
) -> None:
    """Complete lines of any bytes (a stray writer, a bad disk block) are skipped; every
    acknowledged event around them is still read."""
    with log_path() as path:
        acknowledged = write(path, batch)
        lines = path.read_bytes().splitlines(keepends=True)
        for chunk in junk:
            at = data.draw(st.integers(0, len(lines)), label="position")
            lines.insert(at, chunk.replace(b"\n", b" ") + b"\n")
        path.write_bytes(b"".join(lines))
        with EventLog(path, read_only=True) as reader:
            read = as_json(reader.read())
        # A junk line that happens to be a valid event line is not junk: only count ours.
        assert [line for line in read if line in as_json(acknowledged)] == as_json(acknowledged)


@PROPERTY_SETTINGS
@given(
    batch=st.lists(events, min_size=1, max_size=10),
    body=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=24),
)
def test_a_registered_secret_never_reaches_the_file(batch: list[EventBase], body: str) -> None:
    secret = "sk-" + body  # a prefix no JSON key or value of ours contains
    planted = [MessageEvent(source="user", text=f"my key is {secret} ok"), *batch]
    with log_path() as path:
        with EventLog(path, secrets=SecretRegistry([secret])) as event_log:
            stored = [event_log.append(event) for event in planted]
        assert secret not in path.read_text(encoding="utf-8")
        assert secret not in event_to_json(stored[0])
