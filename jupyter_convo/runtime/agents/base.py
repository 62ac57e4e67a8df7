"""The agent-backend seam: what the runtime asks of any agent it hosts.

A runtime hosts one conversation and one backend: the built-in LLM loop, or an external
agent (an ACP subprocess). The runtime builds an ``AgentContext`` (the conversation's
directory, workspace, settings, the jail for processes, the LLM client and the ``EventSink``
it owns) and drives the backend through four calls: ``start``, ``handle_input``, ``stop``
and the ``state``/``metrics`` it reads for ``ConversationInfo``. A backend records
everything through ``context.events``; it never opens the log.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...agent.metrics import Metrics
from ...events.schema import AgentState, Event

if TYPE_CHECKING:
    from ...agent.cassette import Cassette
    from ...agent.confine import Confiner
    from ...agent.llm import LLMClient
    from ...agent.settings import AgentSettings
    from ...agent.workspace import Workspace
    from ...events.inputs import UserInput
    from ...events.log import EventLog
    from ...events.redact import SecretRegistry
    from ...events.sink import EventSink


class AgentBusy(RuntimeError):
    """The backend takes no input right now (it is replaying a recorded run, say)."""


class AgentUnavailable(RuntimeError):
    """The backend cannot run here (its program is not installed...); says how to fix it."""


@dataclass
class AgentContext:
    """Everything the runtime hands a backend for one conversation."""

    conversation_id: str
    directory: Path
    workspace: Workspace
    settings: AgentSettings
    events: EventSink
    confiner: Confiner
    llm: LLMClient
    cassette: Cassette
    secrets: SecretRegistry
    instructions: str = ""
    # ``jupyter_convo.share.source`` (ReplaySource, ReplayRequest) when asked to replay,
    # and the log the replay writes its own steps to (the runtime's records, not the agent's).
    replay: tuple[Any, Any] | None = None
    replay_log: EventLog | None = None


class AgentBackend(ABC):
    """One conversation's agent. Register a subclass under the ``jupyter_convo.agents``
    entry-point group; ``name`` is what requests, magics and the CLI choose it by."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, context: AgentContext) -> None:
        self.context = context

    @property
    @abstractmethod
    def state(self) -> AgentState:
        """The agent's current state (``LOADING`` until ``start`` ran)."""

    @property
    def metrics(self) -> Metrics:
        """Tokens, cost and calls so far (zeros when the backend does not know)."""
        return Metrics()

    @abstractmethod
    async def start(self, initial_message: str | None, image_urls: Sequence[str] = ()) -> None:
        """Start (or continue, when ``context.events`` already holds a conversation) and
        return once the agent is under way; ``initial_message`` is the user's first words."""

    @abstractmethod
    async def handle_input(self, item: UserInput) -> Event:
        """A user's message, confirmation or state change; returns the event it logged."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop for good: cancel the turn in flight, end every process the backend started.
        Safe to call more than once and after a failed ``start``."""
