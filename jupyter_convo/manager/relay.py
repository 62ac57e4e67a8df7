"""The event relay: one upstream WebSocket per running conversation, any number of readers.

Every subscriber gets the conversation's events in id order, each once: first the stored
ones after its ``after_id`` (from the relay's ``EventSource``: the runtime's
``events/search`` while it runs, the log file when it does not; the runtime logs an event
before it broadcasts it), then live frames. A live frame that skips ids sends the
subscriber back to the stored events for the missing ones, so nothing is lost when a
subscriber joins mid-stream or falls behind. When the runtime is down there is no upstream
and subscribers are served from the log alone; events the server itself appends (e.g.
RUNTIME_DIED) arrive through ``sync_from_log``.

Server-made notices (``publish``, e.g. a title change) go to current subscribers only: they
are not in the log and keep the id they were given (normally -1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from pydantic import ValidationError
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..events.schema import Event, event_from_json, event_to_json
from .runtime_client import SESSION_KEY_HEADER

log = logging.getLogger(__name__)

LOG_BATCH = 500
# A subscriber this far behind (in events or in bytes) is sent back to the log instead of
# buffering more.
DEFAULT_MAILBOX_LIMIT = 10_000
DEFAULT_MAILBOX_BYTES = 32 * 1024 * 1024
# Serialized frames kept per conversation for its subscribers.
FRAME_CACHE_BYTES = 16 * 1024 * 1024
# Events carry whole tool outputs and images.
MAX_FRAME_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT = 10.0


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class EventSource(Protocol):
    """Where a relay reads stored events (``manager.hub.ConversationEvents``)."""

    async def read(self, after_id: int, limit: int) -> list[Event]:
        """Up to ``limit`` stored events after ``after_id``, in id order."""
        ...

    def close(self) -> None: ...


class ConversationGone(Exception):
    """The relay was closed because its conversation was deleted."""


_CLOSED = _Marker("CLOSED")
_GONE = _Marker("GONE")
_CATCH_UP = _Marker("CATCH_UP")
_Item = Event | _Marker


class _Mailbox:
    """One subscriber's queue, bounded in events and in bytes (events carry images and
    whole tool outputs); on overflow it is emptied and told to catch up from the log."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self._items: deque[tuple[_Item, int]] = deque()
        self._ready = asyncio.Event()
        self._limit = limit
        self._max_bytes = max_bytes
        self.bytes = 0

    def push(self, item: _Item, size: int = 0) -> None:
        if not isinstance(item, _Marker) and (
            len(self._items) >= self._limit or self.bytes + size > self._max_bytes
        ):
            self.clear()
            item, size = _CATCH_UP, 0
        self._items.append((item, size))
        self.bytes += size
        self._ready.set()

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    async def get(self) -> _Item:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item, size = self._items.popleft()
        self.bytes -= size
        return item


class _FrameCache:
    """Each relayed event serialized once, not once per subscriber, bounded in bytes.

    Logged ids are unique within a conversation, so the key is the id. Found by
    bench/bench_relay.py: with 50 subscribers, serializing every frame again was a fifth of
    the server's time. A frame larger than the whole budget is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._frames: OrderedDict[int, str] = OrderedDict()

    def frame(self, event: Event) -> str:
        if event.id < 0:  # a server notice: not in the log, ids not unique
            return event_to_json(event)
        text = self._frames.get(event.id)
        if text is not None:
            self._frames.move_to_end(event.id)
            return text
        text = event_to_json(event)
        if len(text) <= self.max_bytes:
            self._frames[event.id] = text
            self.bytes += len(text)
            while self.bytes > self.max_bytes:
                _, dropped = self._frames.popitem(last=False)
                self.bytes -= len(dropped)
        return text

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = 0


class EventRelay:
    """Fans one conversation's events out to subscribers (see the module doc)."""

    def __init__(
        self,
        conversation_id: str,
        source: EventSource,
        *,
        last_id: int = -1,
        on_event: Callable[[Event], None] | None = None,
        on_upstream_closed: Callable[[str], None] | None = None,
        mailbox_limit: int = DEFAULT_MAILBOX_LIMIT,
        mailbox_bytes: int = DEFAULT_MAILBOX_BYTES,
        frame_cache_bytes: int = FRAME_CACHE_BYTES,
    ) -> None:
        self.conversation_id = conversation_id
        self.source = source
        # The highest event id relayed so far (events up to it went to on_event).
        self.last_id = last_id
        self._on_event = on_event
        self._on_upstream_closed = on_upstream_closed
        self._mailbox_limit = mailbox_limit
        self._mailbox_bytes = mailbox_bytes
        self._frames = _FrameCache(frame_cache_bytes)
        self._mailboxes: set[_Mailbox] = set()
        self._upstream: asyncio.Task[None] | None = None
        self._connection: WebSocketClientConnection | None = None
        self._detaching = False
        self.closed = False

    # --- state ----------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._upstream is not None and not self._upstream.done()

    @property
    def subscriber_count(self) -> int:
        return len(self._mailboxes)

    @property
    def cached_bytes(self) -> int:
        """Bytes this relay holds for its subscribers: frames and queued events."""
        return self._frames.bytes + sum(mailbox.bytes for mailbox in self._mailboxes)

    def frame(self, event: Event) -> str:
        """The event as a WebSocket text frame (the log's JSON), serialized once."""
        return self._frames.frame(event)

    def _accept(self, event: Event) -> None:
        """Relay one logged event: once, in id order."""
        if event.id <= self.last_id:
            return
        self.last_id = event.id
        if self._mailboxes:
            size = len(self.frame(event))
            for mailbox in self._mailboxes:
                mailbox.push(event, size)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("metadata update for %s failed", self.conversation_id)

    def publish(self, event: Event) -> None:
        """Deliver a server-made notice to current subscribers (not logged)."""
        for mailbox in self._mailboxes:
            mailbox.push(event)  # small, and never dropped for a catch-up

    # --- the log --------------------------------------------------------------------------

    async def read_log(self, after_id: int, limit: int = LOG_BATCH) -> list[Event]:
        """Stored events after ``after_id`` (from the source; none once closed)."""
        if self.closed:
            return []
        return await self.source.read(after_id, limit)

    async def sync_from_log(self) -> int:
        """Relay stored events past ``last_id`` (only while no upstream is attached, so the
        log is the one source); returns how many there were."""
        if self.attached:
            raise RuntimeError("sync_from_log while an upstream is attached")
        count = 0
        while batch := await self.read_log(self.last_id):
            for event in batch:
                self._accept(event)
            count += len(batch)
        return count

    # --- upstream -------------------------------------------------------------------------

    def attach(self, base_url: str, session_key: str) -> None:
        """Connect to the runtime's event stream from ``last_id`` on."""
        if self.closed:
            raise RuntimeError(f"relay of {self.conversation_id} is closed")
        if self.attached:
            raise RuntimeError(f"relay of {self.conversation_id} is already attached")
        self._detaching = False
        ws_base = "ws" + base_url[len("http") :] if base_url.startswith("http") else base_url
        url = (
            f"{ws_base}/api/conversations/{self.conversation_id}/events/ws?after_id={self.last_id}"
        )
        self._upstream = asyncio.create_task(
            self._pump(url, session_key), name=f"relay-{self.conversation_id}"
        )

    async def _pump(self, url: str, session_key: str) -> None:
        request = HTTPRequest(
            url, headers={SESSION_KEY_HEADER: session_key}, connect_timeout=CONNECT_TIMEOUT
        )
        reason = "closed by the runtime"
        try:
            connection = await websocket_connect(request, max_message_size=MAX_FRAME_BYTES)
        except Exception as exc:
            reason = f"could not connect: {exc}"
        else:
            self._connection = connection
            try:
                while (message := await connection.read_message()) is not None:
                    self._on_frame(message)
            finally:
                self._connection = None
                connection.close()
        finally:
            if not self._detaching:
                log.info("upstream of %s ended: %s", self.conversation_id, reason)
                if self._on_upstream_closed is not None:
                    self._on_upstream_closed(self.conversation_id)

    def _on_frame(self, message: str | bytes) -> None:
        try:
            event = event_from_json(message)
        except (ValidationError, ValueError):
            try:
                body = json.loads(message)
            except ValueError:
                body = None
            if isinstance(body, dict) and "error" in body:
                log.warning("runtime of %s reported: %s", self.conversation_id, body["error"])
            else:
                log.warning("ignoring an unreadable frame from %s", self.conversation_id)
            return
        self._accept(event)

    async def wait_upstream_done(self, timeout: float) -> bool:
        """Wait (bounded) until the runtime closes the stream; True if it did."""
        task = self._upstream
        if task is None or task.done():
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    async def detach(self) -> None:
        """Close the upstream without reporting it as lost."""
        self._detaching = True
        task, self._upstream = self._upstream, None
        if self._connection is not None:
            self._connection.close()
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._frames.clear()  # the live fan-out is over; readers of the log refill it

    # --- subscribers ----------------------------------------------------------------------

    async def subscribe(self, after_id: int = -1) -> AsyncGenerator[Event, None]:
        """Events after ``after_id`` in id order, then live ones, until ``close``."""
        mailbox = _Mailbox(self._mailbox_limit, self._mailbox_bytes)
        self._mailboxes.add(mailbox)
        last = after_id
        try:
            while True:
                # Stored events first (registered before reading: nothing falls between).
                while batch := await self.read_log(last):
                    for event in batch:
                        yield event
                        last = event.id
                while True:
                    item = await mailbox.get()
                    if item is _CLOSED:
                        return
                    if item is _GONE:
                        raise ConversationGone(self.conversation_id)
                    if item is _CATCH_UP:
                        break
                    assert not isinstance(item, _Marker)
                    if item.id < 0:
                        yield item
                        continue
                    if item.id <= last:
                        continue
                    if item.id > last + 1:
                        # Ids between were relayed before we joined: they are stored.
                        for event in await self.read_log(last, item.id - last - 1):
                            if event.id < item.id:
                                yield event
                                last = event.id
                    yield item
                    last = item.id
        finally:
            mailbox.clear()
            self._mailboxes.discard(mailbox)
            if not self._mailboxes:
                self._frames.clear()

    async def close(self, *, gone: bool = False) -> None:
        """End every subscription and the upstream; the relay cannot be used again. With
        ``gone`` (the conversation was deleted) subscriptions raise ``ConversationGone``."""
        await self.detach()
        self.close_nowait(gone=gone)

    def close_nowait(self, *, gone: bool = False) -> None:
        """``close`` for a relay without an upstream."""
        if self.attached:
            raise RuntimeError(f"relay of {self.conversation_id} is attached; use close()")
        self.closed = True
        self._frames.clear()
        for mailbox in self._mailboxes:
            mailbox.push(_GONE if gone else _CLOSED)
        self.source.close()
