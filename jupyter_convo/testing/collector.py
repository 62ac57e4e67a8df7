"""Collect a conversation's event stream in the background and wait on what arrives.

For tests that drive a ``ConversationManager`` (``manager.subscribe(...)``): every wait is
bounded by ``timeout`` and fails with the kinds seen so far, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from ..events.schema import Event, MessageEvent


class EventCollector:
    """Reads one subscription in the background; ``wait_for`` waits on what arrives."""

    timeout: float = 30.0  # upper bound of every wait; reaching it fails the test

    def __init__(self, stream: AsyncIterator[Event]) -> None:
        self.events: list[Event] = []
        self.ended = False
        # What ended the stream, if it did not just end (e.g. ConversationNotFound when
        # the conversation was deleted).
        self.error: Exception | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[Event]) -> None:
        try:
            async for event in stream:
                self.events.append(event)
                self._changed.set()
        except Exception as exc:
            self.error = exc
        finally:
            self.ended = True
            self._changed.set()

    async def wait_for(self, predicate: Callable[[Event], bool], what: str) -> Event:
        """The first event (already seen or still to come) that ``predicate`` accepts."""

        async def scan() -> Event:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                if self.ended:
                    raise AssertionError(f"stream ended before {what}: {self.kinds()}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), self.timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {self.timeout}s; got {self.kinds()}") from None

    async def wait_ended(self) -> None:
        await asyncio.wait_for(asyncio.shield(self._task), self.timeout)

    def logged(self) -> list[Event]:
        """The events that are in the log (server-made notices have id -1)."""
        return [event for event in self.events if event.id >= 0]

    def kinds(self) -> list[str]:
        return [f"{event.id}:{event.kind}" for event in self.events]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def agent_says(text: str) -> Callable[[Event], bool]:
    """A predicate: the agent's message with exactly ``text``."""
    return lambda e: isinstance(e, MessageEvent) and e.source == "agent" and e.text == text
