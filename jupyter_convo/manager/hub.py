"""The event hub: each conversation's relay (its events to any number of watchers) and the
fold that keeps its stored metadata in step with its log.

One channel: while a conversation's runtime runs, its stored events come from the
runtime's ``events/search`` route (``ConversationEvents``); the log file is read only when
no runtime runs (stopped, dead, before its start), so a runtime may keep its files where the
server cannot see them (another machine, a container without a shared mount).

Metadata follows the log: every logged event that passes a relay is folded
(``MetadataFold``) and the changed fields are written to the store; statuses the manager
decides itself (stopped, died, start failed) are set with ``set_status``. The manager
appends to a log only when its runtime is gone (``append``, e.g. RUNTIME_DIED); the log's
lock enforces that. Server-made notices (``publish``) go to current watchers only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

from ..events.log import EventLog, EventLogLocked
from ..events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    Event,
    EventBase,
    TitleEvent,
)
from ..store.conversations import ConversationMetadata, ConversationStore
from .base import ConversationNotFound
from .metadata import RUNTIME_DIED, MetadataFold, describe_error
from .relay import ConversationGone, EventRelay
from .runtime_client import RuntimeClient, RuntimeClientError

log = logging.getLogger(__name__)

READER_CACHE_BYTES = 4 * 1024 * 1024
REBUILD_BATCH = 1000


class ConversationEvents:
    """A conversation's stored events: from its runtime while one runs (``runtime_client``
    gives its client, None when none runs), else from its log file, read-only."""

    def __init__(
        self,
        conversation_id: str,
        log_path: Path,
        runtime_client: Callable[[str], RuntimeClient | None],
    ) -> None:
        self.conversation_id = conversation_id
        self.log_path = log_path
        self._runtime_client = runtime_client
        self._reader: EventLog | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def read(self, after_id: int, limit: int) -> list[Event]:
        client = self._runtime_client(self.conversation_id)
        if client is not None:
            try:
                return await client.read_events(after_id, limit)
            except RuntimeClientError as exc:
                # Going away (its watcher has not noticed yet): the log, as before it ran.
                # Known gap: without a shared disk this finds nothing, and a watcher
                # catching up at that moment misses events until it reconnects.
                log.info("events of %s not read from its runtime: %s", self.conversation_id, exc)
        return await asyncio.to_thread(self._read_file, after_id, limit)

    def _read_file(self, after_id: int, limit: int) -> list[Event]:
        with self._lock:
            if self._closed:
                return []
            if self._reader is None:
                self._reader = EventLog(
                    self.log_path, read_only=True, cache_bytes=READER_CACHE_BYTES
                )
            self._reader.refresh()
            return self._reader.read(after_id=after_id, limit=limit)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._reader is not None:
                self._reader.close()
                self._reader = None


class EventHub:
    """Relays and folds per conversation (see the module doc). Callbacks: where a
    conversation's log is, how a title is cleaned (secrets hidden) and whether a runtime
    runs or starts for it (its relay then stays), the client of its running runtime, and
    what to do when a relay's upstream
    ends by itself."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        log_path: Callable[[str], Path],
        runtime_client: Callable[[str], RuntimeClient | None],
        clean_title: Callable[[str, str | None], str | None],
        in_use: Callable[[str], bool],
        on_upstream_closed: Callable[[str], None],
    ) -> None:
        self.store = store
        self._log_path = log_path
        self._runtime_client = runtime_client
        self._clean_title = clean_title
        self._in_use = in_use
        self._on_upstream_closed = on_upstream_closed
        self._relays: dict[str, EventRelay] = {}
        self._folds: dict[str, MetadataFold] = {}

    # --- metadata follows the log -----------------------------------------------------------

    def fold_for(self, conversation_id: str) -> MetadataFold:
        fold = self._folds.get(conversation_id)
        if fold is None:
            meta = self.store.get(conversation_id)
            fold = MetadataFold.from_metadata(meta) if meta is not None else MetadataFold()
            self._folds[conversation_id] = fold
        return fold

    def _on_event(self, conversation_id: str, event: Event) -> None:
        """A logged event passed the relay: fold it into the stored metadata."""
        fold = self.fold_for(conversation_id)
        had_title = fold.title
        if not fold.apply(event):
            return
        changes = fold.take_changes()
        if changes.get("title") is not None:
            fold.title = changes["title"] = self._clean_title(conversation_id, changes["title"])
        if changes:
            self.store.update(conversation_id, **changes)
        if fold.title and fold.title != had_title and not isinstance(event, TitleEvent):
            # Generated from the first message: tell the watchers.
            relay = self._relays.get(conversation_id)
            if relay is not None:
                relay.publish(TitleEvent(title=fold.title, source="environment"))

    def set_status(
        self, conversation_id: str, status: ConversationStatus, **fields: Any
    ) -> ConversationMetadata | None:
        """A status the manager decided (stopped, died, start failed), kept in the fold too."""
        fold = self.fold_for(conversation_id)
        fold.status = status
        if "error" in fields:
            fold.error = fields["error"]
        # The row's updated_at tracks the log; the manager's decisions do not move it.
        meta = self.store.get(conversation_id)
        if meta is None:
            return None
        return self.store.update(
            conversation_id, status=status, updated_at=meta.updated_at, **fields
        )

    def events(self, conversation_id: str) -> ConversationEvents:
        """A reader of the conversation's stored events (see ``ConversationEvents``)."""
        return ConversationEvents(
            conversation_id, self._log_path(conversation_id), self._runtime_client
        )

    async def rebuild_metadata(self, conversation_id: str) -> MetadataFold:
        """Fold the whole log again and rewrite the row (after a server restart)."""
        meta = self.store.get(conversation_id)
        fold = MetadataFold(title=meta.title if meta is not None else None)
        events = self.events(conversation_id)
        try:
            after = -1
            while batch := await events.read(after, REBUILD_BATCH):
                for event in batch:
                    fold.apply(event)
                after = batch[-1].id
        finally:
            events.close()
        if meta is not None:
            fields = fold.snapshot(include_title=meta.title is None)
            if fields.get("title") is not None:
                fold.title = fields["title"] = self._clean_title(conversation_id, fields["title"])
            self.store.update(conversation_id, **fields)
        fold.take_changes()
        self._folds[conversation_id] = fold
        return fold

    # --- relays -------------------------------------------------------------------------------

    def relay(self, conversation_id: str) -> EventRelay | None:
        return self._relays.get(conversation_id)

    def relay_for(self, conversation_id: str) -> EventRelay:
        relay = self._relays.get(conversation_id)
        if relay is None:
            relay = EventRelay(
                conversation_id,
                self.events(conversation_id),
                last_id=self.fold_for(conversation_id).last_event_id,
                on_event=lambda event: self._on_event(conversation_id, event),
                on_upstream_closed=self._on_upstream_closed,
            )
            self._relays[conversation_id] = relay
        return relay

    def maybe_drop_relay(self, conversation_id: str) -> None:
        """Forget an idle relay (no subscribers, no runtime) and its fold."""
        relay = self._relays.get(conversation_id)
        if relay is None or relay.subscriber_count or relay.attached:
            return
        if self._in_use(conversation_id):
            return
        del self._relays[conversation_id]
        self._folds.pop(conversation_id, None)
        relay.close_nowait()

    async def append(self, conversation_id: str, *events: EventBase) -> list[Event]:
        """Append server-made events while no runtime writes the log; then relay them."""
        path = self._log_path(conversation_id)

        def append() -> list[Event]:
            with EventLog(path) as event_log:
                return [event_log.append(event) for event in events]

        try:
            stored = await asyncio.to_thread(append)
        except EventLogLocked:
            log.warning("log of %s is still held by a runtime; not appending", conversation_id)
            return []
        relay = self._relays.get(conversation_id)
        if relay is not None and not relay.attached:
            await relay.sync_from_log()
        else:
            for event in stored:
                self._on_event(conversation_id, event)
        return stored

    async def record_death(self, conversation_id: str, message: str) -> None:
        """The runtime is gone without a clean stop: RUNTIME_DIED and the agent state
        ``error`` in the log (so every watcher and the metadata see the loop is gone)."""
        log.warning("conversation %s: %s", conversation_id, message)
        error = describe_error(RUNTIME_DIED, message)
        await self.append(
            conversation_id,
            ErrorEvent(code=RUNTIME_DIED, message=message),
            AgentStateEvent(state=AgentState.ERROR, reason=error),
        )
        self.set_status(conversation_id, ConversationStatus.ERROR, error=error)

    async def forget(self, conversation_id: str) -> None:
        """The conversation is deleted: its watchers are told (WS 4404), state dropped."""
        relay = self._relays.pop(conversation_id, None)
        if relay is not None:
            await relay.close(gone=True)
        self._folds.pop(conversation_id, None)

    async def close(self) -> None:
        for relay in list(self._relays.values()):
            await relay.close()
        self._relays.clear()
        self._folds.clear()

    # --- watchers -----------------------------------------------------------------------------

    async def subscribe(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[Event, None]:
        relay = self.relay_for(conversation_id)
        events = relay.subscribe(after_id)
        try:
            async for event in events:
                yield event
        except ConversationGone:
            raise ConversationNotFound(f"conversation {conversation_id} was deleted") from None
        finally:
            await events.aclose()
            self.maybe_drop_relay(conversation_id)

    async def subscribe_frames(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[str, None]:
        """``subscribe`` as text frames, each event serialized once for all subscribers
        (the relay's frame cache, bounded in bytes and emptied when the stream ends)."""
        relay = self.relay_for(conversation_id)
        events = self.subscribe(conversation_id, after_id)
        try:
            async for event in events:
                yield relay.frame(event)
        finally:
            await events.aclose()

    def watched(self) -> set[str]:
        """Conversations whose events are relayed now (running, or watched from the log)."""
        return set(self._relays)

    def cached_bytes(self) -> int:
        """Bytes held for event subscribers over all conversations (frames and queued
        events): bounded per relay, zero once no conversation runs or is watched."""
        return sum(relay.cached_bytes for relay in self._relays.values())

    def publish(self, conversation_id: str, event: Event) -> None:
        fold = self._folds.get(conversation_id)
        if isinstance(event, TitleEvent) and fold is not None:
            fold.title = event.title  # a rename: never overwritten by a generated title
        relay = self._relays.get(conversation_id)
        if relay is not None:
            relay.publish(event)
