"""Helpers of the docker tier's tests: containers of a data directory, event waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.schema import AgentStateEvent, Event, MessageEvent
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes.docker import LABEL_ROOT
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTask, StartTaskStatus

WAIT = 60.0  # upper bound of every wait; reaching it fails the test

MakeManager = Callable[..., Awaitable[NestedConversationManager]]


def our_containers(engine: Any, data_dir: Path) -> list[Any]:
    root = (data_dir / "conversations").resolve()
    containers: list[Any] = engine.containers.list(
        all=True, filters={"label": [f"{LABEL_ROOT}={root}"]}
    )
    return containers


class Collector:
    """Reads one subscription in the background; ``wait_for`` waits on what arrives."""

    def __init__(self, stream: AsyncIterator[Event]) -> None:
        self.events: list[Event] = []
        self.ended = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[Event]) -> None:
        try:
            async for event in stream:
                self.events.append(event)
                self._changed.set()
        finally:
            self.ended = True
            self._changed.set()

    async def wait_for(self, predicate: Callable[[Event], bool], what: str) -> Event:
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
            return await asyncio.wait_for(scan(), WAIT)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {WAIT}s; got {self.kinds()}") from None

    def logged(self) -> list[Event]:
        return [event for event in self.events if event.id >= 0]

    def kinds(self) -> list[str]:
        return [f"{event.id}:{event.kind}" for event in self.events]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def agent_says(text: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, MessageEvent) and e.source == "agent" and e.text == text


def awaiting_input(event: Event) -> bool:
    return isinstance(event, AgentStateEvent) and event.state.value == "awaiting_user_input"


async def final_update(manager: NestedConversationManager, task: StartTask) -> StartTask:
    """The start task's last state (READY or ERROR)."""

    async def last() -> StartTask:
        updates = [update async for update in manager.start_task_updates(task.id)]
        return updates[-1]

    return await asyncio.wait_for(last(), WAIT)


async def create_ready(
    manager: NestedConversationManager, settings: AgentSettings, text: str, user_id: str = "ada"
) -> str:
    task = await manager.create_conversation(
        user_id=user_id, settings=settings, initial_message=InitialMessage(text=text)
    )
    update = await final_update(manager, task)
    assert update.status is StartTaskStatus.READY, update.detail
    assert task.conversation_id is not None
    return task.conversation_id
