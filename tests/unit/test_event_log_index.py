"""The event log's index (``events.idx``): lazy reads, and every crash it must survive.

Each crash case damages the files the way a crash (or a stray copy) would, then proves that
readers and the next writer give exactly the valid events: those a naive full parse of the
log's complete lines finds, nothing more, nothing less, in order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from jupyter_convo.events.log import EventLog, RawEvent, eventlog, indexed, indexfile
from jupyter_convo.events.log.indexfile import HEADER, RECORD_SIZE
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


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "c1" / "events.jsonl"


def index_of(path: Path) -> Path:
    return path.with_name("events.idx")


def sample(n: int) -> list[EventBase]:
    """A mix of kinds and sources, with sizes that vary."""
    events: list[EventBase] = []
    for i in range(n):
        if i % 4 == 0:
            events.append(MessageEvent(source="user" if i % 8 else "agent", text=f"message {i}"))
        elif i % 4 == 1:
            events.append(CommandEvent(command=f"echo {i}"))
        elif i % 4 == 2:
            events.append(CommandOutputEvent(output=f"output {i} " + "x" * (i * 7 % 300)))
        else:
            events.append(ThinkEvent(thought=f"thought {i}"))
    return events


def write(path: Path, events: list[EventBase]) -> list[Event]:
    with EventLog(path) as log:
        return [log.append(event) for event in events]


def naive(path: Path) -> list[tuple[Event, bytes]]:
    """What a full parse of the complete lines gives: valid events with increasing ids."""
    data = path.read_bytes()
    found: list[tuple[Event, bytes]] = []
    last_id = -1
    for line in data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]:
        try:
            event = event_from_json(line)
        except ValidationError:
            continue
        if event.id > last_id:
            found.append((event, line))
            last_id = event.id
    return found


def assert_reads_exactly(log: EventLog, path: Path) -> None:
    """Every way of reading ``log`` gives what the naive parse of ``path`` gives."""
    expected = naive(path)
    events = [event for event, _ in expected]
    # Raw reads first: they parse nothing, so only the index's own checks can catch damage.
    assert [(raw.id, raw.line) for raw in log.read_raw()] == [(e.id, line) for e, line in expected]
    assert log.read() == events
    assert len(log) == len(events)
    assert log.last_id == (events[-1].id if events else -1)
    for event in events:
        assert log.get(event.id) == event
    for kind in ("message", "command_output"):
        wanted = [e for e in events if e.kind == kind]
        assert log.search(kind=kind, limit=1000).items == wanted
        assert log.count(kind=kind) == len(wanted)
    agents = [e for e in events if e.source == "agent"]
    assert log.search(source="agent", reverse=True, limit=1000).items == agents[::-1]
    if events:
        middle = events[len(events) // 2].id
        assert log.read(after_id=middle, limit=5) == [e for e in events if e.id > middle][:5]


def reopened_fine(path: Path) -> None:
    """Readers and the next writer agree with the naive parse; the writer goes on."""
    with EventLog(path, read_only=True) as reader:
        assert_reads_exactly(reader, path)
    with EventLog(path) as writer:
        assert_reads_exactly(writer, path)
        last = writer.last_id
        assert writer.append(MessageEvent(source="user", text="after")).id == last + 1
    with EventLog(path, read_only=True) as reader:
        assert_reads_exactly(reader, path)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every line the log validates, in order (the reads and the indexer both count)."""
    seen: list[bytes] = []
    real = eventlog.parse

    def counting(line: bytes | str) -> Event:
        seen.append(line if isinstance(line, bytes) else line.encode())
        return real(line)

    monkeypatch.setattr(eventlog, "parse", counting)
    monkeypatch.setattr(indexed, "parse", counting)
    yield seen


# --- what the index buys --------------------------------------------------------------------


def test_the_writer_keeps_an_index_beside_the_log(path: Path) -> None:
    stored = write(path, sample(50))
    index = index_of(path)
    assert index.stat().st_size == HEADER.size + 50 * RECORD_SIZE
    with EventLog(path, read_only=True) as reader:
        assert reader.read() == stored


def test_opening_an_indexed_log_parses_nothing_and_a_page_parses_the_page(
    path: Path, parses: list[bytes]
) -> None:
    stored = write(path, sample(400))
    parses.clear()
    with EventLog(path, read_only=True, cache_bytes=0) as reader:
        assert parses == []  # opening validated no line
        page = reader.search(after_id=199, limit=20)
        assert page.items == stored[200:220]
        assert len(parses) == 20  # the page, nothing else
        parses.clear()
        assert reader.count(kind="command") == 100
        assert [e.id for e in reader.search(kind="think", source="agent", limit=3).items] == [
            3,
            7,
            11,
        ]
        assert len(parses) == 3  # kind and source come from the index


def test_raw_reads_hand_out_the_stored_lines_without_parsing(
    path: Path, parses: list[bytes]
) -> None:
    stored = write(path, sample(30))
    lines = path.read_bytes().split(b"\n")[:-1]
    parses.clear()
    with EventLog(path, read_only=True) as reader:
        raw = reader.read_raw(after_id=9, limit=5)
        assert raw == [RawEvent(e.id, e.kind, e.source, lines[e.id]) for e in stored[10:15]]
        page = reader.search_raw(kind="command_output", reverse=True, limit=2)
        assert [item.id for item in page.items] == [26, 22]
        assert page.next_page_id is not None
        again = reader.search_raw(
            kind="command_output", reverse=True, limit=2, page_id=page.next_page_id
        )
        assert [item.id for item in again.items] == [18, 14]
    assert parses == []


def test_a_reader_follows_the_writer_through_its_index(path: Path, parses: list[bytes]) -> None:
    with EventLog(path) as writer, EventLog(path, read_only=True) as reader:
        stored = [writer.append(event) for event in sample(10)]
        parses.clear()
        assert reader.refresh() == 10
        assert parses == []  # the writer's records were taken, no line parsed
        assert reader.read() == stored


# --- crashes ---------------------------------------------------------------------------------


def test_log_truncated_mid_line(path: Path) -> None:
    write(path, sample(40))
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 25])  # last line torn
    with EventLog(path, read_only=True) as reader:
        assert len(reader) == 39
        assert_reads_exactly(reader, path)
    with EventLog(path) as writer:
        assert writer.recovered is not None
    reopened_fine(path)


def test_a_line_appended_without_its_index_record(path: Path, parses: list[bytes]) -> None:
    write(path, sample(20))
    extra = MessageEvent(source="user", text="written, then the writer died")
    with path.open("ab") as handle:  # the log write happened, the index write did not
        handle.write(event_to_json(extra.model_copy(update={"id": 20})).encode() + b"\n")
    parses.clear()
    with EventLog(path, read_only=True) as reader:
        assert reader.get(20).text == extra.text  # type: ignore[union-attr]
        assert_reads_exactly(reader, path)
    assert parses[0].startswith(b'{"id":20,')  # only the line the index lacked was indexed
    reopened_fine(path)
    assert index_of(path).stat().st_size == HEADER.size + 22 * RECORD_SIZE


@pytest.mark.parametrize(
    "cut", [HEADER.size + 7 * RECORD_SIZE, HEADER.size + 7 * RECORD_SIZE + 13, 10, 0]
)
def test_index_truncated(path: Path, cut: int) -> None:
    write(path, sample(30))
    index = index_of(path)
    index.write_bytes(index.read_bytes()[:cut])
    reopened_fine(path)
    assert index.stat().st_size == HEADER.size + 31 * RECORD_SIZE  # repaired by the writer


@pytest.mark.parametrize("where", ["header", "first", "middle", "last", "everything"])
def test_index_corrupted(path: Path, where: str) -> None:
    write(path, sample(30))
    index = index_of(path)
    data = bytearray(index.read_bytes())
    spots = {
        "header": range(8, 12),
        "first": range(HEADER.size, HEADER.size + 4),
        "middle": range(HEADER.size + 15 * RECORD_SIZE, HEADER.size + 15 * RECORD_SIZE + 3),
        "last": range(len(data) - 20, len(data) - 17),
        "everything": range(len(data)),
    }[where]
    for at in spots:
        data[at] ^= 0x5A
    index.write_bytes(bytes(data))
    reopened_fine(path)


def test_index_record_that_points_elsewhere_with_a_valid_checksum(path: Path) -> None:
    """A record that holds up on its own but not against the log is caught by the line."""
    write(path, sample(30))
    index = index_of(path)
    data = bytearray(index.read_bytes())
    at = HEADER.size + 12 * RECORD_SIZE
    record = indexfile.unpack_record(bytes(data), at)
    forged = indexfile.pack_record(
        record.offset + 3, record.id, record.length, record.check, record.klass
    )
    data[at : at + RECORD_SIZE] = forged
    index.write_bytes(bytes(data))
    reopened_fine(path)


def test_index_records_of_two_equal_lines_swapped(path: Path) -> None:
    """Both records hold up on their own and point at whole lines: only the check on the
    line's bytes tells that each points at the other's line."""
    write(path, sample(30))
    lines = path.read_bytes().split(b"\n")
    assert len(lines[16]) == len(lines[24])  # two "message" lines of the same length
    index = index_of(path)
    data = bytearray(index.read_bytes())
    spots = [HEADER.size + n * RECORD_SIZE for n in (16, 24)]
    first, second = (indexfile.unpack_record(bytes(data), at) for at in spots)
    for at, record, other in ((spots[0], first, second), (spots[1], second, first)):
        data[at : at + RECORD_SIZE] = indexfile.pack_record(
            other.offset, record.id, record.length, record.check, record.klass
        )
    index.write_bytes(bytes(data))
    reopened_fine(path)


def test_index_from_another_log(path: Path, tmp_path: Path) -> None:
    other = tmp_path / "c2" / "events.jsonl"
    write(other, sample(30))
    write(path, sample(30))  # same kinds and lengths, other timestamps
    shutil.copy(index_of(other), index_of(path))
    reopened_fine(path)
    shutil.copy(index_of(other), index_of(path))
    write(path, [])  # the writer alone repairs it too
    other_bytes = index_of(other).read_bytes()
    assert index_of(path).read_bytes()[HEADER.size :] != other_bytes[HEADER.size :]


def test_index_longer_than_the_log(path: Path) -> None:
    """The log lost its last lines (a restore, a power cut before the data reached disk)."""
    write(path, sample(30))
    data = path.read_bytes()
    keep = 0
    for _ in range(27):
        keep = data.index(b"\n", keep) + 1
    path.write_bytes(data[:keep])
    reopened_fine(path)


def test_both_torn(path: Path) -> None:
    """The log ends in a torn line and the index in half a record."""
    write(path, sample(30))
    data = path.read_bytes()
    path.write_bytes(data + b'{"id":30,"timestamp":"2026-')
    index = index_of(path)
    index.write_bytes(index.read_bytes() + b"\x01" * 13)
    with EventLog(path, read_only=True) as reader:
        assert len(reader) == 30
        assert_reads_exactly(reader, path)
    reopened_fine(path)


def test_an_index_record_for_a_line_that_never_reached_the_disk(path: Path) -> None:
    """Power cut: the index write survived, the log's line did not (or only half)."""
    write(path, sample(30))
    data = path.read_bytes()
    last = data.rfind(b"\n", 0, len(data) - 1) + 1
    path.write_bytes(data[: last + 40])  # the last line torn, its record intact
    reopened_fine(path)


def test_bad_lines_are_reported_again_from_the_index(path: Path) -> None:
    write(path, sample(20))
    lines = path.read_bytes().split(b"\n")[:-1]
    lines[5] = b'{"id": 5, "kind": "broken'
    lines.insert(9, b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    with EventLog(path) as writer:  # indexes the damage once
        first = (writer.skipped, writer.gaps)
        assert [s.line_number for s in writer.skipped] == [6, 10]
        assert writer.gaps == [(5, 5)]
    for _ in range(2):  # then opening reads the report back from the index
        with EventLog(path, read_only=True) as reader:
            assert (reader.skipped, reader.gaps) == first
            assert_reads_exactly(reader, path)


def test_a_reader_rebuilds_an_index_it_cannot_trust_and_saves_it(path: Path) -> None:
    write(path, sample(25))
    index_of(path).unlink()
    with EventLog(path, read_only=True) as reader:
        assert_reads_exactly(reader, path)
    assert index_of(path).stat().st_size == HEADER.size + 25 * RECORD_SIZE


def test_a_reader_beside_a_writer_does_not_touch_the_index(path: Path) -> None:
    with EventLog(path) as writer:
        for event in sample(10):
            writer.append(event)
        before = index_of(path).read_bytes()
        with EventLog(path, read_only=True) as reader:
            assert_reads_exactly(reader, path)
        assert index_of(path).read_bytes() == before
        writer.append(MessageEvent(source="user", text="the writer still owns it"))
    assert index_of(path).stat().st_size == HEADER.size + 11 * RECORD_SIZE


def test_an_index_damaged_while_a_reader_has_it_open(path: Path) -> None:
    stored = write(path, sample(30))
    with EventLog(path, read_only=True, cache_bytes=0) as reader:
        index = index_of(path)
        data = bytearray(index.read_bytes())
        for at in range(HEADER.size + 10 * RECORD_SIZE, HEADER.size + 20 * RECORD_SIZE):
            data[at] = 0
        index.write_bytes(bytes(data))
        assert reader.read() == stored  # the damage is found, the index rebuilt in memory
        assert reader.search(after_id=12, limit=3).items == stored[13:16]


def test_an_unwritable_index_leaves_the_log_working(path: Path) -> None:
    index = index_of(path)
    index.parent.mkdir(parents=True)
    index.mkdir()  # a directory where the index should be: it cannot be opened
    stored = write(path, sample(12))
    with EventLog(path, read_only=True) as reader:
        assert reader.read() == stored
    os.rmdir(index)


def test_a_reader_refuses_writer_records_that_do_not_follow(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A following reader takes the writer's records only if they chain onto its own
    (else it indexes the lines itself: no damaged record is ever used, nothing rebuilt)."""
    with EventLog(path) as writer, EventLog(path, read_only=True) as reader:
        stored = [writer.append(event) for event in sample(5)]
        assert reader.refresh() == 5
        stored += [writer.append(event) for event in sample(3)]
        index = index_of(path)
        data = bytearray(index.read_bytes())
        at = HEADER.size + 5 * RECORD_SIZE
        record = indexfile.unpack_record(bytes(data), at)
        data[at : at + RECORD_SIZE] = indexfile.pack_record(
            record.offset + 1, record.id, record.length, record.check, record.klass
        )
        index.write_bytes(bytes(data))
        assert reader.refresh() == 3
        assert [(r.id, r.line) for r in reader.read_raw()] == [
            (e.id, line) for e, line in naive(path)
        ]
        assert reader.read() == stored
        assert "rebuilding" not in caplog.text


def test_bad_filters_are_refused_even_before_the_log_exists(path: Path) -> None:
    with EventLog(path, read_only=True) as reader:
        with pytest.raises(ValueError, match="dance"):
            reader.search(kind="dance")
        with pytest.raises(ValueError, match="dance"):
            reader.search_raw(kind="dance")
        with pytest.raises(ValueError, match="nobody"):
            reader.count(source="nobody")
        with pytest.raises(ValueError, match="page_id"):
            reader.search(page_id="garbage")
        assert reader.read() == [] and reader.read_raw() == []


def test_filters_after_a_count_follow_new_events(path: Path) -> None:
    """A count reads the index's class column once and keeps it; appends keep it current."""
    with EventLog(path) as writer, EventLog(path, read_only=True) as reader:
        for event in sample(20):
            writer.append(event)
        reader.refresh()
        for log in (writer, reader):
            assert log.count(kind="command") == 5
        for event in sample(20):
            writer.append(event)
        reader.refresh()
        for log in (writer, reader):
            assert_reads_exactly(log, path)
            assert log.count(kind="command") == 10
            agents = [e for e, _ in naive(path) if e.source == "agent" and e.id > 20]
            assert log.count(source="agent", after_id=20) == len(agents) == 12


@pytest.mark.parametrize("change", ["longer", "shorter", "swapped", "foreign"])
def test_long_lines_are_checked_as_well(path: Path, tmp_path: Path, change: str) -> None:
    """Lines of 2 KB and more are read one by one, not split out of a span: their records
    must hold up against the lines all the same."""
    long_sample = [CommandOutputEvent(output=f"{i:03d} " + "y" * 5000) for i in range(12)]
    write(path, long_sample)
    index = index_of(path)
    data = bytearray(index.read_bytes())
    spots = [HEADER.size + n * RECORD_SIZE for n in (4, 7)]
    first, second = (indexfile.unpack_record(bytes(data), at) for at in spots)
    if change == "foreign":
        other = tmp_path / "other" / "events.jsonl"
        write(other, long_sample)
        data = bytearray(index_of(other).read_bytes())
    elif change == "swapped":
        for at, record, other_record in ((spots[0], first, second), (spots[1], second, first)):
            data[at : at + RECORD_SIZE] = indexfile.pack_record(
                other_record.offset, record.id, record.length, record.check, record.klass
            )
    else:
        delta = 1 if change == "longer" else -1
        data[spots[0] : spots[0] + RECORD_SIZE] = indexfile.pack_record(
            first.offset, first.id, first.length + delta, first.check, first.klass
        )
    index.write_bytes(bytes(data))
    reopened_fine(path)
