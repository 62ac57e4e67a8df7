"""The append-only event log of one conversation: ``conversations/<id>/events.jsonl``.

The file is the truth. One event per line, in id order, written in one ``os.write`` of the
whole line (so it is flushed to the OS before ``append`` returns; ``fsync=True`` also asks
the disk). Every line is redacted before it is written.

One writer (the runtime) holds an advisory lock on the file while it is open; readers
(``read_only=True``: the server when the runtime is down, or a tail) take no lock and call
``refresh()`` to pick up lines the writer appended.

Damage is contained, never fatal:

- A torn last line (the writer died mid-write) is truncated away when the *writer* opens the
  file, reported in ``recovered`` and logged. A reader only ignores an incomplete tail until
  it is complete: it may be a line being written right now.
- A complete line in the middle that is not valid JSON, not a valid event, or whose id does
  not increase is skipped, reported in ``skipped`` (``SkippedLine``: byte offset, line
  number, reason, a short preview) and logged; every other line is kept.
- Ids should be consecutive. A jump (e.g. because the line in between was skipped) is
  accepted, reported in ``gaps`` and logged; the next append continues after the highest id.

An in-memory index (byte offset, length, kind and source per event, positions per kind and
per source) serves ``get``/``read``/``search``/``count`` without re-scanning the file; only
a ``text`` filter reads the stored lines. Parsed events are kept in a cache bounded by the
size of their lines.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import bisect
import contextlib
import heapq
import itertools
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticSerializationError

from .redact import SecretRegistry
from .schema import EVENT_ADAPTER, EVENT_KINDS, Event, EventBase, event_to_dict, event_to_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one writer by convention
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SOURCES: frozenset[str] = frozenset({"agent", "user", "environment"})
MAX_PAGE_LIMIT = 1000
PREVIEW_CHARS = 120
# Counted in stored line bytes; a parsed event takes about 4 times its line in memory.
DEFAULT_CACHE_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 4 * 1024 * 1024  # scanning the file on open / refresh
_MAX_SPAN = 8 * 1024 * 1024  # largest single read when loading neighbouring lines
_TEXT_BATCH = 512  # lines read at once by the text filter

Subscriber = Callable[[Event], None]

# The compiled validator itself: the same checks as EVENT_ADAPTER.validate_json, less overhead.
_validate_json = EVENT_ADAPTER.validator.validate_json


def _parse(line: bytes | str) -> Event:
    """One stored line as an event (raises ``pydantic.ValidationError``)."""
    event: Event = _validate_json(line)
    return event


class EventLogError(RuntimeError):
    """The log cannot do what was asked (closed, read-only, locked, event not storable)."""


class EventLogLocked(EventLogError):
    """Another writer has the log open."""


@dataclass(frozen=True)
class TornLine:
    """An incomplete last line the writer dropped on open (the previous writer died mid-write)."""

    offset: int
    length: int
    preview: str


@dataclass(frozen=True)
class SkippedLine:
    """A complete line that was not loaded; the rest of the log was."""

    offset: int
    length: int
    line_number: int
    reason: str
    preview: str


class EventPage(BaseModel):
    """One page of search results; pass ``next_page_id`` back as ``page_id`` for the next."""

    model_config = ConfigDict(frozen=True)

    items: list[Event]
    next_page_id: str | None = None


# --- page cursors -----------------------------------------------------------------------


def _encode_cursor(last_id: int, reverse: bool) -> str:
    raw = json.dumps({"id": last_id, "reverse": reverse}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(page_id: str) -> tuple[int, bool]:
    try:
        raw = base64.urlsafe_b64decode(page_id + "=" * (-len(page_id) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid page_id {page_id!r}: not a cursor from this log") from exc
    last_id = data.get("id") if isinstance(data, dict) else None
    reverse = data.get("reverse") if isinstance(data, dict) else None
    if type(last_id) is not int or not isinstance(reverse, bool):
        raise ValueError(f"invalid page_id {page_id!r}: not a cursor from this log")
    return last_id, reverse


# --- small helpers ----------------------------------------------------------------------


def _preview(data: bytes, secrets: SecretRegistry | None) -> str:
    text = data[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]
    return secrets.redact(text) if secrets is not None else text


def _pread(fd: int, length: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # pragma: no cover - Windows, callers hold the lock
    return os.read(fd, length)  # pragma: no cover


def _parse_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    if first.get("type") == "json_invalid":
        return "not valid JSON"
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"not a valid event: {where + ': ' if where else ''}{first.get('msg', exc)}"


def _redact_values(value: Any, secrets: SecretRegistry) -> Any:
    """Redact every string inside a JSON-like value (keys are field names, left alone)."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, list):
        return [_redact_values(item, secrets) for item in value]
    if isinstance(value, dict):
        return {key: _redact_values(item, secrets) for key, item in value.items()}
    return value


class _TextFilter:
    """Case-insensitive "contains" on a stored line, for the text as typed or JSON-escaped."""

    def __init__(self, text: str) -> None:
        escaped = json.dumps(text, ensure_ascii=False)[1:-1]
        self._ascii = text.isascii()  # decided on the text: "ß".casefold() is ASCII "ss"
        self._bytes: tuple[bytes, ...] = ()
        if self._ascii:
            self._bytes = tuple({needle.lower().encode() for needle in (text, escaped)})
        self._text = tuple({needle.casefold() for needle in (text, escaped)})

    def __call__(self, line: bytes) -> bool:
        if self._ascii:
            # ASCII bytes never occur inside a UTF-8 multi-byte sequence: bytes.lower is safe.
            lowered = line.lower()
            return any(needle in lowered for needle in self._bytes)
        folded = line.decode("utf-8", "replace").casefold()
        return any(needle in folded for needle in self._text)


# --- the in-memory index ----------------------------------------------------------------


class _Index:
    """Where each event is in the file, by position (0..n-1); ids increase with position."""

    def __init__(self) -> None:
        self.ids = array.array("q")
        self.offsets = array.array("q")
        self.lengths = array.array("q")  # without the newline
        self.kinds: list[str] = []
        self.sources: list[str] = []
        self.by_kind: dict[str, array.array[int]] = {}
        self.by_source: dict[str, array.array[int]] = {}
        self.last_id = -1

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, event_id: int, offset: int, length: int, kind: str, source: str) -> None:
        position = len(self.ids)
        self.last_id = event_id
        self.ids.append(event_id)
        self.offsets.append(offset)
        self.lengths.append(length)
        # One shared string object per kind/source instead of one per event.
        kind = sys.intern(kind)
        source = sys.intern(source)
        self.kinds.append(kind)
        self.sources.append(source)
        by_kind = self.by_kind.get(kind)
        if by_kind is None:
            by_kind = self.by_kind[kind] = array.array("q")
        by_kind.append(position)
        by_source = self.by_source.get(source)
        if by_source is None:
            by_source = self.by_source[source] = array.array("q")
        by_source.append(position)

    def position(self, event_id: int) -> int | None:
        pos = bisect.bisect_left(self.ids, event_id)
        if pos < len(self.ids) and self.ids[pos] == event_id:
            return pos
        return None

    def bounds(self, after_id: int | None, before_id: int | None, size: int) -> tuple[int, int]:
        """Positions [start, stop) of ids strictly between ``after_id`` and ``before_id``."""
        start = 0 if after_id is None else bisect.bisect_right(self.ids, after_id, 0, size)
        stop = size if before_id is None else bisect.bisect_left(self.ids, before_id, 0, size)
        return start, max(start, stop)

    def candidates(
        self,
        start: int,
        stop: int,
        kinds: Sequence[str] | None,
        source: str | None,
        reverse: bool,
    ) -> Iterator[int]:
        """Positions in [start, stop) matching kind and source, in the requested order."""
        if kinds is None and source is None:
            return iter(range(stop - 1, start - 1, -1) if reverse else range(start, stop))
        if kinds is None:
            assert source is not None
            return self._slice(self.by_source.get(source), start, stop, reverse)
        streams = [self._slice(self.by_kind.get(kind), start, stop, reverse) for kind in kinds]
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams, reverse=reverse)
        if source is None:
            return merged
        sources = self.sources
        return (pos for pos in merged if sources[pos] == source)

    def count(self, start: int, stop: int, kinds: Sequence[str] | None, source: str | None) -> int:
        if kinds is None and source is None:
            return stop - start
        if kinds is None:
            assert source is not None
            return self._span_count(self.by_source.get(source), start, stop)
        if source is None:
            return sum(self._span_count(self.by_kind.get(kind), start, stop) for kind in kinds)
        return sum(1 for _ in self.candidates(start, stop, kinds, source, False))

    @staticmethod
    def _span(positions: array.array[int], start: int, stop: int) -> tuple[int, int]:
        return bisect.bisect_left(positions, start), bisect.bisect_left(positions, stop)

    def _span_count(self, positions: array.array[int] | None, start: int, stop: int) -> int:
        if positions is None:
            return 0
        lo, hi = self._span(positions, start, stop)
        return hi - lo

    def _slice(
        self, positions: array.array[int] | None, start: int, stop: int, reverse: bool
    ) -> Iterator[int]:
        if positions is None:
            return iter(())
        lo, hi = self._span(positions, start, stop)
        if reverse:
            return (positions[i] for i in range(hi - 1, lo - 1, -1))
        return (positions[i] for i in range(lo, hi))


class _Cache:
    """Parsed events by id, bounded by the total size of their lines (oldest out first)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: dict[int, tuple[Event, int]] = {}
        self._bytes = 0

    def get(self, event_id: int) -> Event | None:
        item = self._items.get(event_id)
        return item[0] if item is not None else None

    def put(self, event: Event, size: int) -> None:
        if size > self.max_bytes // 4 or event.id in self._items:
            return
        self._items[event.id] = (event, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            # dicts keep insertion order: the first key is the oldest entry.
            _, dropped = self._items.pop(next(iter(self._items)))
            self._bytes -= dropped


# --- the log ----------------------------------------------------------------------------


class EventLog:
    """Append, read, search and await the events of one conversation (see the module doc)."""

    def __init__(
        self,
        path: Path | str,
        *,
        secrets: SecretRegistry | None = None,
        read_only: bool = False,
        fsync: bool = False,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.secrets = secrets
        self.read_only = read_only
        self.fsync = fsync
        self.recovered: TornLine | None = None
        self.skipped: list[SkippedLine] = []
        self.gaps: list[tuple[int, int]] = []  # (first missing id, last missing id)
        self._lock = threading.RLock()
        self._index = _Index()
        self._cache = _Cache(cache_bytes)
        self._end = 0  # byte offset just after the last complete line
        self._cache_from = 0  # lines before this offset are not cached while loading
        self._lines = 0  # complete lines consumed, for line numbers in reports
        self._closed = False
        self._subscribers: list[Subscriber] = []
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._fd: int | None = None
        if read_only:
            self._open_reader()
        else:
            self._open_writer()

    # -- opening ---------------------------------------------------------------------------

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise EventLogLocked(
                        f"{self.path} is already open for writing (one writer per log; "
                        "open it with read_only=True to read)"
                    ) from None
            self._fd = fd
            tail = self._consume(os.fstat(fd).st_size, notify=False)
            if tail:
                self._drop_torn_tail(tail)
        except BaseException:
            self._fd = None
            os.close(fd)
            raise

    def _open_reader(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            # Nothing written yet: an empty log; refresh() opens the file once it exists.
            return
        self._consume(os.fstat(self._fd).st_size, notify=False)

    def _drop_torn_tail(self, tail: bytes) -> None:
        assert self._fd is not None
        self.recovered = TornLine(self._end, len(tail), _preview(tail, self.secrets))
        os.ftruncate(self._fd, self._end)
        if self.fsync:
            os.fsync(self._fd)
        log.warning(
            "Dropped a torn last line of %s at byte %d (%d bytes): %r",
            self.path,
            self._end,
            len(tail),
            self.recovered.preview,
        )

    # -- loading lines ---------------------------------------------------------------------

    def _consume(self, size: int, *, notify: bool) -> bytes:
        """Index the complete lines between ``self._end`` and ``size``; return the tail."""
        assert self._fd is not None
        # Only the newest lines would survive in the cache: skip caching the older ones.
        self._cache_from = size - self._cache.max_bytes
        pending = bytearray()  # a line longer than a chunk grows here without re-copying
        offset = self._end
        while offset < size:
            chunk = _pread(self._fd, min(_READ_CHUNK, size - offset), offset)
            if not chunk:
                break  # the file shrank under us; refresh() notices next time
            offset += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut < 0:
                pending += chunk
                continue
            block = bytes(pending) + chunk[:cut] if pending else chunk[:cut]
            pending = bytearray(chunk[cut + 1 :])
            for line in block.split(b"\n"):
                event = self._ingest(line)
                if event is not None and notify:
                    self._notify(event)
        return bytes(pending)

    def _ingest(self, line: bytes) -> Event | None:
        """Index one complete line at ``self._end`` (or report why it is skipped)."""
        offset = self._end
        self._end += len(line) + 1
        self._lines += 1
        reason: str | None = None
        event: Event | None = None
        if not line or line.isspace():
            reason = "empty line"
        else:
            try:
                event = _parse(line)
            except ValidationError as exc:
                reason = _parse_error(exc)
        last_id = self._index.last_id
        if event is not None and event.id <= last_id:
            reason = f"id {event.id} does not follow id {last_id}"
        if event is None or reason is not None:
            self._skip(offset, line, reason or "unreadable")
            return None
        if event.id != last_id + 1:
            self.gaps.append((last_id + 1, event.id - 1))
            log.warning("Event ids jump from %d to %d in %s", last_id, event.id, self.path)
        self._index.add(event.id, offset, len(line), event.kind, event.source)
        if offset >= self._cache_from:
            self._cache.put(event, len(line))
        return event

    def _skip(self, offset: int, line: bytes, reason: str) -> None:
        skipped = SkippedLine(offset, len(line), self._lines, reason, _preview(line, self.secrets))
        self.skipped.append(skipped)
        log.warning(
            "Skipped line %d of %s (byte %d): %s: %r",
            skipped.line_number,
            self.path,
            offset,
            reason,
            skipped.preview,
        )

    def refresh(self) -> int:
        """Pick up complete lines another process appended; return how many events were new.

        Readers call this (e.g. when the file changes); subscribers and waiters are woken
        for the new events. An incomplete last line is left for a later refresh. A writer
        owns the file, so for it this is a no-op.
        """
        with self._lock:
            self._check_open()
            if not self.read_only:
                return 0
            if self._fd is None:
                self._open_reader()
                return len(self._index)
            opened = os.fstat(self._fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return 0  # deleted: keep what was read
            if current.st_ino != opened.st_ino or current.st_size < self._end:
                # Replaced or truncated (e.g. re-imported): start again from the new file.
                log.warning("%s was replaced under a reader; reloading it", self.path)
                self._reset()
                os.close(self._fd)
                self._fd = None
                self._open_reader()
                return len(self._index)
            before = len(self._index)
            self._consume(current.st_size, notify=True)
            return len(self._index) - before

    def _reset(self) -> None:
        self._index = _Index()
        self._cache = _Cache(self._cache.max_bytes)
        self._end = 0
        self._lines = 0
        self.skipped = []
        self.gaps = []

    # -- appending -------------------------------------------------------------------------

    def append(self, event: EventBase) -> Event:
        """Store ``event`` with the next id; return it as stored (redacted, equal to disk).

        The line is written and flushed before this returns (fsynced with ``fsync=True``);
        then subscribers and waiters are told, in id order. Thread-safe.
        """
        with self._lock:
            self._check_open()
            if self.read_only or self._fd is None:
                raise EventLogError(f"{self.path} is open read-only; only its writer appends")
            event_id = self._index.last_id + 1
            line, stored = self._serialize(event, event_id)
            offset = self._end
            self._write(line + b"\n", offset)
            self._end = offset + len(line) + 1
            self._lines += 1
            self._index.add(event_id, offset, len(line), stored.kind, stored.source)
            self._cache.put(stored, len(line))
            self._notify(stored)
        return stored

    def _serialize(self, event: EventBase, event_id: int) -> tuple[bytes, Event]:
        """The redacted line and the event parsed back from it (so both agree exactly)."""
        try:
            text = event_to_json(event.model_copy(update={"id": event_id}))
        except PydanticSerializationError as exc:
            raise EventLogError(f"a {event.kind!r} event cannot be stored: {exc}") from exc
        redacted = self.secrets.redact(text) if self.secrets is not None else text
        try:
            stored = _parse(redacted)
        except ValidationError as exc:
            if redacted == text:
                raise EventLogError(
                    f"a {event.kind!r} event cannot be stored: {_parse_error(exc)}"
                ) from exc
            # A secret matched JSON syntax (a key, a number): hide it in string values only.
            stored = self._redact_fields(event, event_id)
            redacted = event_to_json(stored)
        return redacted.encode(), stored

    def _redact_fields(self, event: EventBase, event_id: int) -> Event:
        assert self.secrets is not None
        data = event_to_dict(event.model_copy(update={"id": event_id}))
        kind = data.get("kind")
        data = _redact_values(data, self.secrets)
        data["kind"] = kind
        try:
            return EVENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise EventLogError(
                f"a {event.kind!r} event cannot be stored without revealing a secret: "
                f"{_parse_error(exc)}"
            ) from exc

    def _write(self, data: bytes, offset: int) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(self._fd)
        except OSError:
            # Leave no torn line behind (disk full...): the log stays as it was.
            try:
                os.ftruncate(self._fd, offset)
            except OSError:
                log.exception("Could not roll back a failed write to %s", self.path)
            raise

    # -- reading ---------------------------------------------------------------------------

    @property
    def next_id(self) -> int:
        """The id the next appended event gets."""
        return self._index.last_id + 1

    @property
    def last_id(self) -> int:
        """The highest stored id, -1 when empty."""
        return self._index.last_id

    def __len__(self) -> int:
        return len(self._index)

    def get(self, event_id: int) -> Event | None:
        """The event with this id, or None."""
        with self._lock:
            self._check_open()
            index = self._index
            pos = index.position(event_id)
        if pos is None:
            return None
        return self._load(index, [pos])[0]

    def read(self, after_id: int = -1, limit: int | None = None) -> list[Event]:
        """Events with id > ``after_id``, in order, at most ``limit`` of them."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        with self._lock:
            self._check_open()
            index = self._index
            start, stop = index.bounds(after_id, None, len(index))
        if limit is not None:
            stop = min(stop, start + limit)
        return self._load(index, list(range(start, stop)))

    def search(
        self,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        kind: str | Sequence[str] | None = None,
        source: str | None = None,
        text: str | None = None,
        reverse: bool = False,
        limit: int = 100,
        page_id: str | None = None,
    ) -> EventPage:
        """One page of events matching every filter given (ids exclusive bounds).

        ``kind`` is one kind or several; ``text`` is a case-insensitive substring of the
        stored line. ``page_id`` continues a previous search with the same filters.
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_LIMIT}")
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE_LIMIT}, got {limit}")
        if page_id is not None:
            last_id, cursor_reverse = _decode_cursor(page_id)
            if cursor_reverse != reverse:
                raise ValueError("page_id was made for the other direction (reverse)")
            if reverse:
                before_id = last_id if before_id is None else min(before_id, last_id)
            else:
                after_id = last_id if after_id is None else max(after_id, last_id)
        with self._lock:
            self._check_open()
            index = self._index
            size = len(index)
        positions = self._matching(index, size, after_id, before_id, kind, source, text, reverse)
        found: list[int] = []
        for pos in positions:
            found.append(pos)
            if len(found) > limit:
                break
        items = self._load(index, found[:limit])
        next_page_id = _encode_cursor(items[-1].id, reverse) if len(found) > limit else None
        return EventPage(items=items, next_page_id=next_page_id)

    def count(
        self,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        kind: str | Sequence[str] | None = None,
        source: str | None = None,
        text: str | None = None,
    ) -> int:
        """How many events ``search`` would find with these filters, over all pages."""
        with self._lock:
            self._check_open()
            index = self._index
            size = len(index)
        if text is None:
            kinds, source = _check_filters(kind, source)
            start, stop = index.bounds(after_id, before_id, size)
            return index.count(start, stop, kinds, source)
        positions = self._matching(index, size, after_id, before_id, kind, source, text, False)
        return sum(1 for _ in positions)

    def _matching(
        self,
        index: _Index,
        size: int,
        after_id: int | None,
        before_id: int | None,
        kind: str | Sequence[str] | None,
        source: str | None,
        text: str | None,
        reverse: bool,
    ) -> Iterator[int]:
        kinds, source = _check_filters(kind, source)
        start, stop = index.bounds(after_id, before_id, size)
        positions = index.candidates(start, stop, kinds, source, reverse)
        if text is None:
            return positions
        return self._text_matches(index, positions, _TextFilter(text))

    def _text_matches(
        self, index: _Index, positions: Iterator[int], matches: _TextFilter
    ) -> Iterator[int]:
        while True:
            batch = list(itertools.islice(positions, _TEXT_BATCH))
            if not batch:
                return
            lines = self._raw_lines(index, batch)
            for pos in batch:
                if matches(lines[pos]):
                    yield pos

    def _raw_lines(self, index: _Index, positions: Iterable[int]) -> dict[int, bytes]:
        """The stored lines at these positions, neighbours read together in one call."""
        fd = self._fd
        if fd is None:
            raise EventLogError(f"{self.path} is closed")
        result: dict[int, bytes] = {}
        ordered = sorted(set(positions))
        i = 0
        while i < len(ordered):
            first = ordered[i]
            start = index.offsets[first]
            j = i + 1
            while (
                j < len(ordered)
                and ordered[j] == ordered[j - 1] + 1
                and index.offsets[ordered[j]] + index.lengths[ordered[j]] - start <= _MAX_SPAN
            ):
                j += 1
            last = ordered[j - 1]
            data = _pread(fd, index.offsets[last] + index.lengths[last] - start, start)
            for pos in ordered[i:j]:
                begin = index.offsets[pos] - start
                result[pos] = data[begin : begin + index.lengths[pos]]
            i = j
        return result

    def _load(self, index: _Index, positions: list[int]) -> list[Event]:
        """Parsed events at these positions (from the cache, else from the file)."""
        cache = self._cache
        parsed: dict[int, Event] = {}
        with self._lock:
            for pos in positions:
                cached = cache.get(index.ids[pos])
                if cached is not None:
                    parsed[pos] = cached
        missing = [pos for pos in positions if pos not in parsed]
        if not missing:
            return [parsed[pos] for pos in positions]
        lines = self._raw_lines(index, missing)
        for pos, line in lines.items():
            try:
                parsed[pos] = _parse(line)
            except ValidationError as exc:
                raise EventLogError(
                    f"{self.path} changed under the log at byte {index.offsets[pos]}: "
                    f"{_parse_error(exc)}"
                ) from exc
        with self._lock:
            for pos in missing:
                cache.put(parsed[pos], index.lengths[pos])
        return [parsed[pos] for pos in positions]

    # -- subscribers and waiters -----------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` after each new event; returns the unsubscribe function.

        Callbacks run in the appending (or refreshing) thread, in id order, while the log is
        locked: keep them short (hand over with ``loop.call_soon_threadsafe``). Their errors
        are logged, never raised into ``append``.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    async def wait(
        self, after_id: int, timeout: float | None = None, *, limit: int | None = None
    ) -> list[Event]:
        """Events with id > ``after_id``, waiting until there is one (``[]`` on timeout).

        Woken by ``append`` from any thread, or by a reader's ``refresh``; no polling.
        Raises ``EventLogError`` if the log is closed.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            with self._lock:
                self._check_open()
                if self._index.last_id > after_id:
                    break
                self._waiters.add(waiter)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                return []
            finally:
                with self._lock:
                    self._waiters.discard(waiter)
            # Woken by an event at or below after_id (the caller is ahead): wait on.
        return self.read(after_id, limit)

    def _notify(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("An event log subscriber failed on event %d", event.id)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    # -- closing ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EventLogError(f"{self.path} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the file (and the writer lock); pending waiters get ``EventLogError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fd, self._fd = self._fd, None
            self._subscribers.clear()
            self._wake_waiters()
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        return f"EventLog({str(self.path)!r}, {mode}, {len(self)} events)"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check_filters(
    kind: str | Sequence[str] | None, source: str | None
) -> tuple[tuple[str, ...] | None, str | None]:
    """Validate the kind and source filters; kinds come back as a tuple without repeats."""
    kinds: tuple[str, ...] | None = None
    if kind is not None:
        wanted = (kind,) if isinstance(kind, str) else tuple(dict.fromkeys(kind))
        unknown = [k for k in wanted if k not in EVENT_KINDS]
        if unknown or not wanted:
            raise ValueError(
                f"unknown event kind {unknown[0]!r}; expected one of {', '.join(EVENT_KINDS)}"
                if unknown
                else "kind filter is empty"
            )
        kinds = wanted
    if source is not None and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected agent, user or environment")
    return kinds, source
