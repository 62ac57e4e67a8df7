"""Helpers of the docker tier's tests: containers of a data directory, event waits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.events.schema import AgentStateEvent, Event
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes.docker import LABEL_ROOT
from jupyter_convo.runtime.models import InitialMessage
from jupyter_convo.store.conversations import StartTask, StartTaskStatus
from jupyter_convo.testing.collector import EventCollector

WAIT = 60.0  # upper bound of every wait; reaching it fails the test

MakeManager = Callable[..., Awaitable[NestedConversationManager]]


def our_containers(engine: Any, data_dir: Path) -> list[Any]:
    root = (data_dir / "conversations").resolve()
    containers: list[Any] = engine.containers.list(
        all=True, filters={"label": [f"{LABEL_ROOT}={root}"]}
    )
    return containers


class Collector(EventCollector):
    timeout = WAIT


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
