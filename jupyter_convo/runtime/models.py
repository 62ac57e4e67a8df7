"""Wire models of the runtime API, shared by the runtime and the server that drives it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..agent.confine import ConfinementSpec
from ..agent.metrics import Metrics
from ..agent.settings import AgentSettings
from ..events.inputs import AgentStateInput, ConfirmationInput, MessageInput, UserInput

__all__ = [
    "AgentStateInput",
    "ConfirmationInput",
    "ConversationInfo",
    "CreateConversationRequest",
    "InitialMessage",
    "MessageInput",
    "Metrics",
    "UserInput",
]


class InitialMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    image_urls: list[str] = Field(default_factory=list)


class CreateConversationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    settings: AgentSettings = Field(default_factory=AgentSettings)
    initial_message: InitialMessage | None = None
    workspace: str | None = None
    replay: dict[str, Any] | None = None
    session_api_key: str | None = None
    # How the agent's tool processes are isolated (the sandbox's policy); None: unconfined.
    confinement: ConfinementSpec | None = None


class ConversationInfo(BaseModel):
    conversation_id: str
    status: str
    agent_state: str
    runtime_status: str
    metrics: Metrics = Field(default_factory=Metrics)
    last_event_id: int = -1
    title: str | None = None
    agent: str | None = None  # the agent backend it runs (None before it started)
