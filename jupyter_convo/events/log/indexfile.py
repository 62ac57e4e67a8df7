"""The on-disk index beside a log (``events.idx`` next to ``events.jsonl``).

A 64-byte header, then one 32-byte record per line of the log, in file order::

    offset  q   byte offset of the line
    id      q   the event's id (a skipped line: the last good id before it, or -1)
    length  I   bytes of the line, without its newline
    check   I   ``lines.line_check`` of the line
    class   B   kind code << 2 | source code; 0xFF for a line that is not an event
    (pad)   3
    crc     I   crc32 of the 28 bytes before it

So opening a log and reading any page reads the header, a few records and the page's
lines: O(page), not O(log). The index is derived data, never trusted blindly: a record is
used only if its own crc holds, a line only if its length, newline and check agree, and on
open the first and the last records must match the log (else the last records are dropped
until one does, or the index is rebuilt). A log longer than its index (the writer died
between the two writes, or an old log without an index) is indexed from the last indexed
offset on. The header's kind table fingerprint makes a different schema rebuild it.
Records are read with ``pread`` (never mapped): a file another process truncates gives a
short read here, never a crash.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..schema import EVENT_KINDS
from .lines import CHECK_HEAD, CHECK_TAIL, pread
from .lock import lock_index, unlock_index

log = logging.getLogger(__name__)

MAGIC = b"JCVIDX\x00\n"
VERSION = 1
HEADER = struct.Struct("<8sHHII40xI")  # magic, version, record size, schema crc, flags; crc
BODY = struct.Struct("<qqIIB3x")
RECORD_SIZE = BODY.size + 4
WHOLE = struct.Struct("<qqIIB3xI")  # a record with its crc
CLASS_AT = 24  # byte of the class within a record
FLAG_DAMAGED = 1  # some record is a skipped line or ids jump: scan for them on open
SKIPPED = 0xFF
SOURCE_ORDER = ("agent", "user", "environment")
KIND_CODES = {kind: code for code, kind in enumerate(EVENT_KINDS)}
SOURCE_CODES = {source: code for code, source in enumerate(SOURCE_ORDER)}
SCHEMA_CRC = zlib.crc32("\n".join((*EVENT_KINDS, "", *SOURCE_ORDER)).encode())
WALK_BACK = 64  # records dropped at most from the end before the index is rebuilt
assert len(EVENT_KINDS) < 63, "kind codes must fit in 6 bits (63 marks skipped lines)"


class IndexDamaged(Exception):
    """A record or the line it points to does not hold up: rebuild the index."""


class Record(NamedTuple):
    offset: int
    id: int
    length: int
    check: int
    klass: int

    @property
    def skipped(self) -> bool:
        return self.klass == SKIPPED

    @property
    def end(self) -> int:
        """The offset just after the line's newline."""
        return self.offset + self.length + 1


_CLASSES = {
    (kind, source): KIND_CODES[kind] << 2 | code
    for kind in EVENT_KINDS
    for source, code in SOURCE_CODES.items()
}


def event_class(kind: str, source: str) -> int:
    return _CLASSES[kind, source]


CLASS_NAMES: tuple[tuple[str, str], ...] = tuple(
    (EVENT_KINDS[k >> 2], SOURCE_ORDER[k & 3])
    if (k >> 2) < len(EVENT_KINDS) and (k & 3) < len(SOURCE_ORDER)
    else ("", "")
    for k in range(256)
)  # class -> (kind, source)


def pack_record(offset: int, event_id: int, length: int, check: int, klass: int) -> bytes:
    body = BODY.pack(offset, event_id, length, check, klass)
    return body + zlib.crc32(body).to_bytes(4, "little")


def unpack_record(data: bytes | bytearray, at: int = 0) -> Record:
    """The record at ``at`` in ``data`` (``IndexDamaged`` if its crc does not hold)."""
    body = data[at : at + BODY.size]
    crc = int.from_bytes(data[at + BODY.size : at + RECORD_SIZE], "little")
    if len(body) != BODY.size or zlib.crc32(body) != crc:
        raise IndexDamaged("an index record does not match its checksum")
    return Record(*BODY.unpack(body))


def unpack_records(data: bytes) -> list[Record]:
    """Every record of a block of whole records, each checked against its crc."""
    view = memoryview(data)
    crc32 = zlib.crc32
    found = []
    for at, (offset, event_id, length, check, klass, crc) in zip(
        range(0, len(data), RECORD_SIZE), WHOLE.iter_unpack(data), strict=True
    ):
        if crc32(view[at : at + BODY.size]) != crc:
            raise IndexDamaged("an index record does not match its checksum")
        found.append(Record(offset, event_id, length, check, klass))
    return found


def header_bytes(flags: int) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, RECORD_SIZE, SCHEMA_CRC, flags, 0)
    return head[:-4] + zlib.crc32(head[:-4]).to_bytes(4, "little")


def parse_header(data: bytes) -> int | None:
    """The flags of a header of this version and schema, else None."""
    if len(data) != HEADER.size:
        return None
    magic, version, size, schema, flags, crc = HEADER.unpack(data)
    if zlib.crc32(data[:-4]) != crc or (magic, version, size, schema) != (
        MAGIC,
        VERSION,
        RECORD_SIZE,
        SCHEMA_CRC,
    ):
        return None
    return int(flags)


def line_holds(log_fd: int, record: Record, log_size: int) -> bool:
    """The log has a complete line where ``record`` says, with the recorded check."""
    if record.offset < 0 or record.end > log_size:
        return False
    start = max(0, record.offset - 1)  # the newline before the line, if any
    head = pread(log_fd, record.offset - start + min(record.length, CHECK_HEAD), start)
    if record.offset > 0 and head[:1] != b"\n":
        return False
    tail_length = min(record.length, CHECK_TAIL)
    tail = pread(log_fd, tail_length + 1, record.offset + record.length - tail_length)
    if tail[-1:] != b"\n":
        return False
    check = zlib.crc32(tail[:-1], zlib.crc32(head[record.offset - start :]))
    return check == record.check


@dataclass
class Loaded:
    """What ``IndexFile.load`` found: ``count`` records that match the log."""

    count: int
    flags: int
    first: Record | None
    last: Record | None
    exact: bool  # the file holds exactly the header and those records


class IndexFile:
    """The index file: records read with ``pread``; written only while its lock is held."""

    def __init__(self, path: Path, fd: int, *, writable: bool) -> None:
        self.path = path
        self.fd = fd
        self.writable = writable
        self.flags = 0
        self.count = 0  # records in the file that are in use
        self.inode = os.fstat(fd).st_ino

    @classmethod
    def open(cls, path: Path, *, lock: bool, wait: bool) -> IndexFile | None:
        """Open for reading, or (``lock``) for writing once its lock is ours; None if the
        file cannot be opened, or is locked and ``wait`` is off."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT if lock else os.O_RDONLY, 0o644)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or (lock and not lock_index(fd, wait=wait)):
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, writable=lock)

    def release(self) -> None:
        """Give the lock back (a reader that repaired the index); reading goes on."""
        if self.writable:
            self.writable = False
            unlock_index(self.fd)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)  # also releases the lock

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    # -- reading -----------------------------------------------------------------------

    def records(self, start: int, stop: int) -> bytes:
        """The raw records [start, stop) as stored (short if the file is shorter)."""
        if stop <= start:
            return b""
        return pread(self.fd, (stop - start) * RECORD_SIZE, HEADER.size + start * RECORD_SIZE)

    def record(self, position: int) -> Record:
        return unpack_record(self.records(position, position + 1))

    def load(self, log_fd: int, log_size: int) -> Loaded:
        """How many leading records match the log (see the module doc)."""
        size = self.size()
        flags = parse_header(pread(self.fd, HEADER.size, 0)) if size >= HEADER.size else None
        if flags is None:
            return Loaded(0, 0, None, None, exact=False)
        stored = (size - HEADER.size) // RECORD_SIZE
        exact = size == HEADER.size + stored * RECORD_SIZE
        if stored == 0:
            return Loaded(0, flags, None, None, exact)
        try:
            first = self.record(0)
        except IndexDamaged:
            first = None
        if first is None or first.offset != 0 or not line_holds(log_fd, first, log_size):
            return Loaded(0, 0, None, None, exact=False)
        block_start = max(0, stored - WALK_BACK)
        block = self.records(block_start, stored)
        for position in range(stored - 1, block_start - 1, -1):
            try:
                last = unpack_record(block, (position - block_start) * RECORD_SIZE)
            except IndexDamaged:
                continue
            if line_holds(log_fd, last, log_size):
                return Loaded(position + 1, flags, first, last, exact and position + 1 == stored)
        return Loaded(0, 0, None, None, exact=False)

    # -- writing (the lock is ours) ----------------------------------------------------

    def reset(self, keep: int, flags: int) -> None:
        """Keep the first ``keep`` records only, under a fresh header."""
        assert self.writable
        os.ftruncate(self.fd, HEADER.size + keep * RECORD_SIZE)
        self.flags = flags
        os.pwrite(self.fd, header_bytes(flags), 0)
        self.count = keep

    def add_flags(self, flags: int) -> None:
        if self.flags | flags != self.flags:
            self.flags |= flags
            os.pwrite(self.fd, header_bytes(self.flags), 0)

    def append(self, records: bytes) -> None:
        """Write whole records after the last one in use."""
        assert self.writable
        offset = HEADER.size + self.count * RECORD_SIZE
        written = os.pwrite(self.fd, records, offset)
        while written < len(records):  # a short write: rare, but possible
            written += os.pwrite(self.fd, records[written:], offset + written)
        self.count += len(records) // RECORD_SIZE
