"""Launching a conversation: a runtime from the sandbox (or the warm pool), the workspace,
the bind request, then the relay attached to the runtime's event stream.

The start task records each step; a failure at any step ends the runtime, marks the
conversation ERROR (with the runtime's own RUNTIME_START_FAILED, if it logged one) and
says why in the start task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..agent.settings import AgentSettings
from ..events.schema import ConversationStatus
from ..runtime.auth import SESSION_KEY_ENV
from ..runtime.models import CreateConversationRequest, InitialMessage
from ..store.conversations import ConversationStore, StartTaskStatus
from .admission import Admission
from .base import ConversationNotFound, ConversationStartError
from .config import ManagerConfig
from .hub import EventHub
from .metadata import describe_error
from .pool import WarmRuntime
from .runtime_client import RuntimeClientError
from .sandboxes.base import Sandbox, SandboxStartError
from .start_tasks import StartTasks
from .supervision import ManagedRuntime, RuntimeSupervisor

log = logging.getLogger(__name__)

# A start's step, and what it waits for in words (the start task's detail), if anything.
Progress = Callable[[StartTaskStatus, str | None], None]


class Launcher:
    """Starts conversations' runtimes and binds them (see the module doc). Callbacks: the
    session key, the conversation's lock and where its workspace is."""

    def __init__(
        self,
        config: ManagerConfig,
        store: ConversationStore,
        sandbox: Sandbox,
        *,
        supervisor: RuntimeSupervisor,
        admission: Admission,
        hub: EventHub,
        tasks: StartTasks,
        session_key: Callable[[str], str],
        lock: Callable[[str], asyncio.Lock],
        workspace_root: Callable[[str, str | None], Path],
    ) -> None:
        self.config = config
        self.store = store
        self.sandbox = sandbox
        self.supervisor = supervisor
        self.admission = admission
        self.hub = hub
        self.tasks = tasks
        self._session_key = session_key
        self._lock = lock
        self._workspace_root = workspace_root

    async def run_start_task(
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
        """The background job of ``create_conversation``: launch, recording progress."""

        def progress(status: StartTaskStatus, detail: str | None) -> None:
            self.tasks.set(task_id, status, detail)

        try:
            async with self._lock(conversation_id):
                await self.launch(
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
            self.tasks.set(task_id, StartTaskStatus.ERROR, "the server shut down during start")
            raise
        except Exception as exc:
            await self._release_warm(warm)
            self.tasks.set(task_id, StartTaskStatus.ERROR, str(exc) or type(exc).__name__)
            return
        self.tasks.set(task_id, StartTaskStatus.READY)

    async def launch(
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

        def step(status: StartTaskStatus, detail: str | None = None) -> None:
            if progress is not None:
                progress(status, detail)

        def sandbox_progress(detail: str) -> None:
            step(StartTaskStatus.WAITING_FOR_SANDBOX, detail)

        if self.store.get(conversation_id) is None:
            raise ConversationNotFound(f"conversation {conversation_id} was deleted")
        await self.admission.make_room(user_id, conversation_id)
        try:
            step(StartTaskStatus.WAITING_FOR_SANDBOX)
            key = self._session_key(conversation_id)
            root = self._workspace_root(conversation_id, workspace)
            boot_key = key
            if warm is not None:
                handle, boot_key = warm.handle, warm.boot_key
            else:
                await self.supervisor.stop_orphans(conversation_id)
                try:
                    handle = await self.sandbox.start(
                        conversation_id,
                        {SESSION_KEY_ENV: key},
                        timeout=self.config.runtime_start_timeout,
                        owner=user_id,
                        workspace=root,
                        progress=sandbox_progress,
                    )
                except SandboxStartError as exc:
                    raise ConversationStartError(str(exc)) from exc
            runtime = ManagedRuntime(
                conversation_id, user_id, handle, self.supervisor.client(handle)
            )
            self.supervisor.runtimes[conversation_id] = runtime
            try:
                step(StartTaskStatus.PREPARING_WORKSPACE)
                await asyncio.to_thread(_prepare_workspace, root)
                step(StartTaskStatus.STARTING_CONVERSATION)
                relay = self.hub.relay_for(conversation_id)
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
                runtime.bound = True
                # Bound: it takes inputs from now on. Watchers may already see the agent's
                # first answer (the sync below relays it), and a reply must not be refused.
                runtime.ready = True
                # Fold what the runtime logged while starting (STARTING_RUNTIME, READY...)
                # before the start returns: relayed later, it would turn the status the
                # caller sees back to STARTING for a moment.
                await relay.sync_from_log()
                relay.attach(handle.url, key)
                self.supervisor.watch(runtime)
            except BaseException:
                self.supervisor.runtimes.pop(conversation_id, None)
                await runtime.client.aclose()
                await self.sandbox.kill(handle)
                raise
        except BaseException as exc:
            await self._start_failed(conversation_id, exc)
            raise
        finally:
            self.admission.done_starting(conversation_id)
        if self.hub.fold_for(conversation_id).status in (
            None,
            ConversationStatus.STARTING,
            ConversationStatus.STOPPED,
        ):
            self.hub.set_status(conversation_id, ConversationStatus.RUNNING, error=None)
        log.info("conversation %s is running (runtime %s)", conversation_id, handle.runtime_id)

    async def _bind(
        self, runtime: ManagedRuntime, request: CreateConversationRequest, boot_key: str
    ) -> None:
        """POST the conversation to its runtime with the key the runtime booted with (a
        warm runtime's throwaway key, which the request's ``session_api_key`` replaces)."""
        if boot_key == request.session_api_key:
            await runtime.client.create_conversation(request)
            return
        client = self.supervisor.client(runtime.handle, boot_key)
        try:
            await client.create_conversation(request)
        finally:
            await client.aclose()

    async def _release_warm(self, warm: WarmRuntime | None) -> None:
        """A start that took a warm runtime failed before using it: end that runtime."""
        if warm is not None and warm.conversation_id not in self.supervisor.runtimes:
            with contextlib.suppress(Exception):
                await self.sandbox.kill(warm.handle)

    async def _start_failed(self, conversation_id: str, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            reason = "the server shut down during start"
        else:
            reason = str(exc) or type(exc).__name__
        log.warning("conversation %s could not start: %s", conversation_id, reason)
        relay = self.hub.relay(conversation_id)
        if relay is not None:
            await relay.detach()
            with contextlib.suppress(Exception):
                await relay.sync_from_log()  # e.g. the runtime's RUNTIME_START_FAILED
        self.hub.set_status(
            conversation_id, ConversationStatus.ERROR, error=describe_error("START_FAILED", reason)
        )
        self.hub.maybe_drop_relay(conversation_id)


def _prepare_workspace(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise ConversationStartError(f"the workspace {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
