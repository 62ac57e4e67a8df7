"""Where each line of a log is: by position (0..n-1, file order), id, kind and source.

The records of the first ``file_count`` lines are read from the index file on demand; the
records of lines indexed since that could not be written there (a reader beside a running
writer, a read-only folder) are kept in memory. Ids increase with position; a skipped line
(not an event) has a position but carries the last good id before it, so id lookups are
bisections that land on events. Kind and source filters scan the one-byte class column of
the records (a strided slice, then ``bytes.translate``/``find`` in C), never the log.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from .indexfile import (
    CLASS_AT,
    RECORD_SIZE,
    SKIPPED,
    IndexDamaged,
    IndexFile,
    Record,
    unpack_record,
    unpack_records,
)

WINDOW = 4096  # records scanned at once by filters (128 KB)
FIRST_WINDOW = 256
EVERY_EVENT = bytes(0 if klass == SKIPPED else 1 for klass in range(256))


def class_table(classes: Sequence[int] | None) -> bytes | None:
    """A ``bytes.translate`` table marking the wanted classes with 1 (None: any event)."""
    if classes is None:
        return None
    wanted = set(classes)
    return bytes(1 if klass in wanted else 0 for klass in range(256))


class _Ids(Sequence[int]):
    """The id column as a sequence, for ``bisect`` (one record read per probe)."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, position: int) -> int:  # type: ignore[override]
        return self.positions.record(position).id


class Positions:
    """The records of a log's lines: in the index file, then in memory (module doc)."""

    def __init__(self, file: IndexFile | None = None) -> None:
        self.file = file
        self.file_count = 0
        self.tail = bytearray()
        self.skipped: list[int] = []  # positions of lines that are not events
        self.first_id: int | None = None
        self.last_id = -1
        self.consecutive = True  # ids are first_id + position at every position
        # The class column of every record, once a count has read it whole; then kept.
        self.column: bytearray | None = None

    def __len__(self) -> int:
        return self.file_count + len(self.tail) // RECORD_SIZE

    @property
    def events(self) -> int:
        return len(self) - len(self.skipped)

    # -- growing -------------------------------------------------------------------------

    def adopt_file(self, count: int, last: Record | None, first: Record | None) -> None:
        """Use the first ``count`` records of the file (checked by ``IndexFile.load``)."""
        self.file_count = count
        if last is not None:
            self.last_id = last.id
        if first is not None and not first.skipped:
            self.first_id = first.id

    def note(self, record: Record, position: int) -> None:
        """Keep the summary (ids, skipped lines) up to date for a record at ``position``."""
        if record.klass == SKIPPED:
            self.skipped.append(position)
            self.consecutive = False
        elif self.first_id is None:
            self.first_id = record.id
            self.consecutive = self.consecutive and position == 0
        elif record.id != self.last_id + 1:
            self.consecutive = False
        self.last_id = record.id

    def add(self, packed: bytes, record: Record, *, in_file: bool) -> None:
        """One more record: already in the file at its position (``in_file``) or not."""
        tail = self.tail
        position = self.file_count + len(tail) // RECORD_SIZE
        if in_file and not tail:
            self.file_count += 1
        else:
            tail += packed
        if self.column is not None:
            self.column.append(record.klass)
        if record.klass != SKIPPED and record.id == self.last_id + 1 and self.first_id is not None:
            self.last_id = record.id  # the usual case, in short
        else:
            self.note(record, position)

    def spill(self) -> int:
        """Append the records kept in memory to the index file, if it is ours and they
        follow its last record; returns how many moved."""
        file = self.file
        if not self.tail or file is None or not file.writable or file.count != self.file_count:
            return 0
        moved = len(self.tail) // RECORD_SIZE
        file.append(bytes(self.tail))
        self.file_count += moved
        self.tail.clear()
        return moved

    def resummarize(self) -> list[tuple[int, int]]:
        """Walk every record again (an index marked damaged): skipped lines, id gaps."""
        self.skipped, self.first_id, self.last_id, self.consecutive = [], None, -1, True
        gaps: list[tuple[int, int]] = []
        step = WINDOW * 16
        for low in range(0, len(self), step):
            data = self.block(low, low + step)
            for at in range(0, len(data), RECORD_SIZE):
                record = unpack_record(data, at)
                if not record.skipped and record.id != self.last_id + 1:
                    gaps.append((self.last_id + 1, record.id - 1))
                self.note(record, low + at // RECORD_SIZE)
        return gaps

    # -- reading records -------------------------------------------------------------------

    def block(self, start: int, stop: int) -> bytes:
        """The packed records [start, stop)."""
        stop = min(stop, len(self))
        if stop <= start:
            return b""
        parts = []
        if start < self.file_count:
            assert self.file is not None
            want = min(stop, self.file_count)
            data = self.file.records(start, want)
            if len(data) != (want - start) * RECORD_SIZE:
                raise IndexDamaged("the index file is shorter than it was")
            parts.append(data)
        if stop > self.file_count:
            first = max(start, self.file_count) - self.file_count
            last = stop - self.file_count
            parts.append(bytes(self.tail[first * RECORD_SIZE : last * RECORD_SIZE]))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def record(self, position: int) -> Record:
        if not 0 <= position < len(self):
            raise IndexError(position)
        record = unpack_record(self.block(position, position + 1))
        self._check_id(position, record)
        return record

    def records(self, start: int, stop: int) -> list[Record]:
        found = unpack_records(self.block(start, stop))
        first = self.first_id
        if self.consecutive and first is not None:
            for offset, record in enumerate(found, start=start):
                if record.id != first + offset and record.klass != SKIPPED:
                    raise IndexDamaged(f"index record {offset} holds id {record.id}")
        return found

    def ids(self, positions: list[int]) -> list[int]:
        """The ids at these positions (arithmetic while ids are consecutive)."""
        if self.consecutive and self.first_id is not None:
            first = self.first_id
            return [first + position for position in positions]
        found = self.records_at(positions)
        return [found[position].id for position in positions]

    def records_at(self, positions: list[int]) -> dict[int, Record]:
        """The records at these positions: one read when they are close together (a
        filtered page), else one read per run of neighbours."""
        ordered = sorted(set(positions))
        if not ordered:
            return {}
        low, high = ordered[0], ordered[-1] + 1
        if high - low <= max(4 * len(ordered), WINDOW):
            block = self.block(low, high)
            found = {p: unpack_record(block, (p - low) * RECORD_SIZE) for p in ordered}
            for position, record in found.items():
                self._check_id(position, record)
            return found
        found = {}
        i = 0
        while i < len(ordered):
            j = i + 1
            while j < len(ordered) and ordered[j] == ordered[j - 1] + 1:
                j += 1
            for offset, record in enumerate(self.records(ordered[i], ordered[j - 1] + 1)):
                found[ordered[i] + offset] = record
            i = j
        return found

    def _check_id(self, position: int, record: Record) -> None:
        first = self.first_id
        if (
            self.consecutive
            and first is not None
            and not record.skipped
            and record.id != first + position
        ):
            raise IndexDamaged(f"index record {position} holds id {record.id}")

    def classes(self, start: int, stop: int) -> bytes:
        if self.column is not None:
            return bytes(self.column[start:stop])
        return self.block(start, stop)[CLASS_AT::RECORD_SIZE]

    # -- lookups ---------------------------------------------------------------------------

    def position(self, event_id: int) -> int | None:
        """The position of the event with this id, or None."""
        if self.first_id is None:
            return None
        if self.consecutive:
            position = event_id - self.first_id
            return position if 0 <= position < len(self) else None
        position = bisect.bisect_left(_Ids(self), event_id)
        if position < len(self):
            record = self.record(position)
            if record.id == event_id and not record.skipped:
                return position
        return None

    def bounds(self, after_id: int | None, before_id: int | None) -> tuple[int, int]:
        """Positions [start, stop) of the lines with ids strictly between the two."""
        size = len(self)
        if self.consecutive:
            first = self.first_id or 0
            start = 0 if after_id is None else min(size, max(0, after_id + 1 - first))
            stop = size if before_id is None else min(size, max(0, before_id - first))
        else:
            ids = _Ids(self)
            start = 0 if after_id is None else bisect.bisect_right(ids, after_id, 0, size)
            stop = size if before_id is None else bisect.bisect_left(ids, before_id, 0, size)
        return start, max(start, stop)

    def candidates(
        self, start: int, stop: int, table: bytes | None, reverse: bool
    ) -> Iterator[int]:
        """Positions in [start, stop) whose class ``table`` marks, in the order asked."""
        if table is None and not self.skipped:
            return iter(range(stop - 1, start - 1, -1) if reverse else range(start, stop))
        return self._scan(start, stop, table or EVERY_EVENT, reverse)

    def _scan(self, start: int, stop: int, table: bytes, reverse: bool) -> Iterator[int]:
        window = FIRST_WINDOW  # a page usually needs few records: start small, then grow
        while start < stop:
            if reverse:
                low, high = max(start, stop - window), stop
            else:
                low, high = start, min(stop, start + window)
            window = min(2 * window, WINDOW)
            column = self.classes(low, high).translate(table)
            if reverse:
                found = column.rfind(1)
                while found >= 0:
                    yield low + found
                    found = column.rfind(1, 0, found)
                stop = low
            else:
                found = column.find(1)
                while found >= 0:
                    yield low + found
                    found = column.find(1, found + 1)
                start = high

    def count(self, start: int, stop: int, table: bytes | None) -> int:
        """How many positions in [start, stop) ``table`` marks."""
        if table is None:
            skipped = bisect.bisect_left(self.skipped, stop) - bisect.bisect_left(
                self.skipped, start
            )
            return stop - start - skipped
        if self.column is None:  # read it once; counts and filters then stay in memory
            step = WINDOW * 16
            column = bytearray()
            for low in range(0, len(self), step):
                column += self.block(low, low + step)[CLASS_AT::RECORD_SIZE]
            self.column = column
        return self.column[start:stop].translate(table).count(1)
