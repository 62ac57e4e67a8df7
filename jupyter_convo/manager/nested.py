"""The conversation manager of the Jupyter server: every agent loop runs in a nested runtime.

A facade over parts with one job each, wired with callbacks (no part imports another's
owner): ``supervision`` (the running runtimes, their watchers, the stop protocol),
``admission`` (the per-user limit), ``start_tasks`` (start progress), ``hub`` (relays and the
metadata fold) and ``workspace_proxy`` (workspace routes). What stays here is the order of
things: starting (sandbox, bind, relay), stopping, deleting, and finding runtimes again
after a server restart (``start``).

Over 400 lines because it is the whole ``ConversationManager`` contract in one place: most
methods are a line or two handing over to a part; the rest is the order of the steps.

Each running conversation has one runtime (started by a ``Sandbox``), reached over HTTP with
the conversation's session key. Runtimes outlive the server by default and are found again
by ``start``; a conversation whose runtime vanished turns to ERROR, with RUNTIME_DIED
appended to its otherwise intact log. ``start`` first takes the data dir's owner lock (one
manager per data dir, ``owner.py``) and also takes over runtimes that lost their record
(or stops them), since each holds its conversation's log lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from ..agent.settings import AgentSettings, LLMConfig
from ..events.inputs import UserInput
from ..events.log import EventPage
from ..events.redact import SecretRegistry
from ..events.schema import ConversationStatus, ErrorEvent, Event
from ..runtime.models import InitialMessage
from ..store.conversations import (
    ConversationMetadata,
    ConversationStore,
    StartTask,
    new_id,
)
from ..store.settings import SettingsStore, known_secrets
from ..store.titles import clean_title
from .admission import Admission
from .base import (
    AgentLoopInfo,
    ConversationManager,
    ConversationNotFound,
    ConversationNotRunning,
    FileUpload,
    UploadResult,
)
from .config import ManagerConfig
from .hub import EventHub
from .keys import load_or_create_server_secret, session_key
from .launch import Launcher
from .metadata import TOO_MANY_CONVERSATIONS, describe_error
from .owner import DataDirLock
from .pool import WarmPool
from .recovery import Recovery
from .runtime_client import RuntimeBadRequest, RuntimeClient, RuntimeClientError, RuntimeConflict
from .sandboxes import make_sandbox
from .sandboxes.base import RuntimeHandle, Sandbox
from .start_tasks import StartTasks
from .supervision import ManagedRuntime, RuntimeSupervisor
from .title import title_from_message
from .workspace_proxy import WorkspaceProxy

log = logging.getLogger(__name__)

# Mirrors jupyter_convo.runtime.session: where a conversation keeps its log and workspace.
EVENTS_FILE = "events.jsonl"
WORKSPACE_DIR = "workspace"
# After a stop, how long the relay may still read the runtime's last frames.
UPSTREAM_DRAIN_TIMEOUT = 5.0


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
        super().__init__(config, store=store, sandbox=sandbox, settings_store=settings_store)
        # Users' secrets, hidden in titles (with credential-named environment variables).
        self.settings_store = settings_store
        config.conversations_root.mkdir(parents=True, exist_ok=True)
        self._owns_store = store is None
        self.store = store if store is not None else ConversationStore(config.db_path)
        self.sandbox = sandbox if sandbox is not None else make_sandbox(config)
        self._secret = load_or_create_server_secret(config.data_dir)
        self.owner_lock = DataDirLock(config.data_dir)
        self._conversation_locks: dict[str, asyncio.Lock] = {}
        self._start_jobs: set[asyncio.Task[None]] = set()
        self._closing = False
        self.supervisor = RuntimeSupervisor(
            self.sandbox,
            config,
            session_key=self.session_key,
            lock=self._conversation_lock,
            on_exit=self._runtime_exited,
            reconnect=self._reconnect,
        )
        self.admission = Admission(
            config.max_concurrent_conversations,
            self.store,
            self.supervisor,
            stop_for_room=self._stop_for_room,
        )
        self.tasks = StartTasks(self.store)
        self.hub = EventHub(
            self.store,
            log_path=self._log_path,
            runtime_client=self._bound_client,
            clean_title=self._clean_title,
            in_use=lambda cid: cid in self.admission.owners(),
            on_upstream_closed=self.supervisor.upstream_closed,
        )
        self.launcher = Launcher(
            config,
            self.store,
            self.sandbox,
            supervisor=self.supervisor,
            admission=self.admission,
            hub=self.hub,
            tasks=self.tasks,
            session_key=self.session_key,
            lock=self._conversation_lock,
            workspace_root=self._workspace_root,
        )
        self.recovery = Recovery(
            config,
            self.store,
            self.sandbox,
            supervisor=self.supervisor,
            hub=self.hub,
            tasks=self.tasks,
            session_key=self.session_key,
            delete=self.delete_conversation,
        )
        self.workspace = WorkspaceProxy(
            upload_max_bytes=config.upload_max_bytes,
            ready_client=self._ready_client,
            lock=self._conversation_lock,
            existing=self._existing,
            workspace_root=self._workspace_root,
        )
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

    def _bound_client(self, conversation_id: str) -> RuntimeClient | None:
        """The client of the conversation's runtime while it is bound and has not ended:
        then the runtime, not the files, answers for its events."""
        runtime = self.supervisor.get(conversation_id)
        return runtime.client if runtime is not None and runtime.bound else None

    def _ready_client(self, conversation_id: str) -> RuntimeClient | None:
        runtime = self.supervisor.get(conversation_id)
        return runtime.client if runtime is not None and runtime.ready else None

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
        found = await self.recovery.run()
        if self.pool is not None:
            self.pool.start()
        log.info("conversation manager started; %d runtime(s) found again", found)

    async def shutdown(self) -> None:
        self._closing = True
        if self.pool is not None:
            await self.pool.close()
        for job in list(self._start_jobs):
            job.cancel()
        await asyncio.gather(*self._start_jobs, return_exceptions=True)
        await self.supervisor.cancel_background()
        for runtime in list(self.supervisor.runtimes.values()):
            if self.config.keep_runtimes_on_shutdown:
                self.supervisor.cancel_watcher(runtime)
                relay = self.hub.relay(runtime.conversation_id)
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
        self.supervisor.runtimes.clear()
        await self.hub.close()
        await self.sandbox.aclose()
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
                f"sandbox {kind!r} is not available: this server runs {self.sandbox.kind!r} "
                "runtimes (c.ConvoExtension.sandbox; GET capabilities lists the kinds)"
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
            self.launcher.run_start_task(
                task.id, meta.id, user_id, settings, initial_message, workspace, replay, warm
            ),
            name=f"start-{meta.id}",
        )
        self._start_jobs.add(job)
        job.add_done_callback(self._start_jobs.discard)
        return task

    async def start_task_updates(self, task_id: str) -> AsyncGenerator[StartTask, None]:
        updates = self.tasks.updates(task_id)
        try:
            async for task in updates:
                yield task
        finally:
            await updates.aclose()

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
            runtime = self.supervisor.get(conversation_id)
            if runtime is None:
                self.hub.set_status(conversation_id, ConversationStatus.STARTING, error=None)
                await self.launcher.launch(
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
            runtime = self.supervisor.get(conversation_id)
            if runtime is None:  # it ended at once (its watcher holds no lock yet)
                self._existing(conversation_id)
                raise ConversationNotRunning(f"conversation {conversation_id} stopped at once")
            return self.admission.loop_info(runtime)

    async def ensure_num_conversations_below_limit(self, user_id: str | None) -> list[str]:
        return await self.admission.ensure_below_limit(user_id)

    async def _stop_for_room(self, conversation_id: str, message: str) -> None:
        """Admission stops this conversation to make room; its watchers are told why."""
        await self.publish(
            conversation_id, ErrorEvent(code=TOO_MANY_CONVERSATIONS, message=message)
        )
        await self.close_session(conversation_id)
        self.hub.set_status(
            conversation_id,
            ConversationStatus.STOPPED,
            error=describe_error(TOO_MANY_CONVERSATIONS, message),
        )

    # --- a runtime that ends or loses its stream ----------------------------------------------

    async def _runtime_exited(self, runtime: ManagedRuntime, code: int | None) -> None:
        """The runtime ended without being asked (its lock held): keep its log, say why."""
        conversation_id = runtime.conversation_id
        self.supervisor.runtimes.pop(conversation_id, None)
        self.admission.may_have_changed()
        relay = self.hub.relay(conversation_id)
        if relay is not None:
            await relay.wait_upstream_done(UPSTREAM_DRAIN_TIMEOUT)
            await relay.detach()
            await relay.sync_from_log()
        await runtime.client.aclose()
        await self.sandbox.kill(runtime.handle)
        if self.hub.fold_for(conversation_id).status is ConversationStatus.STOPPED:
            log.info("runtime of %s stopped by itself", conversation_id)
            self.hub.set_status(conversation_id, ConversationStatus.STOPPED)
        else:
            await self.hub.record_death(
                conversation_id,
                f"the runtime ({_runtime_name(runtime.handle)}) {_describe_exit(code)}; "
                "its log so far is kept, see runtime.log for details",
            )
        self.hub.maybe_drop_relay(conversation_id)

    async def _reconnect(self, runtime: ManagedRuntime) -> None:
        """The runtime answers again: its events from where the relay left off."""
        relay = self.hub.relay_for(runtime.conversation_id)
        await relay.detach()
        await relay.sync_from_log()
        relay.attach(runtime.handle.url, self.session_key(runtime.conversation_id))

    # --- stopping -----------------------------------------------------------------------------

    async def close_session(self, conversation_id: str) -> None:
        async with self._conversation_lock(conversation_id):
            runtime = self.supervisor.get(conversation_id)
            if runtime is None:
                return
            await self._stop_runtime(runtime)

    async def _stop_runtime(self, runtime: ManagedRuntime) -> None:
        """Graceful stop (the supervisor's protocol), then the last events and STOPPED."""
        conversation_id = runtime.conversation_id
        await self.supervisor.stop(runtime)
        runtime.bound = False  # it has ended: its log is read from the files now
        relay = self.hub.relay(conversation_id)
        if relay is not None:
            await relay.wait_upstream_done(UPSTREAM_DRAIN_TIMEOUT)
            await relay.detach()
            await relay.sync_from_log()
        self.supervisor.runtimes.pop(conversation_id, None)
        self.admission.may_have_changed()
        await runtime.client.aclose()
        self.hub.set_status(conversation_id, ConversationStatus.STOPPED)
        self.hub.maybe_drop_relay(conversation_id)
        log.info("conversation %s stopped", conversation_id)

    async def delete_conversation(self, conversation_id: str) -> None:
        async with self._conversation_lock(conversation_id):
            runtime = self.supervisor.get(conversation_id)
            if runtime is not None:
                await self._stop_runtime(runtime)
            await self.hub.forget(conversation_id)  # watchers are told: deleted (WS 4404)
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

    async def is_agent_loop_running(self, conversation_id: str) -> bool:
        return conversation_id in self.admission.owners()

    async def get_running_agent_loops(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> set[str]:
        return set(self.admission.matching(user_id, filter_to_ids))

    async def get_agent_loop_info(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> list[AgentLoopInfo]:
        return self.admission.loop_infos(user_id, filter_to_ids)

    async def send_event_to_conversation(self, conversation_id: str, data: UserInput) -> None:
        runtime = self.supervisor.ready(conversation_id)
        if runtime is None:
            raise ConversationNotRunning(f"conversation {conversation_id} is not running")
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

    # --- events and the workspace: the hub's and the proxy's ----------------------------------

    async def subscribe(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[Event, None]:
        self._existing(conversation_id)
        events = self.hub.subscribe(conversation_id, after_id)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()

    async def subscribe_frames(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[str, None]:
        self._existing(conversation_id)
        frames = self.hub.subscribe_frames(conversation_id, after_id)
        try:
            async for frame in frames:
                yield frame
        finally:
            await frames.aclose()

    def watched(self) -> set[str]:
        return self.hub.watched()

    def cached_bytes(self) -> int:
        return self.hub.cached_bytes()

    async def publish(self, conversation_id: str, event: Event) -> None:
        self.hub.publish(conversation_id, event)

    async def search_events(self, conversation_id: str, **query: Any) -> EventPage | None:
        client = self._bound_client(conversation_id)
        if client is None:
            return None
        with _runtime_query_errors():
            return await client.search_events(**query)

    async def count_events(self, conversation_id: str, **query: Any) -> int | None:
        client = self._bound_client(conversation_id)
        if client is None:
            return None
        with _runtime_query_errors():
            return await client.count_events(**query)

    async def list_files(self, conversation_id: str, path: str | None = None) -> list[str]:
        return await self.workspace.list_files(conversation_id, path)

    async def select_file(self, conversation_id: str, file: str) -> str:
        return await self.workspace.select_file(conversation_id, file)

    async def upload_files(self, conversation_id: str, files: list[FileUpload]) -> UploadResult:
        return await self.workspace.upload_files(conversation_id, files)

    async def workspace_zip(self, conversation_id: str) -> bytes:
        return await self.workspace.workspace_zip(conversation_id)

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


def _message_input(message: InitialMessage) -> UserInput:
    from ..events.inputs import MessageInput

    return MessageInput(text=message.text, image_urls=list(message.image_urls))


def _runtime_name(handle: RuntimeHandle) -> str:
    if handle.pid is not None:
        return f"pid {handle.runtime_id}"
    return f"{handle.kind} {handle.runtime_id[:12]}"


@contextlib.contextmanager
def _runtime_query_errors() -> Iterator[None]:
    """A filter the runtime refuses is a ValueError (400); no answer, not running (409)."""
    try:
        yield
    except RuntimeBadRequest as exc:
        raise ValueError(exc.message) from exc
    except RuntimeClientError as exc:
        raise ConversationNotRunning(f"the runtime did not answer: {exc.message}") from exc


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exited unexpectedly"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited unexpectedly with code {code}"
