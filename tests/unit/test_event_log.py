"""The event log: append, read, search, wait, redaction and crash recovery on a real file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import pytest

from jupyter_convo.events.log import (
    EventLog,
    EventLogError,
    EventLogLocked,
    EventPage,
    SkippedLine,
    TornLine,
)
from jupyter_convo.events.log import lines as lines_module
from jupyter_convo.events.redact import SECRET_PLACEHOLDER, SecretRegistry
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    Event,
    EventBase,
    LLMCallEvent,
    MessageEvent,
    PythonOutputEvent,
    ThinkEvent,
    event_to_json,
)

WAIT = 10.0  # seconds: a bound that fails loudly, never a pause


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "conversations" / "c1" / "events.jsonl"


@pytest.fixture
def log(path: Path) -> Iterator[EventLog]:
    with EventLog(path) as opened:
        yield opened


def message(text: str, source: str = "user") -> MessageEvent:
    return MessageEvent(source=source, text=text)  # type: ignore[arg-type]


def lines_of(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\n")[:-1]


def fill(log: EventLog) -> list[Event]:
    """30 events: a user message, then (command, output, think) x 9, then two agent messages."""
    events = [log.append(message("Please clean sales.csv"))]
    for i in range(9):
        command = log.append(CommandEvent(command=f"python step{i}.py"))
        events.append(command)
        output = f"Step {i} OK" if i % 3 else f"Step {i} FAILED: KeyError 'Région'"
        events.append(log.append(CommandOutputEvent(cause=command.id, output=output)))
        events.append(log.append(ThinkEvent(thought=f"after step {i}")))
    events.append(log.append(message("Done, see plot.png", source="agent")))
    events.append(log.append(message("All steps ran", source="agent")))
    return events


def all_pages(log: EventLog, **filters: object) -> list[list[int]]:
    """Follow next_page_id to the end; the ids of each page."""
    pages: list[list[int]] = []
    page_id: str | None = None
    while True:
        page = log.search(page_id=page_id, **filters)  # type: ignore[arg-type]
        pages.append([event.id for event in page.items])
        if page.next_page_id is None:
            return pages
        assert len(pages) < 1000, "paging does not end"
        page_id = page.next_page_id


def flat(pages: list[list[int]]) -> list[int]:
    return list(chain.from_iterable(pages))


# --- append and read ----------------------------------------------------------------------


def test_append_assigns_consecutive_ids_and_keeps_the_timestamp(log: EventLog) -> None:
    original = MessageEvent(id=42, source="user", text="hello")
    stored = log.append(original)
    assert stored.id == 0
    assert stored.timestamp == original.timestamp
    assert stored.text == "hello"  # type: ignore[union-attr]
    assert [log.append(message(str(i))).id for i in range(3)] == [1, 2, 3]
    assert (log.next_id, log.last_id, len(log)) == (4, 3, 4)


def test_append_returns_exactly_what_is_on_disk(log: EventLog, path: Path) -> None:
    stored = [log.append(message('multi\nline "quoted" café')) for _ in range(3)]
    assert lines_of(path) == [event_to_json(event) for event in stored]


def test_an_appended_event_is_on_disk_before_append_returns(log: EventLog, path: Path) -> None:
    stored = log.append(message("flushed?"))
    # A second, independent reader of the file sees it while the writer is still open.
    with EventLog(path, read_only=True) as reader:
        assert reader.get(0) == stored


def test_get_and_read(log: EventLog) -> None:
    events = fill(log)
    assert log.get(5) == events[5]
    assert log.get(len(events)) is None
    assert log.get(-1) is None
    assert log.read() == events
    assert log.read(after_id=25) == events[26:]
    assert log.read(after_id=3, limit=2) == events[4:6]
    assert log.read(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        log.read(limit=-1)


def test_reopening_keeps_every_event_and_continues_the_ids(path: Path) -> None:
    with EventLog(path) as log:
        events = fill(log)
    with EventLog(path) as log:
        assert log.read() == events
        assert log.recovered is None
        assert log.skipped == []
        assert log.append(message("again")).id == len(events)


def test_reads_without_the_cache_parse_the_file(path: Path) -> None:
    with EventLog(path) as log:
        events = fill(log)
    with EventLog(path, cache_bytes=0) as log:
        assert log.read() == events
        assert log.search(kind="think", reverse=True, limit=2).items == [events[27], events[24]]


def test_fsync_mode_appends_the_same_way(path: Path) -> None:
    with EventLog(path, fsync=True) as log:
        stored = log.append(message("durable"))
    assert lines_of(path) == [event_to_json(stored)]


def test_an_event_that_cannot_be_read_back_is_refused(log: EventLog, path: Path) -> None:
    log.append(message("before"))
    with pytest.raises(EventLogError, match="'llm_call' event cannot be stored"):
        log.append(LLMCallEvent(model="m", cost=float("nan")))  # JSON has no NaN
    with pytest.raises(EventLogError, match="cannot be stored"):
        log.append(EventBase(source="agent", kind="teleport"))
    with pytest.raises(EventLogError, match="'python_output' event cannot be stored"):
        log.append(PythonOutputEvent(result={"text/plain": object()}))
    assert log.next_id == 1
    assert len(lines_of(path)) == 1


def test_appends_from_many_threads_get_unique_consecutive_ids(path: Path) -> None:
    with EventLog(path) as log:
        errors: list[BaseException] = []

        def writer(name: str) -> None:
            try:
                for i in range(100):
                    log.append(message(f"{name}-{i}"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not errors
        assert [event.id for event in log.read()] == list(range(400))
    with EventLog(path, read_only=True) as reader:
        texts = sorted(event.text for event in reader.read())  # type: ignore[union-attr]
        assert texts == sorted(f"t{n}-{i}" for n in range(4) for i in range(100))
        assert [json.loads(line)["id"] for line in lines_of(path)] == list(range(400))


# --- search and count ---------------------------------------------------------------------


def test_search_filters_combine(log: EventLog) -> None:
    events = fill(log)

    def ids(**filters: object) -> list[int]:
        return [e.id for e in log.search(limit=1000, **filters).items]  # type: ignore[arg-type]

    assert ids() == [e.id for e in events]
    assert ids(after_id=3, before_id=7) == [4, 5, 6]
    assert ids(kind="command_output") == [2, 5, 8, 11, 14, 17, 20, 23, 26]
    assert ids(kind=["message", "think"], before_id=10) == [0, 3, 6, 9]
    assert ids(kind=("think", "message"), after_id=26) == [27, 28, 29]
    assert ids(source="agent", kind="message") == [28, 29]
    assert ids(source="user") == [0]
    assert ids(source="environment", after_id=20) == [23, 26]
    assert ids(text="FAILED", kind="command_output") == [2, 11, 20]
    assert ids(text="failed", reverse=True) == [20, 11, 2]
    assert ids(kind="message", reverse=True) == [29, 28, 0]
    assert ids(kind="finish") == []
    assert ids(after_id=100) == []


def test_text_search_is_case_insensitive_on_the_stored_line(log: EventLog) -> None:
    log.append(message("Région NORD\nline two"))
    log.append(message('say "hi" to Ünïcode'))
    log.append(message("plain"))
    log.append(message("Straße"))

    def ids(text: str) -> list[int]:
        return [e.id for e in log.search(text=text).items]

    assert ids("rÉgion nord") == [0]
    assert ids("üNÏCODE") == [1]
    assert ids('"hi"') == [1]  # as typed...
    assert ids('\\"hi\\"') == [1]  # ...or as stored
    assert ids("nord\nline") == [0]
    assert ids('"kind":"message"') == [0, 1, 2, 3]
    assert ids("STRASSE") == []  # ASCII text matches ASCII letters only...
    assert ids("straße") == [3]  # ...non-ASCII text matches case-folded
    assert ids("STRAẞE") == [3]
    assert ids("nowhere") == []


def test_paging_visits_every_match_once_in_both_directions(log: EventLog) -> None:
    events = fill(log)
    forward = all_pages(log, limit=7)
    assert [len(page) for page in forward] == [7, 7, 7, 7, 2]
    assert flat(forward) == [e.id for e in events]
    backward = all_pages(log, limit=7, reverse=True)
    assert flat(backward) == [e.id for e in reversed(events)]
    filtered = all_pages(log, limit=2, kind="command", after_id=3, before_id=25)
    assert filtered == [[4, 7], [10, 13], [16, 19], [22]]
    texts = all_pages(log, limit=1, text="step", source="environment", reverse=True)
    assert texts == [[26], [23], [20], [17], [14], [11], [8], [5], [2]]


def test_no_next_page_when_the_last_match_fills_the_page(log: EventLog) -> None:
    fill(log)
    page = log.search(kind="message", limit=3)
    assert [e.id for e in page.items] == [0, 28, 29]
    assert page.next_page_id is None
    assert log.search(kind="message", limit=2).next_page_id is not None


def test_a_cursor_picks_up_events_appended_later(log: EventLog) -> None:
    log.append(message("one"))
    page = log.search(limit=1)
    log.append(message("two"))
    assert page.next_page_id is None
    first = log.search(limit=1, after_id=-1)
    log.append(message("three"))
    assert first.next_page_id is not None
    rest = log.search(page_id=first.next_page_id)
    assert [e.text for e in rest.items] == ["two", "three"]  # type: ignore[union-attr]


def test_search_returns_an_event_page(log: EventLog) -> None:
    stored = log.append(message("x"))
    page = log.search()
    assert isinstance(page, EventPage)
    assert page.items == [stored]
    assert EventPage.model_validate_json(page.model_dump_json()) == page


@pytest.mark.parametrize("limit", [0, -5, 1001, True, 2.5])
def test_search_limit_must_be_between_1_and_1000(log: EventLog, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        log.search(limit=limit)  # type: ignore[arg-type]


def test_bad_search_arguments_are_named(log: EventLog) -> None:
    fill(log)
    with pytest.raises(ValueError, match="unknown event kind 'teleport'"):
        log.search(kind=["message", "teleport"])
    with pytest.raises(ValueError, match="unknown event kind"):
        log.count(kind="teleport")
    with pytest.raises(ValueError, match="kind filter is empty"):
        log.search(kind=[])
    with pytest.raises(ValueError, match="unknown source 'robot'"):
        log.search(source="robot")
    with pytest.raises(ValueError, match="invalid page_id"):
        log.search(page_id="not a cursor!")
    with pytest.raises(ValueError, match="invalid page_id"):
        log.search(page_id="eyJpZCI6ICJ4In0")  # {"id": "x"}
    cursor = log.search(limit=1).next_page_id
    assert cursor is not None
    with pytest.raises(ValueError, match="reverse"):
        log.search(page_id=cursor, reverse=True)


def test_count_agrees_with_search(log: EventLog) -> None:
    fill(log)
    cases: list[dict[str, object]] = [
        {},
        {"after_id": 5},
        {"after_id": 5, "before_id": 9},
        {"kind": "think"},
        {"kind": ["think", "message"], "before_id": 20},
        {"source": "agent"},
        {"source": "agent", "kind": ["message", "command"], "after_id": 10},
        {"text": "step"},
        {"text": "FAILED", "source": "environment"},
        {"kind": "finish"},
    ]
    for filters in cases:
        found = flat(all_pages(log, limit=4, **filters))
        assert log.count(**filters) == len(found), filters  # type: ignore[arg-type]
    assert log.count() == 30


# --- redaction ----------------------------------------------------------------------------


def test_secrets_never_reach_the_file(path: Path) -> None:
    secret = 'sk-live-"quoted"-clé-123456'
    secrets = SecretRegistry([secret])
    with EventLog(path, secrets=secrets) as log:
        stored = log.append(CommandOutputEvent(output=f"token={secret}\n", command=secret))
        assert stored.output == f"token={SECRET_PLACEHOLDER}\n"  # type: ignore[union-attr]
        assert stored.command == SECRET_PLACEHOLDER  # type: ignore[union-attr]
        assert log.search(text=secret).items == []
        assert log.count(text=SECRET_PLACEHOLDER) == 1
    raw = path.read_bytes().decode()
    assert secret not in raw
    assert json.dumps(secret)[1:-1] not in raw
    assert lines_of(path) == [event_to_json(stored)]


def test_a_secret_that_matches_json_syntax_is_hidden_in_values_only(log: EventLog) -> None:
    # Redacting the raw line would also rewrite the field name and break the event.
    secrets = SecretRegistry(["image_urls"])
    with EventLog(log.path.with_name("other.jsonl"), secrets=secrets) as other:
        stored = other.append(MessageEvent(source="user", text="see image_urls", image_urls=["a"]))
        assert stored.text == f"see {SECRET_PLACEHOLDER}"  # type: ignore[union-attr]
        assert stored.image_urls == ["a"]  # type: ignore[union-attr]
        assert lines_of(other.path) == [event_to_json(stored)]


# --- damaged files ------------------------------------------------------------------------


def test_a_torn_last_line_is_dropped_and_reported(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EventLog(path) as log:
        events = fill(log)
    complete = path.read_bytes()
    torn = event_to_json(message("never finished").model_copy(update={"id": 30}))[:25].encode()
    with path.open("ab") as handle:
        handle.write(torn)
    with caplog.at_level(logging.WARNING, logger="jupyter_convo.events.log"):
        log = EventLog(path)
    with log:
        assert log.recovered == TornLine(len(complete), len(torn), torn.decode())
        assert "torn last line" in caplog.text
        assert path.read_bytes() == complete
        assert log.read() == events
        stored = log.append(message("after recovery"))
        assert stored.id == 30
    with EventLog(path) as log:
        assert log.recovered is None
        assert log.read() == [*events, stored]


def test_a_reader_leaves_an_incomplete_line_until_it_is_complete(path: Path) -> None:
    with EventLog(path) as log:
        events = fill(log)
    line = event_to_json(message("being written").model_copy(update={"id": 30})).encode()
    with path.open("ab") as handle:
        handle.write(line[:40])  # the writer is half-way through this line
    size = path.stat().st_size
    with EventLog(path, read_only=True) as reader:
        assert reader.recovered is None
        assert reader.skipped == []
        assert reader.read() == events
        assert path.stat().st_size == size  # a reader never truncates
        assert reader.refresh() == 0
        with path.open("ab") as handle:
            handle.write(line[40:] + b"\n")
        assert reader.refresh() == 1
        assert reader.get(30).text == "being written"  # type: ignore[union-attr]


def test_a_bad_line_in_the_middle_is_skipped_and_the_rest_kept(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EventLog(path) as log:
        events = fill(log)
    lines = lines_of(path)
    lines[4] = '{"id": 4, "kind": "command", "sour'  # complete line, broken JSON
    lines[10] = json.dumps({"id": 10, "kind": "teleport", "source": "agent"})
    lines.insert(20, "")
    path.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="jupyter_convo.events.log"):
        log = EventLog(path)
    with log:
        assert [s.line_number for s in log.skipped] == [5, 11, 21]
        assert log.skipped[0].reason == "not valid JSON"
        assert log.skipped[1].reason.startswith(
            "not a valid event: Input tag 'teleport' found using 'kind'"
        )
        assert log.skipped[2].reason == "empty line"
        assert isinstance(log.skipped[0], SkippedLine)
        assert log.skipped[0].preview.startswith('{"id": 4')
        assert log.gaps == [(4, 4), (10, 10)]
        assert [e.id for e in log.read()] == [i for i in range(30) if i not in (4, 10)]
        assert log.get(11) == events[11]
        assert log.get(4) is None
        assert log.count(kind="command") == 7  # commands 4 and 10 are gone, nothing else
        assert "Skipped line 5" in caplog.text
        assert "ids jump from 3 to 5" in caplog.text
        assert log.append(message("continues")).id == 30


def test_ids_that_do_not_increase_are_skipped(path: Path) -> None:
    with EventLog(path) as log:
        events = fill(log)[:3]
    lines = lines_of(path)[:3]
    path.write_text("\n".join([*lines, lines[1], lines[2]]) + "\n")
    with EventLog(path) as log:
        assert [s.reason for s in log.skipped] == [
            "id 1 does not follow id 2",
            "id 2 does not follow id 2",
        ]
        assert log.read() == events


def test_a_line_longer_than_a_read_chunk_is_read_whole(path: Path) -> None:
    big = "x" * (2 * lines_module.READ_CHUNK + 123)
    with EventLog(path) as log:
        stored = [log.append(message("before")), log.append(CommandOutputEvent(output=big))]
        stored.append(log.append(message("after")))
    with EventLog(path, cache_bytes=0) as log:
        assert log.read() == stored


def test_lines_straddling_read_chunks_are_read_whole(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EventLog(path) as log:
        stored = [log.append(message(f"small {i}")) for i in range(20)]
    monkeypatch.setattr(lines_module, "READ_CHUNK", 7)  # every line straddles chunks
    with EventLog(path) as log:
        assert log.read() == stored
        assert log.skipped == []


# --- writers and readers ------------------------------------------------------------------


def test_only_one_writer_at_a_time(log: EventLog, path: Path) -> None:
    with pytest.raises(EventLogLocked, match="already open for writing"):
        EventLog(path)
    log.close()
    with EventLog(path) as again:
        assert again.append(message("mine now")).id == 0


def test_a_reader_cannot_append(log: EventLog, path: Path) -> None:
    log.append(message("x"))
    with EventLog(path, read_only=True) as reader, pytest.raises(EventLogError, match="read-only"):
        reader.append(message("y"))


def test_a_reader_of_a_missing_file_is_empty_until_it_appears(path: Path) -> None:
    with EventLog(path, read_only=True) as reader:
        assert len(reader) == 0
        assert not path.exists()  # a reader creates nothing
        assert reader.refresh() == 0
        with EventLog(path) as writer:
            writer.append(message("first"))
        assert reader.refresh() == 1
        assert reader.read()[0].text == "first"  # type: ignore[union-attr]


def test_a_reader_follows_the_writer(log: EventLog, path: Path) -> None:
    log.append(message("a"))
    with EventLog(path, read_only=True) as reader:
        seen: list[int] = []
        reader.subscribe(lambda event: seen.append(event.id))
        appended = [log.append(message(t)) for t in "bcd"]
        assert reader.refresh() == 3
        assert reader.read(after_id=0) == appended
        assert seen == [1, 2, 3]
        assert reader.refresh() == 0


def test_a_reader_reloads_a_file_that_shrank(path: Path) -> None:
    with EventLog(path) as log:
        fill(log)
    with EventLog(path, read_only=True) as reader:
        assert len(reader) == 30
        path.write_text(lines_of(path)[0] + "\n")
        reader.refresh()
        assert [e.id for e in reader.read()] == [0]


def test_a_reader_reloads_a_file_that_was_replaced(path: Path) -> None:
    with EventLog(path) as log:
        first = log.append(message("old conversation"))
    with EventLog(path, read_only=True) as reader:
        assert reader.read() == [first]
        replacement = path.with_name("imported.jsonl")
        with EventLog(replacement) as other:
            new = [other.append(message(f"imported {i}")) for i in range(3)]
        os.replace(replacement, path)
        assert reader.refresh() == 3
        assert reader.read() == new
        path.unlink()
        assert reader.refresh() == 0  # a deleted file keeps what was read
        assert reader.read() == new


def test_a_closed_log_refuses_work(path: Path) -> None:
    log = EventLog(path)
    log.append(message("x"))
    log.close()
    log.close()  # idempotent
    assert log.closed
    for call in (
        lambda: log.append(message("y")),
        lambda: log.get(0),
        lambda: log.read(),
        lambda: log.search(),
        lambda: log.count(),
    ):
        with pytest.raises(EventLogError, match="closed"):
            call()


# --- subscribers and waiters --------------------------------------------------------------


def test_subscribers_get_each_event_in_order(log: EventLog) -> None:
    seen: list[Event] = []
    unsubscribe = log.subscribe(seen.append)
    stored = [log.append(message(str(i))) for i in range(3)]
    unsubscribe()
    log.append(message("after"))
    assert seen == stored


def test_a_failing_subscriber_does_not_break_append(
    log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    seen: list[int] = []
    log.subscribe(broken)
    log.subscribe(lambda event: seen.append(event.id))
    with caplog.at_level(logging.ERROR, logger="jupyter_convo.events.log"):
        assert log.append(message("x")).id == 0
    assert seen == [0]
    assert "subscriber failed on event 0" in caplog.text


async def test_wait_returns_at_once_when_events_exist(log: EventLog) -> None:
    stored = [log.append(message(str(i))) for i in range(3)]
    assert await log.wait(after_id=0) == stored[1:]
    assert await log.wait(after_id=-1, limit=1) == stored[:1]


async def test_wait_wakes_on_an_append_from_another_thread(log: EventLog) -> None:
    log.append(message("old"))
    waiting = asyncio.ensure_future(log.wait(after_id=0, timeout=WAIT))
    await asyncio.sleep(0)  # let the waiter register (one loop turn, not a pause)
    assert not waiting.done()
    appended: list[Event] = []
    thread = threading.Thread(target=lambda: appended.append(log.append(message("new"))))
    thread.start()
    events = await asyncio.wait_for(waiting, WAIT)
    thread.join(WAIT)
    assert events == appended
    assert events[0].id == 1


async def test_every_waiter_is_woken(log: EventLog) -> None:
    waiters = [asyncio.ensure_future(log.wait(after_id=-1, timeout=WAIT)) for _ in range(5)]
    await asyncio.sleep(0)
    stored = log.append(message("for all"))
    results = await asyncio.wait_for(asyncio.gather(*waiters), WAIT)
    assert results == [[stored]] * 5


async def test_wait_ignores_events_it_is_not_waiting_for(log: EventLog) -> None:
    waiting = asyncio.ensure_future(log.wait(after_id=1, timeout=WAIT))
    await asyncio.sleep(0)
    log.append(message("id 0"))
    for _ in range(5):  # let the waiter see id 0 and go back to waiting
        await asyncio.sleep(0)
    assert not waiting.done()
    log.append(message("id 1"))
    wanted = log.append(message("id 2"))
    assert await asyncio.wait_for(waiting, WAIT) == [wanted]


async def test_wait_times_out_with_nothing(log: EventLog) -> None:
    log.append(message("seen"))
    assert await log.wait(after_id=0, timeout=0.05) == []


async def test_wait_ends_with_an_error_when_the_log_closes(log: EventLog) -> None:
    waiting = asyncio.ensure_future(log.wait(after_id=-1, timeout=WAIT))
    await asyncio.sleep(0)
    log.close()
    with pytest.raises(EventLogError, match="closed"):
        await asyncio.wait_for(waiting, WAIT)


def test_a_waiter_on_another_threads_loop_is_woken(log: EventLog) -> None:
    registered = threading.Event()
    result: list[list[Event]] = []

    async def wait_there() -> None:
        waiting = asyncio.ensure_future(log.wait(after_id=-1, timeout=WAIT))
        await asyncio.sleep(0)
        registered.set()
        result.append(await waiting)

    thread = threading.Thread(target=asyncio.run, args=(wait_there(),))
    thread.start()
    assert registered.wait(WAIT)
    stored = log.append(message("cross-thread"))
    thread.join(WAIT)
    assert not thread.is_alive()
    assert result == [[stored]]


async def test_a_readers_refresh_wakes_its_waiters(log: EventLog, path: Path) -> None:
    with EventLog(path, read_only=True) as reader:
        waiting = asyncio.ensure_future(reader.wait(after_id=-1, timeout=WAIT))
        await asyncio.sleep(0)
        stored = log.append(message("seen by the reader"))
        assert not waiting.done()  # the reader only knows once it refreshes
        reader.refresh()
        assert await asyncio.wait_for(waiting, WAIT) == [stored]


# --- a real crash -------------------------------------------------------------------------

WRITER = """
import sys
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import CommandOutputEvent

log = EventLog(sys.argv[1])
i = 0
while True:
    event = log.append(CommandOutputEvent(output=f"event {i} " + "x" * (i % 40) * 500))
    print(event.id, flush=True)
    i += 1
"""


@pytest.mark.integration
def test_kill_9_mid_conversation_loses_no_flushed_event(path: Path) -> None:
    path.parent.mkdir(parents=True)
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acknowledged = -1
    try:
        assert process.stdout is not None
        while acknowledged < 300:
            line = process.stdout.readline()
            assert line, f"writer exited early: {process.communicate(timeout=WAIT)[1]}"
            acknowledged = int(line)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        rest, _ = process.communicate(timeout=WAIT)
    assert process.returncode == -signal.SIGKILL
    # Ids the writer printed after we stopped reading were acknowledged too.
    acknowledged = max([acknowledged, *(int(x) for x in rest.split())])

    with EventLog(path) as log:  # the dead writer's lock is gone
        assert log.skipped == []
        assert log.gaps == []
        assert log.last_id >= acknowledged
        events = log.read()
        assert [e.id for e in events] == list(range(len(events)))
        for event in events:
            expected = f"event {event.id} " + "x" * (event.id % 40) * 500
            assert event.output == expected  # type: ignore[union-attr]
        assert log.append(CommandOutputEvent(output="after the crash")).id == len(events)
