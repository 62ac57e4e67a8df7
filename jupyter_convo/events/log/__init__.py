"""The append-only event log of one conversation (``events.jsonl``) and its index.

``EventLog`` (in ``eventlog``) is the whole public surface; the other modules are its parts,
one job each: ``lines`` the line format and torn-tail scanning, ``lock`` the one-writer
lock, ``indexfile`` the on-disk index (``events.idx``), ``positions`` lookups by id, kind
and source, ``indexed`` the log and its index kept in step, ``cache`` parsed events,
``search`` cursors and filters, ``notify`` subscribers and waiters.
"""

from .cache import DEFAULT_CACHE_BYTES
from .eventlog import EventLog
from .model import (
    EventLogError,
    EventLogLocked,
    EventPage,
    RawEvent,
    RawPage,
    SkippedLine,
    TornLine,
)
from .search import MAX_PAGE_LIMIT, SOURCES

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "MAX_PAGE_LIMIT",
    "SOURCES",
    "EventLog",
    "EventLogError",
    "EventLogLocked",
    "EventPage",
    "RawEvent",
    "RawPage",
    "SkippedLine",
    "TornLine",
]
