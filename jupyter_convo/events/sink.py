"""The one way an agent backend records what happens: an ``EventSink`` the runtime owns.

Backends (the built-in controller, an ACP agent) never hold the ``EventLog`` itself: they
emit through the sink, which the runtime builds over the conversation's log. The log stays
the single truth (ids, redaction, subscribers); the sink is the narrow door to it, so the
runtime can watch or shape every event a backend produces in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .log import EventLog
from .schema import Event, EventBase

Observer = Callable[[Event], None]


class EventSink(Protocol):
    """What a backend may do with the conversation's events."""

    def emit(self, event: EventBase) -> Event:
        """Record ``event``; returns it as stored (id assigned, secrets hidden)."""
        ...

    def read(self, after_id: int = -1, limit: int | None = None) -> list[Event]:
        """The recorded events after ``after_id`` (a backend's memory on restart)."""
        ...

    @property
    def next_id(self) -> int:
        """The id the next emitted event gets."""
        ...


class LogSink:
    """An ``EventSink`` over an ``EventLog``: emitting appends, then tells the observers."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._observers: list[Observer] = []

    def emit(self, event: EventBase) -> Event:
        stored = self._log.append(event)
        for observer in list(self._observers):
            observer(stored)
        return stored

    def read(self, after_id: int = -1, limit: int | None = None) -> list[Event]:
        return self._log.read(after_id=after_id, limit=limit)

    @property
    def next_id(self) -> int:
        return self._log.next_id

    def observe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with each event a backend emits; returns the undo."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)
