"""The conversation manager of the Jupyter server: every agent loop runs in a nested runtime.

Each running conversation has one runtime (started by a ``Sandbox``), reached over HTTP with
the conversation's session key, one upstream event stream fanned out by an ``EventRelay``,
and one watcher that notices when the runtime dies. Metadata in the store follows the event
log (``MetadataFold``). Runtimes outlive the server by default and are found again by
``start``; a conversation whose runtime vanished turns to ERROR, with RUNTIME_DIED appended
to its otherwise intact log. ``start`` first takes the data dir's owner lock (one manager per
data dir, ``owner.py``) and also takes over runtimes that lost their record (or stops
them), since each holds its conversation's log lock.

Writes to a log: the runtime is its only writer while it runs. The manager appends (e.g.
RUNTIME_DIED) only once the runtime's process is gone; the log's lock enforces this.
Server-made notices delivered with ``publish`` while the runtime runs are not logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from ..agent.settings import AgentSettings, LLMConfig
from ..agent.workspace import Workspace
from ..events.inputs import UserInput
from ..events.log import EventLog, EventLogLocked
from ..events.redact import SecretRegistry
from ..events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    Event,
    EventBase,
    TitleEvent,
)
from ..runtime import workspace as workspace_files
from ..runtime.auth import SESSION_KEY_ENV
from ..runtime.models import CreateConversationRequest, InitialMessage
from ..store.conversations import (
    ConversationMetadata,
    ConversationStore,
    StartTask,
    StartTaskStatus,
    new_id,
    utcnow,
)
from ..store.settings import SettingsStore, known_secrets
from ..store.titles import clean_title
from .base import (
    AgentLoopInfo,
    ConversationManager,
    ConversationNotFound,
    ConversationNotRunning,
    ConversationStartError,
    FileUpload,
    StartTaskNotFound,
    UploadResult,
    WorkspaceRequestError,
)
from .config import ManagerConfig
from .keys import load_or_create_server_secret, session_key
from .metadata import RUNTIME_DIED, TOO_MANY_CONVERSATIONS, MetadataFold, describe_error
from .owner import DataDirLock
from .pool import WarmPool, WarmRuntime, remove_warm_leftovers
from .relay import ConversationGone, EventRelay
from .runtime_client import (
    RuntimeBadRequest,
    RuntimeClient,
    RuntimeClientError,
    RuntimeConflict,
    RuntimeNotFound,
)
from .sandboxes import make_sandbox
from .sandboxes.base import RuntimeHandle, Sandbox, SandboxStartError
from .title import title_from_message

log = logging.getLogger(__name__)

# Mirrors jupyter_convo.runtime.session: where a conversation keeps its log and workspace.
EVENTS_FILE = "events.jsonl"
WORKSPACE_DIR = "workspace"

TERMINAL_TASK_STATUSES = frozenset({StartTaskStatus.READY, StartTaskStatus.ERROR})
_TASK_ORDER = {
    StartTaskStatus.WORKING: 0,
    StartTaskStatus.WAITING_FOR_SANDBOX: 1,
    StartTaskStatus.PREPARING_WORKSPACE: 2,
    StartTaskStatus.STARTING_CONVERSATION: 3,
    StartTaskStatus.READY: 4,
    StartTaskStatus.ERROR: 4,
}
# After a stop, how long the relay may still read the runtime's last frames.
UPSTREAM_DRAIN_TIMEOUT = 5.0
# A lost upstream is re-checked this many times (doubling delay) before giving up on it.
UPSTREAM_RETRIES = 3
UPSTREAM_RETRY_DELAY = 0.5
_WORKSPACE_ERROR_STATUS = {400: 400, 403: 403, 404: 404, 413: 413, 415: 415}

Progress = Callable[[StartTaskStatus], None]
_T = TypeVar("_T")


@dataclass(eq=False)
class _Runtime:
    """A runtime this manager started or found again."""

    conversation_id: str
    user_id: str | None
    handle: RuntimeHandle
    client: RuntimeClient
    ready: bool = False
    stopping: bool = False
    watcher: asyncio.Task[None] | None = None


class NestedConversationManager(ConversationManager):
    """``ConversationManager`` over nested runtimes in a sandbox (see the module doc)."""

    def __init__(
        self,
        config: ManagerConfig,
        *,
        store: ConversationStore | None = None,
        sandbox: Sandbox | None = None,
        settings_store: SettingsStore | None = None,
    ) -> None:
        self.config = config
        # Users' secrets, hidden in titles (with credential-named environment variables).
        self.settings_store = settings_store
        config.conversations_root.mkdir(parents=True, exist_ok=True)
        self._owns_store = store is None
        self.store = store if store is not None else ConversationStore(config.db_path)
        self.sandbox = sandbox if sandbox is not None else make_sandbox(config)
        self._secret = load_or_create_server_secret(config.data_dir)
        self.owner_lock = DataDirLock(config.data_dir)
        self._runtimes: dict[str, _Runtime] = {}
        self._starting: dict[str, str | None] = {}
        self._relays: dict[str, EventRelay] = {}
        self._folds: dict[str, MetadataFold] = {}
        self._conversation_locks: dict[str, asyncio.Lock] = {}
        self._user_locks: dict[str | None, asyncio.Lock] = {}
        self._task_listeners: dict[str, set[asyncio.Queue[StartTask]]] = {}
        self._start_jobs: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._closing = False
        # Set (and replaced) whenever a start ends or a runtime goes: see _make_room.
        self._admission_changed = asyncio.Event()
        self.pool: WarmPool | None = None
        if config.warm_pool_size:
            self.pool = WarmPool(
                self.sandbox,
                config.warm_pool_size,
                conversation_key=self.session_key,
                new_id=new_id,
                start_timeout=config.runtime_start_timeout,
            )

    # --- small helpers ----------------------------------------------------------------------

    def session_key(self, conversation_id: str) -> str:
        return session_key(self._secret, conversation_id)

    def conversation_dir(self, conversation_id: str) -> Path:
        return self.config.conversation_dir(conversation_id)

    def _log_path(self, conversation_id: str) -> Path:
        return self.conversation_dir(conversation_id) / EVENTS_FILE

    def _workspace_root(self, conversation_id: str, workspace: str | None) -> Path:
        """As the runtime resolves it: relative paths start at the conversation dir."""
        conv_dir = self.conversation_dir(conversation_id)
        if workspace is None:
            return conv_dir / WORKSPACE_DIR
        path = Path(workspace).expanduser()
        return path if path.is_absolute() else conv_dir / path

    def _conversation_lock(self, conversation_id: str) -> asyncio.Lock:
        return self._conversation_locks.setdefault(conversation_id, asyncio.Lock())

    def _user_lock(self, user_id: str | None) -> asyncio.Lock:
        return self._user_locks.setdefault(user_id, asyncio.Lock())

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _check_open(self) -> None:
        if self._closing:
            raise RuntimeError("the conversation manager is shutting down")

    def user_secrets(self, user_id: str | None) -> SecretRegistry:
        """What a title of ``user_id`` must not show: their API key and named secrets and
        credential-named environment variables."""
        return known_secrets(settings_store=self.settings_store, user_ids=[user_id])

    def _clean_title(self, conversation_id: str, title: str | None) -> str | None:
        meta = self.store.get(conversation_id)
        return clean_title(title, self.user_secrets(meta.user_id if meta else None))

    def metadata(self, conversation_id: str, user_id: str | None) -> ConversationMetadata:
        meta = self.store.get(conversation_id)
        if meta is None or meta.user_id != user_id:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        return meta

    def _existing(self, conversation_id: str) -> ConversationMetadata:
        meta = self.store.get(conversation_id)
        if meta is None:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        return meta

    # --- metadata follows the log -----------------------------------------------------------

    def _fold_for(self, conversation_id: str) -> MetadataFold:
        fold = self._folds.get(conversation_id)
        if fold is None:
            meta = self.store.get(conversation_id)
            fold = MetadataFold.from_metadata(meta) if meta is not None else MetadataFold()
            self._folds[conversation_id] = fold
        return fold

    def _on_event(self, conversation_id: str, event: Event) -> None:
        """A logged event passed the relay: fold it into the stored metadata."""
        fold = self._fold_for(conversation_id)
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

    def _set_status(
        self, conversation_id: str, status: ConversationStatus, **fields: Any
    ) -> ConversationMetadata | None:
        """A status the manager decided (stopped, died, start failed), kept in the fold too."""
        fold = self._fold_for(conversation_id)
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

    async def _rebuild_metadata(self, conversation_id: str) -> MetadataFold:
        """Fold the whole log again and rewrite the row (after a server restart)."""
        meta = self.store.get(conversation_id)
        fold = MetadataFold(title=meta.title if meta is not None else None)
        path = self._log_path(conversation_id)

        def fold_log() -> None:
            if not path.exists():
                return
            with EventLog(path, read_only=True) as event_log:
                after = -1
                while batch := event_log.read(after_id=after, limit=1000):
                    for event in batch:
                        fold.apply(event)
                    after = batch[-1].id

        await asyncio.to_thread(fold_log)
        if meta is not None:
            fields = fold.snapshot(include_title=meta.title is None)
            if fields.get("title") is not None:
                fold.title = fields["title"] = self._clean_title(conversation_id, fields["title"])
            self.store.update(conversation_id, **fields)
        fold.take_changes()
        self._folds[conversation_id] = fold
        return fold

    # --- relays -------------------------------------------------------------------------------

    def _relay_for(self, conversation_id: str) -> EventRelay:
        relay = self._relays.get(conversation_id)
        if relay is None:
            relay = EventRelay(
                conversation_id,
                self._log_path(conversation_id),
                last_id=self._fold_for(conversation_id).last_event_id,
                on_event=lambda event: self._on_event(conversation_id, event),
                on_upstream_closed=self._upstream_closed,
            )
            self._relays[conversation_id] = relay
        return relay

    def _maybe_drop_relay(self, conversation_id: str) -> None:
        """Forget an idle relay (no subscribers, no runtime) and its fold."""
        relay = self._relays.get(conversation_id)
        if relay is None or relay.subscriber_count or relay.attached:
            return
        if conversation_id in self._runtimes or conversation_id in self._starting:
            return
        del self._relays[conversation_id]
        self._folds.pop(conversation_id, None)
        relay.close_nowait()

    async def _append_to_log(self, conversation_id: str, *events: EventBase) -> list[Event]:
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

    async def _record_death(self, conversation_id: str, message: str) -> None:
        """The runtime is gone without a clean stop: RUNTIME_DIED and the agent state
        ``error`` in the log (so every watcher and the metadata see the loop is gone)."""
        log.warning("conversation %s: %s", conversation_id, message)
        error = describe_error(RUNTIME_DIED, message)
        await self._append_to_log(
            conversation_id,
            ErrorEvent(code=RUNTIME_DIED, message=message),
            AgentStateEvent(state=AgentState.ERROR, reason=error),
        )
        self._set_status(conversation_id, ConversationStatus.ERROR, error=error)

    # --- manager lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._check_open()
        # Before anything is touched: one manager per data dir (DataDirInUse otherwise).
        self.owner_lock.acquire(self.owner_details)
        try:
            await self._start()
        except BaseException:
            self.owner_lock.release()
            raise

    async def _start(self) -> None:
        self._fail_interrupted_start_tasks()
        found: set[str] = set()
        for handle in await self.sandbox.find_existing():
            if await self._reattach(handle):
                found.add(handle.conversation_id)
        for handle in await self.sandbox.find_orphans():
            if handle.conversation_id not in found:
                log.warning(
                    "runtime %s of %s runs without a record; taking it over",
                    handle.runtime_id,
                    handle.conversation_id,
                )
                self.sandbox.write_record(handle)
                if await self._reattach(handle):
                    found.add(handle.conversation_id)
        await remove_warm_leftovers(self.sandbox, lambda cid: self.store.get(cid) is not None)
        await self._settle_lost_runtimes(found)
        await self._prune_expired()
        if self.pool is not None:
            self.pool.start()
        log.info("conversation manager started; %d runtime(s) found again", len(found))

    def _fail_interrupted_start_tasks(self) -> None:
        """Start tasks left unfinished by an earlier server can never finish now."""
        for status in _TASK_ORDER:
            if status in TERMINAL_TASK_STATUSES:
                continue
            for task in self._all_start_tasks(status):
                self._set_task(task.id, StartTaskStatus.ERROR, "the server restarted during start")

    def _all_start_tasks(self, status: StartTaskStatus) -> list[StartTask]:
        tasks: list[StartTask] = []
        page_id: str | None = None
        while True:
            page = self.store.search_start_tasks(status=status, page_id=page_id, limit=100)
            tasks.extend(page.items)
            page_id = page.next_page_id
            if page_id is None:
                return tasks

    def _all_conversation_ids(self, **filters: Any) -> list[str]:
        ids: list[str] = []
        page_id: str | None = None
        while True:
            page = self.store.search(page_id=page_id, limit=100, **filters)
            ids.extend(meta.id for meta in page.items)
            page_id = page.next_page_id
            if page_id is None:
                return ids

    async def _reattach(self, handle: RuntimeHandle) -> bool:
        """Take over a runtime an earlier server left running."""
        conversation_id = handle.conversation_id
        meta = self.store.get(conversation_id)
        if meta is None:
            log.warning("runtime %s serves an unknown conversation; stopping it", handle.runtime_id)
            await self.sandbox.kill(handle)
            return False
        client = self._client(handle)
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
        runtime = _Runtime(conversation_id, meta.user_id, handle, client, ready=True)
        self._runtimes[conversation_id] = runtime
        fold = await self._rebuild_metadata(conversation_id)
        relay = self._relay_for(conversation_id)
        relay.last_id = max(relay.last_id, fold.last_event_id)
        relay.attach(handle.url, self.session_key(conversation_id))
        if fold.status is not ConversationStatus.ERROR:
            self._set_status(conversation_id, ConversationStatus.RUNNING)
        self._watch(runtime)
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
            fold = await self._rebuild_metadata(conversation_id)
            if fold.status is ConversationStatus.STOPPED:
                self._set_status(conversation_id, ConversationStatus.STOPPED)
            elif fold.last_event_id < 0 and fold.status is None:
                self._set_status(
                    conversation_id,
                    ConversationStatus.ERROR,
                    error="the server restarted before the conversation started",
                )
            else:
                await self._record_death(
                    conversation_id, "the runtime was gone when the server started again"
                )
            self._maybe_drop_relay(conversation_id)

    async def _prune_expired(self) -> None:
        max_age = self.config.conversation_max_age_seconds
        if max_age is None:
            return
        cutoff = utcnow() - timedelta(seconds=max_age)
        for conversation_id in self._all_conversation_ids(updated_at__lt=cutoff):
            if conversation_id in self._runtimes:
                continue
            log.info("deleting conversation %s: older than %s s", conversation_id, max_age)
            await self.delete_conversation(conversation_id)

    async def shutdown(self) -> None:
        self._closing = True
        if self.pool is not None:
            await self.pool.close()
        for job in list(self._start_jobs):
            job.cancel()
        await asyncio.gather(*self._start_jobs, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for runtime in list(self._runtimes.values()):
            if self.config.keep_runtimes_on_shutdown:
                self._cancel_watcher(runtime)
                relay = self._relays.get(runtime.conversation_id)
                if relay is not None:
                    await relay.detach()
                await runtime.client.aclose()
                log.info(
                    "leaving runtime %s of %s running",
                    runtime.handle.runtime_id,
                    runtime.conversation_id,
                )
            else:
                async with self._conversation_lock(runtime.conversation_id):
                    await self._stop_runtime(runtime)
        self._runtimes.clear()
        for relay in list(self._relays.values()):
            await relay.close()
        self._relays.clear()
        self._folds.clear()
        if self._owns_store:
            self.store.close()
        self.owner_lock.release()
        log.info("conversation manager shut down")

    # --- starting -----------------------------------------------------------------------------

    async def create_conversation(
        self,
        *,
        user_id: str | None,
        settings: AgentSettings,
        initial_message: InitialMessage | None = None,
        title: str | None = None,
        workspace: str | None = None,
        sandbox: str | None = None,
        trigger: str = "gui",
        replay: dict[str, Any] | None = None,
    ) -> StartTask:
        self._check_open()
        kind = sandbox or self.config.sandbox
        if kind != self.sandbox.kind:
            raise ValueError(
                f"unknown sandbox {kind!r}: this server runs {self.sandbox.kind!r} runtimes"
            )
        # The title is stored and shown as is: secrets hidden as in the log.
        secrets = known_secrets(
            settings_store=self.settings_store, user_ids=[user_id], extra=setting_values(settings)
        )
        title = clean_title(title, secrets)
        if title is None and initial_message is not None:
            # Hidden before the cut, so that no part of a secret is left at the end.
            title = clean_title(title_from_message(secrets.redact(initial_message.text)), secrets)
        warm = None
        if self.pool is not None:
            warm = await self.pool.take(
                lambda cid: self.sandbox.reaches(cid, self._workspace_root(cid, workspace))
            )
        meta = ConversationMetadata(
            id=warm.conversation_id if warm is not None else new_id(),
            user_id=user_id,
            title=title,
            status=ConversationStatus.STARTING,
            trigger=trigger,
            model=settings.llm.model,
            sandbox=kind,
            workspace=workspace,
        )
        task = StartTask(
            conversation_id=meta.id,
            user_id=user_id,
            request={
                "title": title,
                "workspace": workspace,
                "sandbox": kind,
                "trigger": trigger,
                "model": settings.llm.model,
                "agent": settings.agent,
                "initial_message": initial_message is not None,
                "replay": replay is not None,
            },
        )
        self.store.create(meta)
        self.store.create_start_task(task)
        log.info("conversation %s of %s: starting (task %s)", meta.id, user_id, task.id)
        job = asyncio.create_task(
            self._run_start_task(
                task.id, meta.id, user_id, settings, initial_message, workspace, replay, warm
            ),
            name=f"start-{meta.id}",
        )
        self._start_jobs.add(job)
        job.add_done_callback(self._start_jobs.discard)
        return task

    async def _run_start_task(
        self,
        task_id: str,
        conversation_id: str,
        user_id: str | None,
        settings: AgentSettings,
        initial_message: InitialMessage | None,
        workspace: str | None,
        replay: dict[str, Any] | None,
        warm: WarmRuntime | None = None,
    ) -> None:
        def progress(status: StartTaskStatus) -> None:
            self._set_task(task_id, status)

        try:
            async with self._conversation_lock(conversation_id):
                await self._launch(
                    conversation_id,
                    user_id,
                    settings,
                    initial_message=initial_message,
                    workspace=workspace,
                    replay=replay,
                    progress=progress,
                    warm=warm,
                )
        except asyncio.CancelledError:
            await self._release_warm(warm)
            self._set_task(task_id, StartTaskStatus.ERROR, "the server shut down during start")
            raise
        except Exception as exc:
            await self._release_warm(warm)
            self._set_task(task_id, StartTaskStatus.ERROR, str(exc) or type(exc).__name__)
            return
        self._set_task(task_id, StartTaskStatus.READY)

    def _set_task(self, task_id: str, status: StartTaskStatus, detail: str | None = None) -> None:
        task = self.store.update_start_task(task_id, status=status, detail=detail)
        if task is None:
            return
        log.info("start task %s: %s%s", task_id, status.value, f" ({detail})" if detail else "")
        for queue in self._task_listeners.get(task_id, ()):
            queue.put_nowait(task)

    async def start_task_updates(self, task_id: str) -> AsyncGenerator[StartTask, None]:
        queue: asyncio.Queue[StartTask] = asyncio.Queue()
        listeners = self._task_listeners.setdefault(task_id, set())
        listeners.add(queue)
        try:
            task = self.store.get_start_task(task_id)
            if task is None:
                raise StartTaskNotFound(f"start task {task_id} not found")
            yield task
            while task.status not in TERMINAL_TASK_STATUSES:
                update = await queue.get()
                if _TASK_ORDER[update.status] < _TASK_ORDER[task.status]:
                    continue  # an older state, queued before we read the store
                if (update.status, update.detail) == (task.status, task.detail):
                    continue
                task = update
                yield task
        finally:
            listeners.discard(queue)
            if not listeners:
                self._task_listeners.pop(task_id, None)

    async def maybe_start_agent_loop(
        self,
        conversation_id: str,
        *,
        user_id: str | None,
        settings: AgentSettings | None = None,
        initial_message: InitialMessage | None = None,
    ) -> AgentLoopInfo:
        self._check_open()
        meta = self.metadata(conversation_id, user_id)
        async with self._conversation_lock(conversation_id):
            runtime = self._runtimes.get(conversation_id)
            if runtime is None:
                self._set_status(conversation_id, ConversationStatus.STARTING, error=None)
                await self._launch(
                    conversation_id,
                    meta.user_id,
                    settings or AgentSettings(),
                    initial_message=initial_message,
                    workspace=meta.workspace,
                    replay=None,
                    progress=None,
                )
            elif initial_message is not None:
                await self.send_event_to_conversation(
                    conversation_id,
                    _message_input(initial_message),
                )
            runtime = self._runtimes.get(conversation_id)
            if runtime is None:  # it ended at once (its watcher holds no lock yet)
                self._existing(conversation_id)
                raise ConversationNotRunning(f"conversation {conversation_id} stopped at once")
            return self._loop_info(runtime)

    async def _launch(
        self,
        conversation_id: str,
        user_id: str | None,
        settings: AgentSettings,
        *,
        initial_message: InitialMessage | None,
        workspace: str | None,
        replay: dict[str, Any] | None,
        progress: Progress | None,
        warm: WarmRuntime | None = None,
    ) -> None:
        """Start a runtime (or take ``warm``) and bind the conversation to it (the caller
        holds its lock)."""

        def step(status: StartTaskStatus) -> None:
            if progress is not None:
                progress(status)

        if self.store.get(conversation_id) is None:
            raise ConversationNotFound(f"conversation {conversation_id} was deleted")
        await self._make_room(user_id, conversation_id)
        try:
            step(StartTaskStatus.WAITING_FOR_SANDBOX)
            key = self.session_key(conversation_id)
            root = self._workspace_root(conversation_id, workspace)
            boot_key = key
            if warm is not None:
                handle, boot_key = warm.handle, warm.boot_key
            else:
                await self._stop_orphans(conversation_id)
                try:
                    handle = await self.sandbox.start(
                        conversation_id,
                        {SESSION_KEY_ENV: key},
                        timeout=self.config.runtime_start_timeout,
                        owner=user_id,
                        workspace=root,
                    )
                except SandboxStartError as exc:
                    raise ConversationStartError(str(exc)) from exc
            runtime = _Runtime(conversation_id, user_id, handle, self._client(handle))
            self._runtimes[conversation_id] = runtime
            try:
                step(StartTaskStatus.PREPARING_WORKSPACE)
                await asyncio.to_thread(_prepare_workspace, root)
                step(StartTaskStatus.STARTING_CONVERSATION)
                relay = self._relay_for(conversation_id)
                await relay.sync_from_log()
                request = CreateConversationRequest(
                    conversation_id=conversation_id,
                    settings=settings,
                    initial_message=initial_message,
                    workspace=workspace,
                    replay=replay,
                    session_api_key=key,
                    confinement=self.sandbox.confinement_spec(),
                )
                try:
                    await self._bind(runtime, request, boot_key)
                except RuntimeClientError as exc:
                    raise ConversationStartError(
                        f"the runtime could not start the conversation: {exc.message}"
                    ) from exc
                # Fold what the runtime logged while starting (STARTING_RUNTIME, READY...)
                # before the start returns: relayed later, it would turn the status the
                # caller sees back to STARTING for a moment.
                await relay.sync_from_log()
                relay.attach(handle.url, key)
                runtime.ready = True
                self._watch(runtime)
            except BaseException:
                self._runtimes.pop(conversation_id, None)
                await runtime.client.aclose()
                await self.sandbox.kill(handle)
                raise
        except BaseException as exc:
            await self._start_failed(conversation_id, exc)
            raise
        finally:
            self._starting.pop(conversation_id, None)
            self._admission_may_have_changed()
        if self._fold_for(conversation_id).status in (
            None,
            ConversationStatus.STARTING,
            ConversationStatus.STOPPED,
        ):
            self._set_status(conversation_id, ConversationStatus.RUNNING, error=None)
        log.info("conversation %s is running (runtime %s)", conversation_id, handle.runtime_id)

    async def _stop_orphans(self, conversation_id: str) -> None:
        """A runtime of this conversation that runs unknown to us (its record lost) holds
        the log's lock, so a new one could never start: stop it first."""
        for handle in await self.sandbox.find_orphans(conversation_id):
            log.warning(
                "runtime %s of %s runs without a record; stopping it before the start",
                handle.runtime_id,
                conversation_id,
            )
            client = self._client(handle)
            try:
                await client.stop()
            except RuntimeClientError as exc:
                log.info("the orphaned runtime did not stop by itself (%s)", exc.message)
            finally:
                await client.aclose()
            await self.sandbox.stop(handle, grace=self.config.kill_grace_seconds)

    async def _bind(
        self, runtime: _Runtime, request: CreateConversationRequest, boot_key: str
    ) -> None:
        """POST the conversation to its runtime with the key the runtime booted with (a
        warm runtime's throwaway key, which the request's ``session_api_key`` replaces)."""
        if boot_key == request.session_api_key:
            await runtime.client.create_conversation(request)
            return
        client = RuntimeClient(
            runtime.handle.url,
            boot_key,
            runtime.conversation_id,
            timeout=self.config.runtime_request_timeout,
        )
        try:
            await client.create_conversation(request)
        finally:
            await client.aclose()

    async def _release_warm(self, warm: WarmRuntime | None) -> None:
        """A start that took a warm runtime failed before using it: end that runtime."""
        if warm is not None and warm.conversation_id not in self._runtimes:
            with contextlib.suppress(Exception):
                await self.sandbox.kill(warm.handle)

    async def _start_failed(self, conversation_id: str, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            reason = "the server shut down during start"
        else:
            reason = str(exc) or type(exc).__name__
        log.warning("conversation %s could not start: %s", conversation_id, reason)
        relay = self._relays.get(conversation_id)
        if relay is not None:
            await relay.detach()
            with contextlib.suppress(Exception):
                await relay.sync_from_log()  # e.g. the runtime's RUNTIME_START_FAILED
        self._set_status(
            conversation_id, ConversationStatus.ERROR, error=describe_error("START_FAILED", reason)
        )
        self._maybe_drop_relay(conversation_id)

    def _client(self, handle: RuntimeHandle) -> RuntimeClient:
        return RuntimeClient(
            handle.url,
            self.session_key(handle.conversation_id),
            handle.conversation_id,
            timeout=self.config.runtime_request_timeout,
        )

    async def _make_room(self, user_id: str | None, conversation_id: str) -> None:
        """Admit one more conversation of the user, one admission at a time (the user's
        lock): stop their least recently active running ones over the limit; while the
        limit is reached by starts still in flight (which cannot be stopped yet), wait for
        one of them to end. Then count this one in."""
        limit = self.config.max_concurrent_conversations
        async with self._user_lock(user_id):
            while True:
                changed = self._admission_changed
                await self.ensure_num_conversations_below_limit(user_id)
                if self._active_count(user_id) < limit:
                    break
                log.info(
                    "user %s is at the limit of %d conversations with starts in flight; "
                    "%s waits for one of them",
                    user_id,
                    limit,
                    conversation_id,
                )
                await changed.wait()
            self._starting[conversation_id] = user_id

    def _active_count(self, user_id: str | None) -> int:
        return sum(1 for owner in self._owners().values() if owner == user_id)

    def _admission_may_have_changed(self) -> None:
        """A start ended or a runtime went away: wake starts waiting for room."""
        changed, self._admission_changed = self._admission_changed, asyncio.Event()
        changed.set()

    async def ensure_num_conversations_below_limit(self, user_id: str | None) -> list[str]:
        active = [
            conversation_id for conversation_id, owner in self._owners().items() if owner == user_id
        ]
        excess = len(active) - self.config.max_concurrent_conversations + 1
        if excess <= 0:
            return []
        # Starts in flight count, but only running conversations can be stopped.
        stoppable = [
            runtime.conversation_id
            for runtime in self._runtimes.values()
            if runtime.user_id == user_id
            and runtime.ready
            and not runtime.stopping
            and runtime.conversation_id not in self._starting
        ]
        metas = [meta for meta in self.store.get_many(stoppable) if meta is not None]
        metas.sort(key=lambda meta: meta.updated_at)
        victims = [meta.id for meta in metas[:excess]]
        limit = self.config.max_concurrent_conversations
        for conversation_id in victims:
            log.info(
                "user %s has %d running conversations (limit %d): stopping %s",
                user_id,
                len(active),
                limit,
                conversation_id,
            )
            message = (
                f"Too many conversations at once (at most {limit} per user run together); "
                "this one was the least recently active, so it was stopped. "
                "Start it again to continue where it left off."
            )
            await self.publish(
                conversation_id, ErrorEvent(code=TOO_MANY_CONVERSATIONS, message=message)
            )
            await self.close_session(conversation_id)
            self._set_status(
                conversation_id,
                ConversationStatus.STOPPED,
                error=describe_error(TOO_MANY_CONVERSATIONS, message),
            )
        return victims

    def _owners(self) -> dict[str, str | None]:
        """Every conversation with a runtime or starting one, and its user."""
        owners = dict(self._starting)
        owners.update({cid: runtime.user_id for cid, runtime in self._runtimes.items()})
        return owners

    # --- watching -----------------------------------------------------------------------------

    def _watch(self, runtime: _Runtime) -> None:
        runtime.watcher = asyncio.create_task(
            self._watch_runtime(runtime), name=f"watch-{runtime.conversation_id}"
        )

    def _cancel_watcher(self, runtime: _Runtime) -> None:
        watcher, runtime.watcher = runtime.watcher, None
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()

    async def _watch_runtime(self, runtime: _Runtime) -> None:
        conversation_id = runtime.conversation_id
        code = await self.sandbox.wait_exit(runtime.handle)
        if runtime.stopping or self._runtimes.get(conversation_id) is not runtime:
            return
        async with self._conversation_lock(conversation_id):
            if runtime.stopping or self._runtimes.get(conversation_id) is not runtime:
                return
            runtime.watcher = None
            await self._runtime_exited(runtime, code)

    async def _runtime_exited(self, runtime: _Runtime, code: int | None) -> None:
        """The runtime ended without being asked: keep its log, say why."""
        conversation_id = runtime.conversation_id
        self._runtimes.pop(conversation_id, None)
        self._admission_may_have_changed()
        relay = self._relays.get(conversation_id)
        if relay is not None:
            await relay.wait_upstream_done(UPSTREAM_DRAIN_TIMEOUT)
            await relay.detach()
            await relay.sync_from_log()
        await runtime.client.aclose()
        await self.sandbox.kill(runtime.handle)
        if self._fold_for(conversation_id).status is ConversationStatus.STOPPED:
            log.info("runtime of %s stopped by itself", conversation_id)
            self._set_status(conversation_id, ConversationStatus.STOPPED)
        else:
            await self._record_death(
                conversation_id,
                f"the runtime ({_runtime_name(runtime.handle)}) {_describe_exit(code)}; "
                "its log so far is kept, see runtime.log for details",
            )
        self._maybe_drop_relay(conversation_id)

    def _upstream_closed(self, conversation_id: str) -> None:
        runtime = self._runtimes.get(conversation_id)
        if runtime is None or runtime.stopping or not runtime.ready or self._closing:
            return
        self._spawn(self._recover_upstream(runtime), f"upstream-{conversation_id}")

    async def _recover_upstream(self, runtime: _Runtime) -> None:
        """The event stream ended while the runtime should run: reconnect if it answers,
        else end it (its watcher then reports it dead)."""
        conversation_id = runtime.conversation_id
        delay = UPSTREAM_RETRY_DELAY
        for _attempt in range(UPSTREAM_RETRIES):
            if runtime.stopping or self._runtimes.get(conversation_id) is not runtime:
                return
            if not await self.sandbox.is_alive(runtime.handle):
                return  # the watcher takes it from here
            if await runtime.client.alive():
                relay = self._relay_for(conversation_id)
                await relay.detach()
                await relay.sync_from_log()
                relay.attach(runtime.handle.url, self.session_key(conversation_id))
                log.info("reconnected to the event stream of %s", conversation_id)
                return
            await asyncio.sleep(delay)
            delay *= 2
        if runtime.stopping or self._runtimes.get(conversation_id) is not runtime:
            return
        log.warning("runtime of %s stopped answering; killing it", conversation_id)
        await self.sandbox.kill(runtime.handle)

    # --- stopping -----------------------------------------------------------------------------

    async def close_session(self, conversation_id: str) -> None:
        async with self._conversation_lock(conversation_id):
            runtime = self._runtimes.get(conversation_id)
            if runtime is None:
                return
            await self._stop_runtime(runtime)

    async def _stop_runtime(self, runtime: _Runtime) -> None:
        """Graceful stop: ask the runtime, poll it a few times, then end its process group."""
        conversation_id = runtime.conversation_id
        runtime.stopping = True
        self._cancel_watcher(runtime)
        handle = runtime.handle
        log.info("stopping conversation %s (runtime %s)", conversation_id, handle.runtime_id)
        try:
            await runtime.client.stop()
        except RuntimeClientError as exc:
            log.warning("runtime of %s refused to stop (%s); terminating it", conversation_id, exc)
        else:
            for _attempt in range(self.config.stop_poll_attempts):
                if await self._exited_within(handle, self.config.stop_poll_interval):
                    break
                try:
                    info = await runtime.client.info()
                except RuntimeClientError:
                    continue  # going away: the next wait sees it exit
                log.debug("runtime of %s reports %s", conversation_id, info.status)
        await self.sandbox.stop(handle, grace=self.config.kill_grace_seconds)
        relay = self._relays.get(conversation_id)
        if relay is not None:
            await relay.wait_upstream_done(UPSTREAM_DRAIN_TIMEOUT)
            await relay.detach()
            await relay.sync_from_log()
        self._runtimes.pop(conversation_id, None)
        self._admission_may_have_changed()
        await runtime.client.aclose()
        self._set_status(conversation_id, ConversationStatus.STOPPED)
        self._maybe_drop_relay(conversation_id)
        log.info("conversation %s stopped", conversation_id)

    async def _exited_within(self, handle: RuntimeHandle, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.sandbox.wait_exit(handle), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def delete_conversation(self, conversation_id: str) -> None:
        async with self._conversation_lock(conversation_id):
            runtime = self._runtimes.get(conversation_id)
            if runtime is not None:
                await self._stop_runtime(runtime)
            relay = self._relays.pop(conversation_id, None)
            if relay is not None:
                await relay.close(gone=True)  # watchers are told: deleted (WS 4404)
            self._folds.pop(conversation_id, None)
            conv_dir = self.conversation_dir(conversation_id)
            existed_on_disk = conv_dir.exists()
            await self.sandbox.remove(conversation_id)
            await asyncio.to_thread(shutil.rmtree, conv_dir, True)
            existed = self.store.delete(conversation_id)
        self._conversation_locks.pop(conversation_id, None)
        if not existed and not existed_on_disk:
            raise ConversationNotFound(f"conversation {conversation_id} not found")
        log.info("conversation %s deleted", conversation_id)

    # --- running loops ------------------------------------------------------------------------

    def _matching(self, user_id: str | None, filter_to_ids: set[str] | None) -> list[str]:
        return [
            conversation_id
            for conversation_id, owner in self._owners().items()
            if (user_id is None or owner == user_id)
            and (filter_to_ids is None or conversation_id in filter_to_ids)
        ]

    async def is_agent_loop_running(self, conversation_id: str) -> bool:
        return conversation_id in self._owners()

    async def get_running_agent_loops(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> set[str]:
        return set(self._matching(user_id, filter_to_ids))

    async def get_agent_loop_info(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> list[AgentLoopInfo]:
        infos = []
        for conversation_id in self._matching(user_id, filter_to_ids):
            runtime = self._runtimes.get(conversation_id)
            if runtime is not None:
                infos.append(self._loop_info(runtime))
            else:
                infos.append(
                    AgentLoopInfo(
                        conversation_id=conversation_id,
                        user_id=self._starting.get(conversation_id),
                        status=ConversationStatus.STARTING.value,
                        sandbox=self.sandbox.kind,
                    )
                )
        return infos

    def _loop_info(self, runtime: _Runtime) -> AgentLoopInfo:
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

    def _ready_runtime(self, conversation_id: str) -> _Runtime:
        runtime = self._runtimes.get(conversation_id)
        if runtime is None or not runtime.ready or runtime.stopping:
            raise ConversationNotRunning(f"conversation {conversation_id} is not running")
        return runtime

    async def send_event_to_conversation(self, conversation_id: str, data: UserInput) -> None:
        runtime = self._ready_runtime(conversation_id)
        try:
            await runtime.client.send_input(data)
        except RuntimeConflict as exc:
            raise ConversationNotRunning(exc.message) from exc
        except RuntimeBadRequest as exc:
            raise ValueError(exc.message) from exc
        except RuntimeClientError as exc:
            raise ConversationNotRunning(
                f"conversation {conversation_id}: the runtime did not take the input: {exc.message}"
            ) from exc

    # --- events -------------------------------------------------------------------------------

    async def subscribe(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[Event, None]:
        self._existing(conversation_id)
        relay = self._relay_for(conversation_id)
        events = relay.subscribe(after_id)
        try:
            async for event in events:
                yield event
        except ConversationGone:
            raise ConversationNotFound(f"conversation {conversation_id} was deleted") from None
        finally:
            await events.aclose()
            self._maybe_drop_relay(conversation_id)

    async def subscribe_frames(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[str, None]:
        """``subscribe`` as text frames, each event serialized once for all subscribers
        (the relay's frame cache, bounded in bytes and emptied when the stream ends)."""
        relay = self._relay_for(self._existing(conversation_id).id)
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

    async def publish(self, conversation_id: str, event: Event) -> None:
        fold = self._folds.get(conversation_id)
        if isinstance(event, TitleEvent) and fold is not None:
            fold.title = event.title  # a rename: never overwritten by a generated title
        relay = self._relays.get(conversation_id)
        if relay is not None:
            relay.publish(event)

    # --- workspace ----------------------------------------------------------------------------

    async def _offline(self, conversation_id: str, work: Callable[[Workspace], _T]) -> _T:
        """Serve the workspace from disk (no runtime runs), under the conversation's lock:
        a delete holds it, so a read or upload racing it cannot bring the folder back."""
        async with self._conversation_lock(conversation_id):
            meta = self._existing(conversation_id)
            root = self._workspace_root(conversation_id, meta.workspace)
            with _workspace_errors():
                return await asyncio.to_thread(lambda: work(Workspace(root)))

    async def list_files(self, conversation_id: str, path: str | None = None) -> list[str]:
        runtime = self._runtimes.get(conversation_id)
        if runtime is not None and runtime.ready:
            with _workspace_errors():
                return await runtime.client.list_files(path)
        return await self._offline(
            conversation_id, lambda workspace: workspace_files.list_entries(workspace, path)
        )

    async def select_file(self, conversation_id: str, file: str) -> str:
        runtime = self._runtimes.get(conversation_id)
        if runtime is not None and runtime.ready:
            with _workspace_errors():
                return await runtime.client.select_file(file)
        return await self._offline(
            conversation_id, lambda workspace: workspace_files.read_text(workspace, file)
        )

    async def upload_files(self, conversation_id: str, files: list[FileUpload]) -> UploadResult:
        result = UploadResult(uploaded=[], skipped=[])
        accepted: list[tuple[str, bytes]] = []
        for upload in files:
            if len(upload.content) > self.config.upload_max_bytes:
                result.skipped.append(
                    {
                        "name": upload.name,
                        "reason": f"{len(upload.content)} bytes is over the limit of "
                        f"{self.config.upload_max_bytes} bytes per file",
                    }
                )
            else:
                accepted.append((upload.name, upload.content))
        runtime = self._runtimes.get(conversation_id)
        if runtime is not None and runtime.ready:
            for name, content in accepted:  # one per request: each fits the runtime's limit
                with _workspace_errors():
                    answer = await runtime.client.upload_files([(name, content)])
                result.uploaded.extend(answer.get("uploaded", []))
                result.skipped.extend(answer.get("skipped", []))
            return result
        saved = await self._offline(
            conversation_id, lambda workspace: workspace_files.save_uploads(workspace, accepted)
        )
        result.uploaded.extend(saved.uploaded)
        result.skipped.extend(saved.skipped)
        return result

    async def workspace_zip(self, conversation_id: str) -> bytes:
        runtime = self._runtimes.get(conversation_id)
        if runtime is not None and runtime.ready:
            with _workspace_errors():
                return await runtime.client.workspace_zip()

        def build(workspace: Workspace) -> bytes:
            buffer = io.BytesIO()
            workspace_files.write_zip(workspace, buffer)
            return buffer.getvalue()

        return await self._offline(conversation_id, build)

    # --- LLM ----------------------------------------------------------------------------------

    async def request_llm_completion(
        self, conversation_id: str, llm_config: LLMConfig, messages: list[dict[str, str]]
    ) -> str:
        from ..agent.llm import LLMClient

        self._existing(conversation_id)
        client = LLMClient(llm_config)
        try:
            response = await client.complete(messages)
        finally:
            await client.close()
        return response.content or ""


def setting_values(settings: AgentSettings) -> list[str]:
    """The secret values in ``settings``: the LLM key and the named secrets."""
    values = [value.get_secret_value() for value in settings.secrets.values()]
    if settings.llm.api_key is not None:
        values.append(settings.llm.api_key.get_secret_value())
    return values


def _prepare_workspace(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConversationStartError(f"the workspace {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)


def _message_input(message: InitialMessage) -> UserInput:
    from ..events.inputs import MessageInput

    return MessageInput(text=message.text, image_urls=list(message.image_urls))


def _runtime_name(handle: RuntimeHandle) -> str:
    if handle.kind == "process":
        return f"pid {handle.runtime_id}"
    return f"{handle.kind} {handle.runtime_id[:12]}"


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited unexpectedly"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited unexpectedly with code {code}"


@contextlib.contextmanager
def _workspace_errors() -> Iterator[None]:
    """Workspace failures, from the runtime or the disk, as ``WorkspaceRequestError``."""
    try:
        yield
    except workspace_files.WorkspaceFileError as exc:
        raise WorkspaceRequestError(str(exc), exc.status) from exc
    except RuntimeNotFound as exc:
        raise WorkspaceRequestError(exc.message, 404) from exc
    except RuntimeBadRequest as exc:
        status = _WORKSPACE_ERROR_STATUS.get(exc.status_code or 400, 400)
        raise WorkspaceRequestError(exc.message, status) from exc
    except RuntimeClientError as exc:
        raise ConversationNotRunning(f"the runtime did not answer: {exc.message}") from exc
