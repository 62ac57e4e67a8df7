"""Telling others about new events: subscriber callbacks and ``wait`` futures.

Both are woken by the log's writer thread (``append``) or a reader's ``refresh``, on any
thread; waiters may sit on any asyncio loop. Everything here runs under the log's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from ..schema import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class Notifier:
    """Subscribers (called per event, in id order) and waiters (woken per batch)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._subscribers: list[Subscriber] = []
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Call every subscriber with ``event``; their errors are logged, never raised."""
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("An event log subscriber failed on event %d", event.id)

    def wake(self) -> None:
        """Wake every current waiter (they check again whether what they wait for is there)."""
        waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    async def wait_until(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``ready()`` (checked under the lock, may raise) is true; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            with self._lock:
                if ready():
                    return True
                self._waiters.add(waiter)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                return False
            finally:
                with self._lock:
                    self._waiters.discard(waiter)
            # Woken by something else than what we wait for (or a close): check again.

    def close(self) -> None:
        """Forget the subscribers and wake the waiters (their ``ready`` then raises)."""
        self._subscribers.clear()
        self.wake()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
