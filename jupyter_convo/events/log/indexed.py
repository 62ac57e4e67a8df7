"""The log file and its index kept in step: open, extend, append, adopt, repair.

Opening loads what the index file vouches for (``IndexFile.load``) and parses only the
lines after it, which also reports damage: a complete line that is not an event, or whose
id does not increase, is indexed as skipped (``SkippedLine``), an id jump is a gap. Lines
are read back through their records, each checked against its record before it is used;
a mismatch raises ``IndexDamaged`` and the caller rebuilds (``rebuild``) and tries again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import ValidationError

from ..redact import SecretRegistry
from ..schema import Event
from .cache import EventCache
from .indexfile import (
    FLAG_DAMAGED,
    HEADER,
    RECORD_SIZE,
    SKIPPED,
    IndexDamaged,
    IndexFile,
    Loaded,
    Record,
    event_class,
    pack_record,
    unpack_record,
)
from .lines import MAX_SPAN, LineScanner, line_check, parse, parse_error, pread, preview
from .model import SkippedLine, TornLine
from .positions import Positions

log = logging.getLogger(__name__)

LONG_RUN = 8  # neighbouring lines read as one span (fewer: record by record)
LONG_LINE = 2048  # bytes: lines at least this long on average are read one by one
SPILL_RECORDS = 4096  # records parsed on open are written to the index in batches this big


def index_path(log_path: Path) -> Path:
    """``events.idx`` beside ``events.jsonl``."""
    return log_path.with_suffix(".idx")


class IndexedLog:
    """One open log file (``fd``) with its positions, reports and (maybe) index file."""

    def __init__(
        self,
        path: Path,
        fd: int,
        *,
        writer: bool,
        secrets: SecretRegistry | None,
        cache: EventCache,
    ) -> None:
        self.path = path
        self.fd = fd
        self.writer = writer
        self.secrets = secrets
        self.cache = cache
        self.index: IndexFile | None = None
        self.positions = Positions()
        self.end = 0  # offset just after the last indexed line
        self.skipped: list[SkippedLine] = []
        self.gaps: list[tuple[int, int]] = []

    # -- opening ---------------------------------------------------------------------------

    def open(self, size: int) -> bytes:
        """Load the index and index the lines it lacks; returns the incomplete tail.

        The writer waits for the index lock (a reader may be repairing it). A reader takes
        it only if it is free (no writer runs), to save what it indexed, then gives it back.
        """
        path = index_path(self.path)
        index = IndexFile.open(path, lock=True, wait=self.writer)
        if index is None and not self.writer:
            index = IndexFile.open(path, lock=False, wait=False)
        self.index = index
        self.positions = Positions(index)
        if index is not None:
            try:
                self._load(index, index.load(self.fd, size))
            except IndexDamaged as exc:  # a damaged record met while reading the report
                log.warning("The index of %s is damaged (%s): rebuilding it", self.path, exc)
                if index.writable:
                    index.reset(0, 0)
                self.positions = Positions(index if index.writable else None)
                self.end, self.skipped, self.gaps = 0, [], []
        _, tail = self.extend(size, collect=False)
        if index is not None and not self.writer:
            index.release()
        return tail

    def drop_torn_tail(self, tail: bytes, *, fsync: bool) -> TornLine:
        """Cut the incomplete last line a dead writer left (the writer does, on open)."""
        torn = TornLine(self.end, len(tail), preview(tail, self.secrets))
        os.ftruncate(self.fd, self.end)
        if fsync:
            os.fsync(self.fd)
        log.warning(
            "Dropped a torn last line of %s at byte %d (%d bytes): %r",
            self.path,
            self.end,
            len(tail),
            torn.preview,
        )
        return torn

    def _load(self, index: IndexFile, loaded: Loaded) -> None:
        if index.writable:
            if loaded.exact:
                index.count, index.flags = loaded.count, loaded.flags
            else:
                if index.size() > HEADER.size:
                    log.info(
                        "The index of %s does not match the log after record %d: repairing it",
                        self.path,
                        loaded.count,
                    )
                index.reset(loaded.count, loaded.flags)
        self.positions.adopt_file(loaded.count, loaded.last, loaded.first)
        self.end = loaded.last.end if loaded.last is not None else 0
        if loaded.flags & FLAG_DAMAGED:
            self.gaps = self.positions.resummarize()
            for first, last in self.gaps:
                log.warning("Event ids jump from %d to %d in %s", first - 1, last + 1, self.path)
            self.skipped = [self._describe(p) for p in self.positions.skipped]

    def _describe(self, position: int) -> SkippedLine:
        """The report of a skipped line the index knows (read and judged again)."""
        record = self.positions.record(position)
        line = pread(self.fd, record.length, record.offset)
        return self._skip(
            record.offset, line, position, self._judge(line, record.id)[1] or "unreadable"
        )

    # -- indexing lines ----------------------------------------------------------------------

    def extend(self, size: int, *, collect: bool) -> tuple[list[Event], bytes]:
        """Index the complete lines between ``end`` and ``size``; returns the new events (if
        ``collect``) and the incomplete tail."""
        scanner = LineScanner(self.fd, self.end, size)
        cache_from = size - self.cache.max_bytes  # only the newest would stay cached
        events: list[Event] = []
        for offset, line in scanner:
            event = self._ingest(offset, line)
            self.end = offset + len(line) + 1
            if event is not None:
                if offset >= cache_from:
                    self.cache.put(event, len(line))
                if collect:
                    events.append(event)
            if len(self.positions.tail) >= SPILL_RECORDS * RECORD_SIZE:
                self._spill()
        self._spill()
        return events, scanner.tail

    def _judge(self, line: bytes, last_id: int) -> tuple[Event | None, str | None]:
        if not line or line.isspace():
            return None, "empty line"
        try:
            event = parse(line)
        except ValidationError as exc:
            return None, parse_error(exc)
        if event.id <= last_id:
            return None, f"id {event.id} does not follow id {last_id}"
        return event, None

    def _ingest(self, offset: int, line: bytes) -> Event | None:
        """Index one complete line at ``offset`` (or report why it is skipped)."""
        positions = self.positions
        last_id = positions.last_id
        event, reason = self._judge(line, last_id)
        check = line_check(line)
        if event is None:
            self._damaged()
            record = Record(offset, last_id, len(line), check, SKIPPED)
            self.skipped.append(self._skip(offset, line, len(positions), reason or "unreadable"))
        else:
            if event.id != last_id + 1:
                self._damaged()
                self.gaps.append((last_id + 1, event.id - 1))
                log.warning("Event ids jump from %d to %d in %s", last_id, event.id, self.path)
            klass = event_class(event.kind, event.source)
            record = Record(offset, event.id, len(line), check, klass)
        positions.add(pack_record(*record), record, in_file=False)
        return event

    def _skip(self, offset: int, line: bytes, position: int, reason: str) -> SkippedLine:
        skipped = SkippedLine(offset, len(line), position + 1, reason, preview(line, self.secrets))
        log.warning(
            "Skipped line %d of %s (byte %d): %s: %r",
            skipped.line_number,
            self.path,
            offset,
            reason,
            skipped.preview,
        )
        return skipped

    def _damaged(self) -> None:
        if self.index is not None and self.index.writable:
            self._guard(self.index.add_flags, FLAG_DAMAGED)

    def _spill(self) -> None:
        self._guard(self.positions.spill)

    def _guard(self, write: Callable[..., object], *args: object) -> None:
        """Run an index write; on failure (disk full...) stop writing the index this time."""
        try:
            write(*args)
        except OSError as exc:
            log.warning("Cannot write the index of %s (%s): going on without", self.path, exc)
            if self.index is not None:
                self.index.release()

    def append(self, offset: int, line: bytes, event: Event) -> None:
        """Index a line the writer just appended at ``offset``."""
        klass = event_class(event.kind, event.source)
        record = Record(offset, event.id, len(line), line_check(line), klass)
        packed = pack_record(*record)
        index = self.index
        in_file = False
        if index is not None and index.writable and not self.positions.tail:
            try:
                index.append(packed)
                in_file = True
            except OSError as exc:
                log.warning("Cannot write the index of %s (%s): going on without", self.path, exc)
                index.release()
        self.positions.add(packed, record, in_file=in_file)
        self.end = offset + len(line) + 1

    def adopt(self, size: int) -> list[int]:
        """Take the records the writer added to the index file since (a reader's refresh);
        returns the positions of the new events. Lines without a record are left to
        ``extend``."""
        index = self.index
        if index is None or os.fstat(index.fd).st_size <= HEADER.size:
            return []
        positions = self.positions
        start = len(positions)
        data = index.records(start, (index.size() - HEADER.size) // RECORD_SIZE)
        new: list[int] = []
        for at in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE):
            try:
                record = unpack_record(data, at)
            except IndexDamaged:
                break
            last_id = positions.last_id
            follows = record.id == last_id if record.skipped else record.id > last_id
            if record.offset != self.end or record.end > size or not follows:
                break
            position = len(positions)
            positions.add(data[at : at + RECORD_SIZE], record, in_file=positions.file is index)
            self.end = record.end
            if record.skipped:
                self.skipped.append(self._describe(position))
            else:
                if record.id != last_id + 1:
                    self.gaps.append((last_id + 1, record.id - 1))
                new.append(position)
        return new

    def rebuild(self, size: int) -> None:
        """Index the whole log again (the index did not hold up); a reader saves the new
        index too if no writer holds it."""
        self.cache.clear()
        index = self.index
        if index is None or not index.writable:
            if index is not None:
                index.close()
            path = index_path(self.path)
            index = IndexFile.open(path, lock=True, wait=False)
            index = index or IndexFile.open(path, lock=False, wait=False)
            self.index = index
        if index is not None and index.writable:
            index.reset(0, 0)
        self.positions = Positions(index)
        self.end = 0
        self.skipped, self.gaps = [], []
        self.extend(size, collect=False)
        if index is not None and not self.writer:
            index.release()

    # -- reading lines -----------------------------------------------------------------------

    def lines(self, wanted: list[int]) -> dict[int, tuple[Record, bytes]]:
        """The records and stored lines at these positions, each checked against the other.

        Neighbouring short lines are read in one call and split in C (``bytes.split``);
        long ones (``LONG_LINE``) each in its own call, which copies them once, not twice.
        """
        records = self.positions.records_at(wanted)
        result: dict[int, tuple[Record, bytes]] = {}
        for run in _runs(sorted(records), records):
            first, last = records[run[0]], records[run[-1]]
            size = last.end - first.offset
            if size >= LONG_LINE * len(run):
                # Exactly the line (one copy): its check covers both its ends, so a record
                # whose length is off by even one byte does not match.
                pieces = [pread(self.fd, records[p].length, records[p].offset) for p in run]
            else:
                pieces = pread(self.fd, size, first.offset).split(b"\n")
                if len(pieces) != len(run) + 1 or pieces.pop():
                    raise IndexDamaged(
                        f"the lines at byte {first.offset} do not match their records"
                    )
            expected = first.offset
            for position, line in zip(run, pieces, strict=True):
                record = records[position]
                if (
                    record.klass == SKIPPED
                    or record.offset != expected
                    or len(line) != record.length
                    or line_check(line) != record.check
                ):
                    raise IndexDamaged(
                        f"the line at byte {record.offset} does not match its record"
                    )
                expected = record.end
                result[position] = (record, line)
        return result

    def read_lines(self, ordered: list[int]) -> list[tuple[int, bytes]]:
        """The lines at these ascending positions: long runs of neighbours read whole
        (``run_lines``), the others record by record (``lines``)."""
        found: list[tuple[int, bytes]] = []
        scattered: list[int] = []
        i = 0
        while i < len(ordered):
            j = i + 1
            while j < len(ordered) and ordered[j] == ordered[j - 1] + 1:
                j += 1
            if j - i >= LONG_RUN:
                found += enumerate(self.run_lines(ordered[i], ordered[j - 1] + 1), ordered[i])
            else:
                scattered += ordered[i:j]
            i = j
        if scattered:
            found += ((p, line) for p, (_, line) in self.lines(scattered).items())
        return found

    def run_lines(self, start: int, stop: int) -> list[bytes]:
        """The lines at the neighbouring positions [start, stop), none of them skipped.

        Only the first and the last record are read: the span between them must split into
        exactly ``stop - start`` lines, the first and last matching their records (the text
        filter reads whole ranges like this, without a record per line).
        """
        first, last = self.positions.record(start), self.positions.record(stop - 1)
        size = last.end - first.offset
        if size > MAX_SPAN and stop - start > 1:
            middle = (start + stop) // 2
            return self.run_lines(start, middle) + self.run_lines(middle, stop)
        pieces = pread(self.fd, size, first.offset).split(b"\n")
        if (
            len(pieces) != stop - start + 1
            or pieces.pop()
            or line_check(pieces[0]) != first.check
            or line_check(pieces[-1]) != last.check
        ):
            raise IndexDamaged(f"the lines from byte {first.offset} do not match their records")
        return pieces

    def close(self) -> None:
        if self.index is not None:
            self.index.close()
            self.index = None


def _runs(ordered: list[int], records: dict[int, Record]) -> Iterator[list[int]]:
    """Runs of neighbouring positions, each at most ``MAX_SPAN`` bytes (or one line)."""
    run: list[int] = []
    size = 0
    for position in ordered:
        length = records[position].length + 1
        if run and (position != run[-1] + 1 or size + length > MAX_SPAN):
            yield run
            run, size = [], 0
        run.append(position)
        size += length
    if run:
        yield run
