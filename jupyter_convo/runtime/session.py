"""The conversation a runtime hosts: its directory, log, secrets, workspace and agent.

A runtime hosts exactly one conversation and one agent backend (``runtime.agents``), chosen
by ``settings.agent`` (else the one the log says it ran with, else the built-in agent). The
session owns the log and the ``EventSink`` backends emit through. Binding creates (or
reopens) the conversation directory; an existing ``events.jsonl`` means a restart and the
backend continues from it. A request with ``replay`` (and no log yet) first replays a
recorded run into the new log (``jupyter_convo.share.replay``), then hands over to a live agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..agent.cassette import Cassette
from ..agent.confine import Confiner
from ..agent.llm import LLMClient
from ..agent.metrics import Metrics
from ..agent.repository import clone_repository
from ..agent.workspace import Workspace
from ..events.inputs import UserInput
from ..events.log import EventLog
from ..events.redact import SecretRegistry
from ..events.schema import (
    AgentState,
    ConversationStatus,
    ErrorEvent,
    Event,
    RuntimeStatus,
    SandboxEvent,
    StatusEvent,
    TitleEvent,
)
from ..events.sink import LogSink
from .agents import DEFAULT_AGENT, load_backend
from .agents.base import AgentBackend, AgentBusy, AgentContext
from .models import ConversationInfo, CreateConversationRequest

if TYPE_CHECKING:
    from ..agent.settings import AgentSettings
    from ..share.source import ReplayRequest, ReplaySource

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
CASSETTE_FILE = "cassette.jsonl"
WORKSPACE_DIR = "workspace"
START_FAILED_CODE = "RUNTIME_START_FAILED"
# How long a stop waits for event streams to send the last events before closing the log.
DRAIN_TIMEOUT = 5.0


class SessionStartError(RuntimeError):
    """The agent loop could not be built (bad settings, a tool that failed to start)."""


class SessionClosed(RuntimeError):
    """The conversation was stopped; it takes no more input."""


class SessionBusy(RuntimeError):
    """The conversation is replaying a recorded run; it takes input once that is done."""


def register_secrets(secrets: SecretRegistry, request: CreateConversationRequest) -> None:
    """Every value of the request that must never be shown: API key, user secrets, keys."""
    settings = request.settings
    if settings.llm.api_key is not None:
        secrets.add(settings.llm.api_key.get_secret_value())
    secrets.add_many(value.get_secret_value() for value in settings.secrets.values())
    secrets.add(request.session_api_key)
    secrets.add_from_environ()


def workspace_root(request: CreateConversationRequest, directory: Path) -> Path:
    """The requested workspace (relative paths are taken from the conversation directory)."""
    if request.workspace is None:
        return directory / WORKSPACE_DIR
    path = Path(request.workspace).expanduser()
    return path if path.is_absolute() else directory / path


class ConversationSession:
    """One bound conversation. ``start`` runs the agent; ``stop`` ends it for good."""

    def __init__(
        self,
        request: CreateConversationRequest,
        *,
        conversations_root: Path,
        secrets: SecretRegistry,
    ) -> None:
        self.conversation_id = request.conversation_id
        self.request = request
        self.secrets = secrets
        register_secrets(secrets, request)
        self.directory = conversations_root / request.conversation_id
        self.directory.mkdir(parents=True, exist_ok=True)
        self.workspace = Workspace(workspace_root(request, self.directory))
        # Checked before the log opens: a bad replay source is the request's fault (400).
        self.replay = self._replay_source(request)
        self.log = EventLog(self.directory / EVENTS_FILE, secrets=secrets)
        self.restarted = len(self.log) > 0
        self.runtime_status = RuntimeStatus.STARTING_RUNTIME
        # The one door backends write through (the runtime's own records use the log).
        self.events = LogSink(self.log)
        self.agent_name: str | None = None
        self.backend: AgentBackend | None = None
        self._started = asyncio.Event()
        self._start_error: str | None = None
        self._stop_task: asyncio.Task[None] | None = None
        # ``closing``: the last event is logged, streams send what is left and end.
        # ``closed``: the log is closed, inputs are refused, info is served from the cache.
        self.closing = asyncio.Event()
        self.closed = asyncio.Event()
        self._subscribers: set[asyncio.Task[object]] = set()
        self._final_info: ConversationInfo | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the LLM client, the jail and the chosen agent backend, then start it (in
        the background: a backend returns once its agent is under way)."""
        message = self.request.initial_message
        try:
            settings = self.request.settings
            self.agent_name = self._agent_name(settings)
            backend_class = load_backend(self.agent_name)
            self._status(
                RuntimeStatus.STARTING_RUNTIME,
                "restarting" if self.restarted else "",
                agent=self.agent_name,
            )
            if settings.repository is not None:
                await self._clone(settings)
            cassette = Cassette(self.directory / CASSETTE_FILE, secrets=self.secrets)
            llm = LLMClient(settings.llm, cassette=cassette, secrets=self.secrets)
            confiner = self._confiner(settings)
            self.log.append(confiner.event())
            self.backend = backend_class(
                AgentContext(
                    conversation_id=self.conversation_id,
                    directory=self.directory,
                    workspace=self.workspace,
                    settings=settings,
                    events=self.events,
                    confiner=confiner,
                    llm=llm,
                    cassette=cassette,
                    secrets=self.secrets,
                    instructions=confiner.instructions(),
                    replay=self.replay,
                    replay_log=self.log if self.replay is not None else None,
                )
            )
            self._status(RuntimeStatus.READY)
            await self.backend.start(
                message.text if message else None, message.image_urls if message else ()
            )
        except Exception as exc:
            await self._fail_start(exc)
            raise SessionStartError(str(exc)) from exc
        self._started.set()
        log.info(
            "conversation %s %s with agent %s (workspace %s)",
            self.conversation_id,
            "restarted from its log" if self.restarted else "started",
            self.agent_name,
            self.workspace.root,
        )

    def _agent_name(self, settings: AgentSettings) -> str:
        """The requested backend; else the one this conversation ran with; else the default."""
        if settings.agent:
            return settings.agent
        page = self.log.search(kind="status", reverse=True, limit=100)
        for event in page.items:
            if isinstance(event, StatusEvent) and event.agent:
                return event.agent
        return DEFAULT_AGENT

    async def _clone(self, settings: AgentSettings) -> None:
        """Start the workspace as a clone of ``settings.repository`` (kept on restart)."""
        spec = settings.repository
        assert spec is not None
        branch = f" ({spec.branch})" if spec.branch else ""
        self._status(RuntimeStatus.SETTING_UP_WORKSPACE, f"cloning {spec.url}{branch}")
        if await clone_repository(spec, self.workspace.root, settings.secrets):
            log.info("conversation %s: cloned %s", self.conversation_id, spec.url)

    def _confiner(self, settings: AgentSettings) -> Confiner:
        """The jail of this run's tool processes. A conversation that turned its network
        off keeps it off across restarts unless a restart says otherwise."""
        network = settings.network
        if network is None:
            page = self.log.search(kind="sandbox", reverse=True, limit=1)
            last = page.items[0] if page.items else None
            network = not (isinstance(last, SandboxEvent) and last.network_off_by == "conversation")
        return Confiner(
            self.request.confinement,
            workspace=self.workspace.root,
            directory=self.directory,
            network=network,
        )

    def _replay_source(
        self, request: CreateConversationRequest
    ) -> tuple[ReplaySource, ReplayRequest] | None:
        """The recorded run to replay, if asked and the conversation has no log yet."""
        if request.replay is None:
            return None
        events = self.directory / EVENTS_FILE
        if events.exists() and events.stat().st_size > 0:
            log.info(
                "conversation %s has a log: continuing it, not replaying", request.conversation_id
            )
            return None
        from ..share.source import parse_replay_request, source_from_request

        replay = parse_replay_request(request.replay)  # ValueError names the field
        return source_from_request(replay, self.directory), replay

    async def _fail_start(self, exc: Exception) -> None:
        log.exception("conversation %s could not start", self.conversation_id)
        self._start_error = str(exc)
        self.log.append(ErrorEvent(code=START_FAILED_CODE, message=str(exc)))
        self._status(RuntimeStatus.ERROR, str(exc))
        await self._stop_backend()
        self._final_info = self._compute_info()
        await self._drain_subscribers()
        self.log.close()
        self.closed.set()
        self._started.set()

    async def _stop_backend(self) -> None:
        if self.backend is None:
            return
        try:
            await self.backend.stop()
        except Exception:
            log.exception("stopping the agent of %s failed", self.conversation_id)

    async def wait_started(self) -> None:
        """Until ``start`` finished (a concurrent bind of the same id waits here)."""
        await self._started.wait()
        if self._start_error is not None:
            raise SessionStartError(self._start_error)

    async def stop(self) -> None:
        """Stop the agent, close its tools, close the log. Safe to call more than once."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        if self.closed.is_set():
            return
        self._status(RuntimeStatus.STOPPING)
        await self._stop_backend()
        self._status(RuntimeStatus.STOPPED)
        self._final_info = self._compute_info()
        await self._drain_subscribers()
        self.log.close()
        self.closed.set()
        log.info("conversation %s stopped", self.conversation_id)

    async def _drain_subscribers(self) -> None:
        self.closing.set()
        pending = {task for task in self._subscribers if not task.done()}
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
        if late:
            log.warning("%d event stream(s) did not drain before the log closed", len(late))
            for task in late:
                task.cancel()

    @contextlib.contextmanager
    def subscriber(self) -> Iterator[None]:
        """Mark the current task as an event stream that a stop lets finish first."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("subscriber() needs a running task")
        self._subscribers.add(task)
        try:
            yield
        finally:
            self._subscribers.discard(task)

    # --- input and state ---------------------------------------------------------------------

    async def handle_input(self, item: UserInput) -> Event:
        """Pass a user's message, confirmation or state change to the agent backend."""
        if self.closed.is_set():
            raise SessionClosed(f"conversation {self.conversation_id} is stopped")
        await self.wait_started()
        if self.backend is None:
            raise SessionBusy(f"conversation {self.conversation_id} has no agent yet")
        try:
            return await self.backend.handle_input(item)
        except AgentBusy as exc:
            raise SessionBusy(str(exc)) from exc

    def info(self) -> ConversationInfo:
        if self._final_info is not None:
            return self._final_info
        return self._compute_info()

    def _compute_info(self) -> ConversationInfo:
        backend = self.backend
        agent_state = backend.state if backend is not None else AgentState.LOADING
        return ConversationInfo(
            conversation_id=self.conversation_id,
            status=self._conversation_status().value,
            agent_state=AgentState(agent_state).value,
            runtime_status=self.runtime_status.value,
            metrics=backend.metrics if backend is not None else Metrics(),
            agent=self.agent_name,
            last_event_id=self.log.next_id - 1,
            title=self._title(),
        )

    def _conversation_status(self) -> ConversationStatus:
        if self.runtime_status is RuntimeStatus.ERROR:
            return ConversationStatus.ERROR
        if self.runtime_status in (RuntimeStatus.STOPPING, RuntimeStatus.STOPPED):
            return ConversationStatus.STOPPED
        if self.runtime_status is RuntimeStatus.READY:
            return ConversationStatus.RUNNING
        return ConversationStatus.STARTING

    def _title(self) -> str | None:
        page = self.log.search(kind="title", reverse=True, limit=1)
        for event in page.items:
            if isinstance(event, TitleEvent):
                return event.title
        return None

    def _status(
        self, status: RuntimeStatus, message: str = "", *, agent: str | None = None
    ) -> None:
        self.runtime_status = status
        self.log.append(StatusEvent(status=status.value, message=message, agent=agent))
