"""Start tasks: the progress record of each conversation start, and its listeners.

A start task goes WORKING, WAITING_FOR_SANDBOX, PREPARING_WORKSPACE, STARTING_CONVERSATION,
then READY or ERROR. The store keeps it; ``updates`` streams its changes in order to any
number of listeners (``POST conversations/stream-start``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from ..store.conversations import ConversationStore, StartTask, StartTaskStatus
from .base import StartTaskNotFound

log = logging.getLogger(__name__)

TERMINAL_TASK_STATUSES = frozenset({StartTaskStatus.READY, StartTaskStatus.ERROR})
TASK_ORDER = {
    StartTaskStatus.WORKING: 0,
    StartTaskStatus.WAITING_FOR_SANDBOX: 1,
    StartTaskStatus.PREPARING_WORKSPACE: 2,
    StartTaskStatus.STARTING_CONVERSATION: 3,
    StartTaskStatus.READY: 4,
    StartTaskStatus.ERROR: 4,
}


class StartTasks:
    """Records start-task progress in the store and tells the listeners."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store
        self._listeners: dict[str, set[asyncio.Queue[StartTask]]] = {}

    def set(self, task_id: str, status: StartTaskStatus, detail: str | None = None) -> None:
        task = self.store.update_start_task(task_id, status=status, detail=detail)
        if task is None:
            return
        log.info("start task %s: %s%s", task_id, status.value, f" ({detail})" if detail else "")
        for queue in self._listeners.get(task_id, ()):
            queue.put_nowait(task)

    async def updates(self, task_id: str) -> AsyncGenerator[StartTask, None]:
        """The task now, then each change until it is READY or ERROR."""
        queue: asyncio.Queue[StartTask] = asyncio.Queue()
        listeners = self._listeners.setdefault(task_id, set())
        listeners.add(queue)
        try:
            task = self.store.get_start_task(task_id)
            if task is None:
                raise StartTaskNotFound(f"start task {task_id} not found")
            yield task
            while task.status not in TERMINAL_TASK_STATUSES:
                update = await queue.get()
                if TASK_ORDER[update.status] < TASK_ORDER[task.status]:
                    continue  # an older state, queued before we read the store
                if (update.status, update.detail) == (task.status, task.detail):
                    continue
                task = update
                yield task
        finally:
            listeners.discard(queue)
            if not listeners:
                self._listeners.pop(task_id, None)

    def fail_interrupted(self) -> None:
        """Start tasks left unfinished by an earlier server can never finish now."""
        for status in TASK_ORDER:
            if status in TERMINAL_TASK_STATUSES:
                continue
            for task in self._all(status):
                self.set(task.id, StartTaskStatus.ERROR, "the server restarted during start")

    def _all(self, status: StartTaskStatus) -> list[StartTask]:
        tasks: list[StartTask] = []
        page_id: str | None = None
        while True:
            page = self.store.search_start_tasks(status=status, page_id=page_id, limit=100)
            tasks.extend(page.items)
            page_id = page.next_page_id
            if page_id is None:
                return tasks
