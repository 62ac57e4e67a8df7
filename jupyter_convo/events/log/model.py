"""What the event log hands out besides events: its errors, damage reports and pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from ..schema import Event


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


class RawEvent(NamedTuple):
    """One stored event as its JSON line (no newline), not parsed: what a relay forwards."""

    id: int
    kind: str
    source: str
    line: bytes


@dataclass(frozen=True)
class RawPage:
    """``EventPage`` with the stored lines instead of parsed events."""

    items: list[RawEvent]
    next_page_id: str | None = None
