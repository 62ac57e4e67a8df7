"""Finding runtimes again when the manager starts (after a server restart).

Runtimes outlive the server by default. On start the manager takes over every runtime its
sandbox still finds (recorded, or running without a record: each holds its conversation's
log lock, so it must be taken over or stopped), settles conversations recorded as running
whose runtime is gone (STOPPED after a clean stop, else ERROR with RUNTIME_DIED), fails
start tasks an earlier server left unfinished and deletes expired conversations.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from ..events.schema import ConversationStatus
from ..store.conversations import ConversationStore, utcnow
from .config import ManagerConfig
from .hub import EventHub
from .pool import remove_warm_leftovers
from .runtime_client import RuntimeClientError
from .sandboxes.base import RuntimeHandle, Sandbox
from .start_tasks import StartTasks
from .supervision import ManagedRuntime, RuntimeSupervisor

log = logging.getLogger(__name__)


class Recovery:
    """What the manager's ``start`` does before it takes requests (see the module doc).
    Callbacks: the session key and ``delete(id)`` for an expired conversation."""

    def __init__(
        self,
        config: ManagerConfig,
        store: ConversationStore,
        sandbox: Sandbox,
        *,
        supervisor: RuntimeSupervisor,
        hub: EventHub,
        tasks: StartTasks,
        session_key: Callable[[str], str],
        delete: Callable[[str], Awaitable[None]],
    ) -> None:
        self.config = config
        self.store = store
        self.sandbox = sandbox
        self.supervisor = supervisor
        self.hub = hub
        self.tasks = tasks
        self._session_key = session_key
        self._delete = delete

    async def run(self) -> int:
        """Take over, settle, prune; returns how many runtimes were found again."""
        self.tasks.fail_interrupted()
        found: set[str] = set()
        for handle in await self.sandbox.find_existing():
            if await self.reattach(handle):
                found.add(handle.conversation_id)
        for handle in await self.sandbox.find_orphans():
            if handle.conversation_id not in found:
                log.warning(
                    "runtime %s of %s runs without a record; taking it over",
                    handle.runtime_id,
                    handle.conversation_id,
                )
                self.sandbox.write_record(handle)
                if await self.reattach(handle):
                    found.add(handle.conversation_id)
        await remove_warm_leftovers(self.sandbox, lambda cid: self.store.get(cid) is not None)
        await self._settle_lost_runtimes(found)
        await self._prune_expired()
        return len(found)

    def _all_conversation_ids(self, **filters: Any) -> list[str]:
        ids: list[str] = []
        page_id: str | None = None
        while True:
            page = self.store.search(page_id=page_id, limit=100, **filters)
            ids.extend(meta.id for meta in page.items)
            page_id = page.next_page_id
            if page_id is None:
                return ids

    async def reattach(self, handle: RuntimeHandle) -> bool:
        """Take over a runtime an earlier server left running."""
        conversation_id = handle.conversation_id
        meta = self.store.get(conversation_id)
        if meta is None:
            log.warning("runtime %s serves an unknown conversation; stopping it", handle.runtime_id)
            await self.sandbox.kill(handle)
            return False
        client = self.supervisor.client(handle)
        try:
            await client.info()
        except RuntimeClientError as exc:
            log.warning(
                "runtime %s of %s does not serve it (%s); stopping it",
                handle.runtime_id,
                conversation_id,
                exc,
            )
            await client.aclose()
            await self.sandbox.kill(handle)
            return False
        runtime = ManagedRuntime(
            conversation_id, meta.user_id, handle, client, ready=True, bound=True
        )
        self.supervisor.runtimes[conversation_id] = runtime
        fold = await self.hub.rebuild_metadata(conversation_id)
        relay = self.hub.relay_for(conversation_id)
        relay.last_id = max(relay.last_id, fold.last_event_id)
        relay.attach(handle.url, self._session_key(conversation_id))
        if fold.status is not ConversationStatus.ERROR:
            self.hub.set_status(conversation_id, ConversationStatus.RUNNING)
        self.supervisor.watch(runtime)
        log.info("found runtime %s of %s again", handle.runtime_id, conversation_id)
        return True

    async def _settle_lost_runtimes(self, found: set[str]) -> None:
        """Conversations recorded as running whose runtime is gone: STOPPED if their log
        ends in a clean stop, else ERROR with RUNTIME_DIED."""
        lost = [
            conversation_id
            for status in (ConversationStatus.STARTING, ConversationStatus.RUNNING)
            for conversation_id in self._all_conversation_ids(status=status)
            if conversation_id not in found
        ]
        for conversation_id in lost:
            self.sandbox.remove_record(conversation_id)
            fold = await self.hub.rebuild_metadata(conversation_id)
            if fold.status is ConversationStatus.STOPPED:
                self.hub.set_status(conversation_id, ConversationStatus.STOPPED)
            elif fold.last_event_id < 0 and fold.status is None:
                self.hub.set_status(
                    conversation_id,
                    ConversationStatus.ERROR,
                    error="the server restarted before the conversation started",
                )
            else:
                await self.hub.record_death(
                    conversation_id, "the runtime was gone when the server started again"
                )
            self.hub.maybe_drop_relay(conversation_id)

    async def _prune_expired(self) -> None:
        max_age = self.config.conversation_max_age_seconds
        if max_age is None:
            return
        cutoff = utcnow() - timedelta(seconds=max_age)
        for conversation_id in self._all_conversation_ids(updated_at__lt=cutoff):
            if conversation_id in self.supervisor.runtimes:
                continue
            log.info("deleting conversation %s: older than %s s", conversation_id, max_age)
            await self._delete(conversation_id)
