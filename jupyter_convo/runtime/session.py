"""The conversation a runtime hosts: its directory, log, secrets, workspace and agent loop.

A runtime hosts exactly one conversation. Binding creates (or reopens) the conversation
directory; an existing ``events.jsonl`` means a restart and the controller continues from it.
A request with ``replay`` (and no log yet) first replays a recorded run into the new log
(``jupyter_convo.share.replay``), then hands over to a live agent.
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
from ..agent.controller import AgentController
from ..agent.llm import LLMClient
from ..agent.metrics import Metrics
from ..agent.repository import clone_repository
from ..agent.tools import build_tools
from ..agent.tools.base import Tool
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
        self._replay_task: asyncio.Task[None] | None = None
        self.log = EventLog(self.directory / EVENTS_FILE, secrets=secrets)
        self.restarted = len(self.log) > 0
        self.runtime_status = RuntimeStatus.STARTING_RUNTIME
        self.controller: AgentController | None = None
        self._tools: list[Tool] = []
        self._instructions = ""
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
        """Build the tools, LLM client and controller, then start the loop (in the background:
        the controller returns once its loop is under way)."""
        message = self.request.initial_message
        try:
            self._status(RuntimeStatus.STARTING_RUNTIME, "restarting" if self.restarted else "")
            settings = self.request.settings
            if settings.repository is not None:
                await self._clone(settings)
            cassette = Cassette(self.directory / CASSETTE_FILE, secrets=self.secrets)
            llm = LLMClient(settings.llm, cassette=cassette, secrets=self.secrets)
            confiner = self._confiner(settings)
            self.log.append(confiner.event())
            self._tools = build_tools(self.workspace, settings, confiner)
            self._instructions = confiner.instructions()
            if self.replay is not None:
                self._status(RuntimeStatus.READY)
                self._replay_task = asyncio.create_task(
                    self._run_replay(*self.replay, settings, llm, cassette),
                    name=f"replay-{self.conversation_id}",
                )
                self._started.set()
                return
            self.controller = AgentController(
                log=self.log,
                llm=llm,
                tools=self._tools,
                settings=settings,
                workspace=self.workspace,
                instructions=self._instructions,
            )
            self._status(RuntimeStatus.READY)
            await self.controller.start(
                message.text if message else None, message.image_urls if message else ()
            )
        except Exception as exc:
            await self._fail_start(exc)
            raise SessionStartError(str(exc)) from exc
        self._started.set()
        log.info(
            "conversation %s %s (workspace %s)",
            self.conversation_id,
            "restarted from its log" if self.restarted else "started",
            self.workspace.root,
        )

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

    async def _run_replay(
        self,
        source: ReplaySource,
        replay: ReplayRequest,
        settings: AgentSettings,
        llm: LLMClient,
        cassette: Cassette,
    ) -> None:
        """Replay, then let the live agent take over (also when the replay failed)."""
        from ..share.replay import replay_then_live

        self.controller = await replay_then_live(
            source,
            replay.mode,
            log=self.log,
            tools=self._tools,
            settings=settings,
            workspace=self.workspace,
            llm=llm,
            cassette=cassette,
            secrets=self.secrets,
        )

    @property
    def replaying(self) -> bool:
        return self._replay_task is not None and not self._replay_task.done()

    async def _fail_start(self, exc: Exception) -> None:
        log.exception("conversation %s could not start", self.conversation_id)
        self._start_error = str(exc)
        self.log.append(ErrorEvent(code=START_FAILED_CODE, message=str(exc)))
        self._status(RuntimeStatus.ERROR, str(exc))
        await self._close_tools()
        self._final_info = self._compute_info()
        await self._drain_subscribers()
        self.log.close()
        self.closed.set()
        self._started.set()

    async def _close_tools(self) -> None:
        for tool in self._tools:
            try:
                await tool.close()
            except Exception:
                log.exception("closing tool %s failed", tool.name)

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
        if self._replay_task is not None and not self._replay_task.done():
            self._replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._replay_task
        if self.controller is not None:
            try:
                await self.controller.close()
            except Exception:
                log.exception("closing the agent of %s failed", self.conversation_id)
        else:
            await self._close_tools()
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
        """Pass a user's message, confirmation or state change to the controller."""
        if self.closed.is_set():
            raise SessionClosed(f"conversation {self.conversation_id} is stopped")
        await self.wait_started()
        if self.replaying or self.controller is None:
            raise SessionBusy(
                f"conversation {self.conversation_id} is replaying a recorded run; "
                "send input once its replay_summary event arrived"
            )
        return await self.controller.handle_input(item)

    def info(self) -> ConversationInfo:
        if self._final_info is not None:
            return self._final_info
        return self._compute_info()

    def _compute_info(self) -> ConversationInfo:
        controller = self.controller
        agent_state = controller.state if controller is not None else AgentState.LOADING
        return ConversationInfo(
            conversation_id=self.conversation_id,
            status=self._conversation_status().value,
            agent_state=AgentState(agent_state).value,
            runtime_status=self.runtime_status.value,
            metrics=controller.metrics.model_copy() if controller is not None else Metrics(),
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

    def _status(self, status: RuntimeStatus, message: str = "") -> None:
        self.runtime_status = status
        self.log.append(StatusEvent(status=status.value, message=message))
