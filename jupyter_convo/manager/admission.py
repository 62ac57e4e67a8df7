"""Admission: who runs what. At most ``max_concurrent_conversations`` running (or
starting) conversations per user; starting one more stops that user's least recently
active running one, which is told why first (AGENT_ERROR$TOO_MANY_CONVERSATIONS).
Admissions of one user are taken one at a time, and starts in flight count. Also the
report of running agent loops (``GET runtimes``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..events.schema import ConversationStatus
from ..store.conversations import ConversationStore
from .base import AgentLoopInfo
from .supervision import ManagedRuntime, RuntimeSupervisor

log = logging.getLogger(__name__)


class Admission:
    """Counts conversations per user (see the module doc). ``stop_for_room(id, message)``
    stops a running conversation to make room (the manager's)."""

    def __init__(
        self,
        limit: int,
        store: ConversationStore,
        supervisor: RuntimeSupervisor,
        *,
        stop_for_room: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.limit = limit
        self.store = store
        self.supervisor = supervisor
        self._stop_for_room = stop_for_room
        # Conversations being started, and their user.
        self.starting: dict[str, str | None] = {}
        self._user_locks: dict[str | None, asyncio.Lock] = {}
        # Set (and replaced) whenever a start ends or a runtime goes: see make_room.
        self._changed = asyncio.Event()

    def owners(self) -> dict[str, str | None]:
        """Every conversation with a runtime or starting one, and its user."""
        owners = dict(self.starting)
        owners.update({cid: runtime.user_id for cid, runtime in self.supervisor.runtimes.items()})
        return owners

    def active_count(self, user_id: str | None) -> int:
        return sum(1 for owner in self.owners().values() if owner == user_id)

    def may_have_changed(self) -> None:
        """A start ended or a runtime went away: wake starts waiting for room."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def done_starting(self, conversation_id: str) -> None:
        self.starting.pop(conversation_id, None)
        self.may_have_changed()

    async def make_room(self, user_id: str | None, conversation_id: str) -> None:
        """Admit one more conversation of the user, one admission at a time (the user's
        lock): stop their least recently active running ones over the limit; while the
        limit is reached by starts still in flight (which cannot be stopped yet), wait for
        one of them to end. Then count this one in."""
        async with self._user_locks.setdefault(user_id, asyncio.Lock()):
            while True:
                changed = self._changed
                await self.ensure_below_limit(user_id)
                if self.active_count(user_id) < self.limit:
                    break
                log.info(
                    "user %s is at the limit of %d conversations with starts in flight; "
                    "%s waits for one of them",
                    user_id,
                    self.limit,
                    conversation_id,
                )
                await changed.wait()
            self.starting[conversation_id] = user_id

    async def ensure_below_limit(self, user_id: str | None) -> list[str]:
        """Stop the user's least recently active running conversations so that one more
        fits; returns their ids."""
        active = [cid for cid, owner in self.owners().items() if owner == user_id]
        excess = len(active) - self.limit + 1
        if excess <= 0:
            return []
        # Starts in flight count, but only running conversations can be stopped.
        stoppable = [
            runtime.conversation_id
            for runtime in self.supervisor.runtimes.values()
            if runtime.user_id == user_id
            and runtime.ready
            and not runtime.stopping
            and runtime.conversation_id not in self.starting
        ]
        metas = [meta for meta in self.store.get_many(stoppable) if meta is not None]
        metas.sort(key=lambda meta: meta.updated_at)
        victims = [meta.id for meta in metas[:excess]]
        for conversation_id in victims:
            log.info(
                "user %s has %d running conversations (limit %d): stopping %s",
                user_id,
                len(active),
                self.limit,
                conversation_id,
            )
            message = (
                f"Too many conversations at once (at most {self.limit} per user run "
                "together); this one was the least recently active, so it was stopped. "
                "Start it again to continue where it left off."
            )
            await self._stop_for_room(conversation_id, message)
        return victims

    # --- the report ---------------------------------------------------------------------------

    def matching(self, user_id: str | None, filter_to_ids: set[str] | None) -> list[str]:
        return [
            conversation_id
            for conversation_id, owner in self.owners().items()
            if (user_id is None or owner == user_id)
            and (filter_to_ids is None or conversation_id in filter_to_ids)
        ]

    def loop_infos(
        self, user_id: str | None, filter_to_ids: set[str] | None
    ) -> list[AgentLoopInfo]:
        infos = []
        for conversation_id in self.matching(user_id, filter_to_ids):
            runtime = self.supervisor.get(conversation_id)
            if runtime is not None:
                infos.append(self.loop_info(runtime))
            else:
                infos.append(
                    AgentLoopInfo(
                        conversation_id=conversation_id,
                        user_id=self.starting.get(conversation_id),
                        status=ConversationStatus.STARTING.value,
                        sandbox=self.supervisor.sandbox.kind,
                    )
                )
        return infos

    def loop_info(self, runtime: ManagedRuntime) -> AgentLoopInfo:
        meta = self.store.get(runtime.conversation_id)
        if not runtime.ready:
            status = ConversationStatus.STARTING
        elif meta is not None and meta.status is ConversationStatus.ERROR:
            status = ConversationStatus.ERROR
        else:
            status = ConversationStatus.RUNNING
        return AgentLoopInfo(
            conversation_id=runtime.conversation_id,
            user_id=runtime.user_id,
            status=status.value,
            sandbox=runtime.handle.kind,
            runtime_url=runtime.handle.url,
            runtime_id=runtime.handle.runtime_id,
            started_at=runtime.handle.started_at,
            last_updated_at=meta.updated_at if meta is not None else None,
        )
