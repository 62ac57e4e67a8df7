"""``EventLog``: append, read, search and await the events of one conversation.

The file ``conversations/<id>/events.jsonl`` is the truth: one redacted event per line, in
id order, written whole and flushed before ``append`` returns (``fsync=True`` also asks the
disk). Beside it ``events.idx`` says where each line is, so opening a log and reading a
page costs O(page); events are parsed only when they are read (``read_raw`` and
``search_raw`` hand out the stored lines without parsing them at all).

One writer (the runtime) holds an advisory lock on the file while it is open; readers
(``read_only=True``: the server when the runtime is down, or a tail) take no lock and call
``refresh()`` to pick up lines the writer appended.

Damage is contained, never fatal:

- A torn last line (the writer died mid-write) is truncated away when the *writer* opens the
  file, reported in ``recovered`` and logged. A reader only ignores an incomplete tail until
  it is complete: it may be a line being written right now.
- A complete line that is not valid JSON, not a valid event, or whose id does not increase
  is skipped, reported in ``skipped`` (``SkippedLine``) and logged; every other line is kept.
- Ids should be consecutive. A jump is accepted, reported in ``gaps`` and logged; the next
  append continues after the highest id.
- The index is checked against the log as it is used; whatever does not hold up (a crash
  between the two writes, a truncated, damaged or foreign index) is repaired or rebuilt.

The parts, one job each: ``lines``, ``lock``, ``indexfile``, ``positions``, ``indexed``,
``cache``, ``search``, ``notify`` (see the package doc).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from typing_extensions import Unpack

from ..redact import SecretRegistry
from ..schema import Event, EventBase
from .cache import DEFAULT_CACHE_BYTES, EventCache
from .indexed import IndexedLog
from .indexfile import CLASS_NAMES, IndexDamaged
from .lines import append_line, parse, parse_error, serialize
from .lock import open_reader, open_writer
from .model import EventLogError, EventPage, RawEvent, RawPage, SkippedLine, TornLine
from .notify import Notifier, Subscriber
from .search import (
    Query,
    SearchFilters,
    check_limit,
    count_matching,
    encode_cursor,
    page_positions,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item", Event, RawEvent)


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
        self._lock = threading.RLock()
        self._cache = EventCache(cache_bytes)
        self._notifier = Notifier(self._lock)
        self._closed = False
        self._log: IndexedLog | None = None
        if read_only:
            fd = open_reader(self.path)
            if fd is not None:  # else empty until refresh() finds the file
                self._open(fd)
        else:
            self._open(open_writer(self.path))

    def _open(self, fd: int) -> None:
        indexed = IndexedLog(
            self.path, fd, writer=not self.read_only, secrets=self.secrets, cache=self._cache
        )
        try:
            tail = indexed.open(os.fstat(fd).st_size)
            if tail and not self.read_only:
                self.recovered = indexed.drop_torn_tail(tail, fsync=self.fsync)
        except BaseException:
            indexed.close()
            os.close(fd)
            raise
        self._log = indexed

    # -- state -----------------------------------------------------------------------------

    @property
    def skipped(self) -> list[SkippedLine]:
        """Complete lines that are not events (``SkippedLine``), in file order."""
        return self._log.skipped if self._log is not None else []

    @property
    def gaps(self) -> list[tuple[int, int]]:
        """Id jumps as (first missing id, last missing id)."""
        return self._log.gaps if self._log is not None else []

    @property
    def next_id(self) -> int:
        """The id the next appended event gets."""
        return self.last_id + 1

    @property
    def last_id(self) -> int:
        """The highest stored id, -1 when empty."""
        return self._log.positions.last_id if self._log is not None else -1

    def __len__(self) -> int:
        return self._log.positions.events if self._log is not None else 0

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise EventLogError(f"{self.path} is closed")

    # -- appending -------------------------------------------------------------------------

    def append(self, event: EventBase) -> Event:
        """Store ``event`` with the next id; return it as stored (redacted, equal to disk).

        The line is written and flushed before this returns (fsynced with ``fsync=True``),
        then indexed; then subscribers and waiters are told, in id order. Thread-safe.
        """
        with self._lock:
            self._check_open()
            indexed = self._log
            if self.read_only or indexed is None:
                raise EventLogError(f"{self.path} is open read-only; only its writer appends")
            line, stored = serialize(event, indexed.positions.last_id + 1, self.secrets)
            offset = indexed.end
            append_line(indexed.fd, line + b"\n", offset, fsync=self.fsync, path=self.path)
            indexed.append(offset, line, stored)
            self._cache.put(stored, len(line))
            self._notifier.publish(stored)
            self._notifier.wake()
        return stored

    # -- reading ---------------------------------------------------------------------------

    def _retrying(self, read: Callable[[IndexedLog], T], empty: T) -> T:
        """Run ``read`` on the open log; if the index does not hold up, rebuild it once."""
        with self._lock:
            self._check_open()
            indexed = self._log
        if indexed is None:
            return empty
        try:
            return read(indexed)
        except IndexDamaged as exc:
            log.warning(
                "The index of %s does not match the log (%s): rebuilding it", self.path, exc
            )
        with self._lock:
            self._check_open()
            indexed.rebuild(os.fstat(indexed.fd).st_size)
        try:
            return read(indexed)
        except IndexDamaged as exc:
            raise EventLogError(f"{self.path} changed under the log: {exc}") from exc

    def get(self, event_id: int) -> Event | None:
        """The event with this id, or None."""

        def get(indexed: IndexedLog) -> Event | None:
            position = indexed.positions.position(event_id)
            return None if position is None else self._load(indexed, [position])[0]

        return self._retrying(get, None)

    def read(self, after_id: int = -1, limit: int | None = None) -> list[Event]:
        """Events with id > ``after_id``, in order, at most ``limit`` of them."""
        return self._retrying(lambda x: self._load(x, self._range(x, after_id, limit)), [])

    def read_raw(self, after_id: int = -1, limit: int | None = None) -> list[RawEvent]:
        """``read`` as the stored JSON lines, not parsed (for forwarding as they are)."""
        return self._retrying(lambda x: self._raw(x, self._range(x, after_id, limit)), [])

    @staticmethod
    def _range(indexed: IndexedLog, after_id: int, limit: int | None) -> list[int]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        start, stop = indexed.positions.bounds(after_id, None)
        found = indexed.positions.candidates(start, stop, None, False)
        return list(found if limit is None else itertools.islice(found, limit))

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
        query = Query(after_id, before_id, kind, source, text, reverse)
        items, next_page_id = self._page(query, limit, page_id, self._load)
        # The items are parsed events already: no second validation of each.
        return EventPage.model_construct(items=items, next_page_id=next_page_id)

    def search_raw(self, **filters: Unpack[SearchFilters]) -> RawPage:
        """``search`` (same arguments) with the stored JSON lines instead of parsed events."""
        query, limit, page_id = Query.of(filters)
        items, next_page_id = self._page(query, limit, page_id, self._raw)
        return RawPage(items=items, next_page_id=next_page_id)

    def _page(
        self,
        query: Query,
        limit: int,
        page_id: str | None,
        load: Callable[[IndexedLog, list[int]], list[Item]],
    ) -> tuple[list[Item], str | None]:
        def page(indexed: IndexedLog) -> tuple[list[Item], str | None]:
            found, more = page_positions(indexed, query, limit, page_id)
            items = load(indexed, found)
            return items, encode_cursor(items[-1].id, query.reverse) if more else None

        check_limit(limit)
        query.check(page_id)
        nothing: tuple[list[Item], str | None] = ([], None)
        return self._retrying(page, nothing)

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
        query = Query(after_id, before_id, kind, source, text)
        query.check()
        return self._retrying(lambda indexed: count_matching(indexed, query), 0)

    def _raw(self, indexed: IndexedLog, positions: list[int]) -> list[RawEvent]:
        lines = indexed.lines(positions)
        names = CLASS_NAMES
        return [
            RawEvent(record.id, *names[record.klass], line)
            for record, line in (lines[position] for position in positions)
        ]

    def _load(self, indexed: IndexedLog, positions: list[int]) -> list[Event]:
        """Parsed events at these positions (from the cache, else from the file)."""
        cache = self._cache
        parsed: dict[int, Event] = {}
        wanted: dict[int, int] = {}  # position -> the id the index says is there
        with self._lock:
            for position, event_id in zip(positions, indexed.positions.ids(positions), strict=True):
                cached = cache.get(event_id)
                if cached is None:
                    wanted[position] = event_id
                else:
                    parsed[position] = cached
        for position, line in indexed.read_lines(sorted(wanted)):
            try:
                event = parse(line)
            except ValidationError as exc:
                raise IndexDamaged(f"line {position + 1}: {parse_error(exc)}") from exc
            if event.id != wanted[position]:
                raise IndexDamaged(
                    f"line {position + 1} holds id {event.id}, not {wanted[position]}"
                )
            with self._lock:
                cache.put(event, len(line))
            parsed[position] = event
        return [parsed[position] for position in positions]

    # -- following the writer ----------------------------------------------------------------

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
            indexed = self._log
            if indexed is None:
                fd = open_reader(self.path)
                if fd is None:
                    return 0
                self._open(fd)
                return len(self)
            opened = os.fstat(indexed.fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return 0  # deleted: keep what was read
            if current.st_ino != opened.st_ino or current.st_size < indexed.end:
                # Replaced or truncated (e.g. re-imported): start again from the new file.
                log.warning("%s was replaced under a reader; reloading it", self.path)
                self._log = None
                indexed.close()
                os.close(indexed.fd)
                self._cache.clear()
                fd = open_reader(self.path)
                if fd is not None:
                    self._open(fd)
                return len(self)
            before = len(self)
            adopted = indexed.adopt(current.st_size)
            if adopted and self._notifier.has_subscribers:
                none: list[Event] = []
                for event in self._retrying(lambda x: self._load(x, adopted), none):
                    self._notifier.publish(event)
            collect = self._notifier.has_subscribers
            events, _ = indexed.extend(current.st_size, collect=collect)
            for event in events:
                self._notifier.publish(event)
            if len(self) != before:
                self._notifier.wake()
            return len(self) - before

    # -- subscribers and waiters -----------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` after each new event; returns the unsubscribe function.

        Callbacks run in the appending (or refreshing) thread, in id order, while the log is
        locked: keep them short (hand over with ``loop.call_soon_threadsafe``). Their errors
        are logged, never raised into ``append``.
        """
        return self._notifier.subscribe(callback)

    async def wait(
        self, after_id: int, timeout: float | None = None, *, limit: int | None = None
    ) -> list[Event]:
        """Events with id > ``after_id``, waiting until there is one (``[]`` on timeout).

        Woken by ``append`` from any thread, or by a reader's ``refresh``; no polling.
        Raises ``EventLogError`` if the log is closed.
        """

        def ready() -> bool:
            self._check_open()
            return self.last_id > after_id

        if not await self._notifier.wait_until(ready, timeout):
            return []
        return self.read(after_id, limit)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file (and the writer lock); pending waiters get ``EventLogError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            indexed, self._log = self._log, None
            self._notifier.close()
        if indexed is not None:
            indexed.close()
            os.close(indexed.fd)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "writer"
        return f"EventLog({str(self.path)!r}, {mode}, {len(self)} events)"
