"""The ConversationManager contract: the server's owner of agent loops and their runtimes.

The server's route handlers talk to conversations only through this interface, so a
different manager (another sandbox kind, a cluster) drops in behind the same routes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..agent.settings import AgentSettings, LLMConfig
from ..events.inputs import UserInput
from ..events.log import EventPage
from ..events.schema import Event, event_to_json
from ..runtime.models import InitialMessage
from ..store.conversations import ConversationMetadata, StartTask

if TYPE_CHECKING:
    from ..store.conversations import ConversationStore
    from ..store.settings import SettingsStore
    from .config import ManagerConfig
    from .sandboxes.base import Sandbox


class AgentLoopInfo(BaseModel):
    """A running agent loop as the server sees it."""

    conversation_id: str
    user_id: str | None
    status: str  # ConversationStatus value
    sandbox: str  # the sandbox kind
    runtime_url: str | None = None
    runtime_id: str | None = None  # pid or container id
    started_at: datetime | None = None
    last_updated_at: datetime | None = None


class FileUpload(BaseModel):
    name: str
    content: bytes


class UploadResult(BaseModel):
    uploaded: list[str]
    skipped: list[dict[str, str]]  # {"name": ..., "reason": ...}


class ConversationNotFound(LookupError):
    """No such conversation for this user (the server answers 404)."""


class ConversationNotRunning(RuntimeError):
    """The operation needs a running runtime (the server answers 409)."""


class ConversationStartError(RuntimeError):
    """The runtime could not be started or bound; the message says why (the server
    answers 500, or 503 when it is a resource problem)."""


class StartTaskNotFound(LookupError):
    """No such start task (the server answers 404)."""


class WorkspaceRequestError(ValueError):
    """A workspace file request that cannot be served; ``status`` is the HTTP answer:
    400 (bad or escaping path), 404 (missing), 413 (too large), 415 (binary file)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ConversationManager(ABC):
    """Start, stop, reach and watch conversations' agent loops."""

    # Who runs this manager (e.g. the server's URL), recorded in the data dir's owner lock
    # so that a second server refused the data dir can name this one.
    owner_details: dict[str, Any] = {}

    def __init__(
        self,
        config: ManagerConfig,
        *,
        store: ConversationStore | None = None,
        sandbox: Sandbox | None = None,
        settings_store: SettingsStore | None = None,
    ) -> None:
        """How the server builds any manager class (``c.ConvoExtension.manager_class``):
        its settings, the store it shares with the routes, the configured sandbox and the
        users' settings (whose secrets titles hide)."""
        self.config = config

    # --- lifecycle of the manager ---------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Find runtimes that survived a server restart; start the warm pool."""

    @abstractmethod
    async def shutdown(self) -> None:
        """Close upstream connections; stop runtimes unless configured to keep them."""

    # --- stored events ----------------------------------------------------------------------

    async def search_events(self, conversation_id: str, **query: Any) -> EventPage | None:
        """``events/search`` answered by the conversation's running runtime (``query``: the
        log's search arguments); None when no runtime runs, and the caller reads the log
        file. ValueError: a filter the runtime refused."""
        return None

    async def count_events(self, conversation_id: str, **query: Any) -> int | None:
        """``events/count`` by the running runtime, as ``search_events``."""
        return None

    # --- conversations ----------------------------------------------------------------------

    @abstractmethod
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
        """Record the conversation and a start task, and start it in the background."""

    @abstractmethod
    def start_task_updates(self, task_id: str) -> AsyncGenerator[StartTask, None]:
        """Every state of a start task from now until READY or ERROR (an async generator:
        ``async for update in manager.start_task_updates(task_id)``); StartTaskNotFound."""

    @abstractmethod
    async def maybe_start_agent_loop(
        self,
        conversation_id: str,
        *,
        user_id: str | None,
        settings: AgentSettings | None = None,
        initial_message: InitialMessage | None = None,
    ) -> AgentLoopInfo:
        """Start (or restart from its log) the conversation's runtime unless it runs."""

    @abstractmethod
    async def is_agent_loop_running(self, conversation_id: str) -> bool: ...

    @abstractmethod
    async def get_running_agent_loops(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> set[str]: ...

    @abstractmethod
    async def get_agent_loop_info(
        self, user_id: str | None = None, filter_to_ids: set[str] | None = None
    ) -> list[AgentLoopInfo]: ...

    @abstractmethod
    async def send_event_to_conversation(self, conversation_id: str, data: UserInput) -> None:
        """Forward a user input to the runtime (ConversationNotRunning if it is down)."""

    @abstractmethod
    async def close_session(self, conversation_id: str) -> None:
        """Graceful stop: ask the runtime, poll its status up to 3 times, then kill."""

    @abstractmethod
    async def delete_conversation(self, conversation_id: str) -> None:
        """Stop, then remove runtime files, metadata and log."""

    @abstractmethod
    async def ensure_num_conversations_below_limit(self, user_id: str | None) -> list[str]:
        """Stop the oldest running conversations (by updated_at) over the user's limit,
        after sending each an ``error`` event AGENT_ERROR$TOO_MANY_CONVERSATIONS."""

    @abstractmethod
    def subscribe(self, conversation_id: str, after_id: int = -1) -> AsyncGenerator[Event, None]:
        """Stored events after ``after_id``, then live ones, from the runtime or the log
        (an async generator: ``async for event in manager.subscribe(cid)``; close it with
        ``aclose()`` when leaving early). Ends when the conversation is deleted or the
        manager shuts down (raising ``ConversationNotFound`` when it was deleted); stays
        open across a stop and restart of the runtime."""

    async def subscribe_frames(
        self, conversation_id: str, after_id: int = -1
    ) -> AsyncGenerator[str, None]:
        """``subscribe``, as WebSocket text frames (each event's JSON). Managers that fan
        one event out to many subscribers serialize it once."""
        events = self.subscribe(conversation_id, after_id)
        try:
            async for event in events:
                yield event_to_json(event)
        finally:
            await events.aclose()

    @abstractmethod
    async def publish(self, conversation_id: str, event: Event) -> None:
        """Deliver a server-made event (e.g. a title change) to current subscribers.

        It is not written to the log (the runtime is the log's only writer while it runs)
        and keeps the id it was given (normally -1), so it never disturbs id order."""

    # --- workspace and LLM ------------------------------------------------------------------

    @abstractmethod
    async def list_files(self, conversation_id: str, path: str | None = None) -> list[str]: ...

    @abstractmethod
    async def select_file(self, conversation_id: str, file: str) -> str: ...

    @abstractmethod
    async def upload_files(self, conversation_id: str, files: list[FileUpload]) -> UploadResult:
        """Write uploads into the workspace."""

    @abstractmethod
    async def workspace_zip(self, conversation_id: str) -> bytes: ...

    @abstractmethod
    async def request_llm_completion(
        self, conversation_id: str, llm_config: LLMConfig, messages: list[dict[str, str]]
    ) -> str:
        """A side completion with the conversation's LLM (e.g. remember-prompt)."""

    def metadata(self, conversation_id: str, user_id: str | None) -> ConversationMetadata:
        """The conversation if ``user_id`` may see it, else ConversationNotFound."""
        raise NotImplementedError
