"""Hypothesis on the event log's index: index-backed reads against a naive full parse.

A run is a sequence of steps on one log: appends by the writer, and the damage crashes and
stray copies leave (a torn log, a line written without its index record, junk lines, an
index cut, flipped, deleted or taken from another log). After every step a fresh reader,
and at the end the writer, must answer every read (``read``, ``read_raw``, ``get``, every
``search`` page with kind/source/id/direction filters, ``count``) exactly as a naive parse
of the log's complete lines does, and report the same skipped lines and id gaps.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from props import PROPERTY_SETTINGS
from pydantic import ValidationError

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.log.search import TextFilter
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    Event,
    EventBase,
    MessageEvent,
    ThinkEvent,
    event_from_json,
    event_to_json,
)

words = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=60)
events: st.SearchStrategy[EventBase] = st.one_of(
    st.builds(MessageEvent, source=st.sampled_from(["agent", "user"]), text=words),
    st.builds(CommandEvent, command=words),
    st.builds(CommandOutputEvent, output=words),
    st.builds(ThinkEvent, thought=words),
)
steps = st.one_of(
    st.tuples(st.just("append"), st.lists(events, min_size=1, max_size=8)),
    st.tuples(st.just("tear_log"), st.integers(1, 60)),
    st.tuples(st.just("line_without_record"), events),
    st.tuples(st.just("junk_line"), st.binary(max_size=80)),
    st.tuples(st.just("cut_index"), st.integers(0, 2000)),
    st.tuples(st.just("flip_index"), st.integers(0, 2000)),
    st.tuples(st.just("drop_index"), st.none()),
    st.tuples(st.just("foreign_index"), st.none()),
)


@dataclass
class Naive:
    """What a full parse of the complete lines says."""

    events: list[Event] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # line numbers
    gaps: list[tuple[int, int]] = field(default_factory=list)


def naive(path: Path) -> Naive:
    data = path.read_bytes() if path.exists() else b""
    found = Naive()
    last_id = -1
    for number, line in enumerate(data[: data.rfind(b"\n") + 1].split(b"\n")[:-1], start=1):
        try:
            event = event_from_json(line)
        except ValidationError:
            found.skipped.append(number)
            continue
        if event.id <= last_id:
            found.skipped.append(number)
            continue
        if event.id != last_id + 1:
            found.gaps.append((last_id + 1, event.id - 1))
        last_id = event.id
        found.events.append(event)
        found.lines.append(line)
    return found


def pages(log: EventLog, **filters: object) -> list[Event]:
    items: list[Event] = []
    page_id = None
    while True:
        page = log.search(page_id=page_id, limit=3, **filters)  # type: ignore[arg-type]
        items += page.items
        if page.next_page_id is None:
            return items
        page_id = page.next_page_id


def assert_agrees(log: EventLog, path: Path, data: st.DataObject) -> None:
    truth = naive(path)
    assert [(r.id, r.line) for r in log.read_raw()] == list(
        zip([e.id for e in truth.events], truth.lines, strict=True)
    )
    assert log.read() == truth.events
    assert [s.line_number for s in log.skipped] == truth.skipped
    assert log.gaps == truth.gaps
    assert len(log) == len(truth.events)
    ids = [event.id for event in truth.events]
    for event_id in {*ids[:3], *ids[-3:], -1, (ids[-1] + 1) if ids else 0}:
        assert log.get(event_id) == next((e for e in truth.events if e.id == event_id), None)
    kinds = data.draw(
        st.none() | st.lists(st.sampled_from(["message", "command", "think"]), min_size=1)
    )
    source = data.draw(st.none() | st.sampled_from(["agent", "user", "environment"]))
    top = (ids[-1] + 2) if ids else 2
    after = data.draw(st.none() | st.integers(-1, top))
    before = data.draw(st.none() | st.integers(-1, top))
    reverse = data.draw(st.booleans())
    text = data.draw(st.none() | st.sampled_from(["a", "E", "é", "message", '"kind"']))
    matches = TextFilter(text) if text is not None else None
    wanted = [
        e
        for e, line in zip(truth.events, truth.lines, strict=True)
        if (kinds is None or e.kind in kinds)
        and (source is None or e.source == source)
        and (after is None or e.id > after)
        and (before is None or e.id < before)
        and (matches is None or matches(line))
    ]
    filters = {
        "kind": kinds,
        "source": source,
        "after_id": after,
        "before_id": before,
        "text": text,
    }
    assert pages(log, reverse=reverse, **filters) == (wanted[::-1] if reverse else wanted)
    assert log.count(**filters) == len(wanted)  # type: ignore[arg-type]


@contextmanager
def two_logs() -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="index-props-") as tmp:
        path, other = Path(tmp) / "a" / "events.jsonl", Path(tmp) / "b" / "events.jsonl"
        with EventLog(other) as log:
            for n in range(40):
                log.append(ThinkEvent(thought=f"another conversation {n}"))
        yield path, other


def damage(path: Path, other: Path, step: str, arg: object) -> None:
    index = path.with_suffix(".idx")
    if step == "tear_log" and path.exists():
        data = path.read_bytes()
        path.write_bytes(data[: max(0, len(data) - int(arg))])  # type: ignore[call-overload]
    elif step == "line_without_record":
        assert isinstance(arg, EventBase)
        next_id = (naive(path).events or [None])[-1]
        line = event_to_json(arg.model_copy(update={"id": next_id.id + 1 if next_id else 0}))
        with path.open("ab") as handle:
            handle.write(line.encode() + b"\n")
    elif step == "junk_line":
        with path.open("ab") as handle:
            handle.write(bytes(arg).replace(b"\n", b" ") + b"\n")  # type: ignore[call-overload]
    elif step == "cut_index" and index.exists():
        index.write_bytes(index.read_bytes()[: int(arg)])  # type: ignore[call-overload]
    elif step == "flip_index" and index.exists():
        data = bytearray(index.read_bytes())
        if data:
            data[int(arg) % len(data)] ^= 0x41  # type: ignore[call-overload]
            index.write_bytes(bytes(data))
    elif step == "drop_index":
        index.unlink(missing_ok=True)
    elif step == "foreign_index":
        shutil.copy(other.with_suffix(".idx"), index)


@PROPERTY_SETTINGS
@given(run=st.lists(steps, min_size=1, max_size=8), data=st.data())
def test_index_backed_reads_equal_a_full_parse_through_any_crash(
    run: list[tuple[str, object]], data: st.DataObject
) -> None:
    with two_logs() as (path, other):
        path.parent.mkdir()
        for step, arg in run:
            if step == "append":
                with EventLog(path) as writer:
                    for event in arg:  # type: ignore[attr-defined]
                        writer.append(event)
                    assert_agrees(writer, path, data)
            else:
                damage(path, other, step, arg)
            with EventLog(path, read_only=True) as reader:
                assert_agrees(reader, path, data)
        with EventLog(path) as writer:  # the writer drops a torn tail and goes on
            assert_agrees(writer, path, data)
            stored = writer.append(MessageEvent(source="user", text="after it all"))
            assert stored.id == max([-1, *(e.id for e in naive(path).events[:-1])]) + 1
        with EventLog(path, read_only=True) as reader:
            assert_agrees(reader, path, data)


@PROPERTY_SETTINGS
@given(batches=st.lists(st.lists(events, min_size=1, max_size=6), min_size=1, max_size=6))
def test_a_reader_following_a_writer_sees_what_a_full_parse_sees(
    batches: list[list[EventBase]],
) -> None:
    with two_logs() as (path, _), EventLog(path) as writer:
        reader = EventLog(path, read_only=True)
        seen: list[Event] = []
        reader.subscribe(seen.append)
        for batch in batches:
            for event in batch:
                writer.append(event)
            reader.refresh()
            assert reader.read() == naive(path).events
            assert seen == naive(path).events
        reader.close()
