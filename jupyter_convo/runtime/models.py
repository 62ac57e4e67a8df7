"""Wire models of the runtime API, shared by the runtime and the server that drives it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ..agent.settings import AgentSettings


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


class MessageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["message"] = "message"
    text: str = Field(min_length=1)
    image_urls: list[str] = Field(default_factory=list)


class ConfirmationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["confirmation"] = "confirmation"
    action_id: int = Field(ge=0)
    confirmed: bool
    reason: str = ""


class AgentStateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["agent_state"] = "agent_state"
    state: Literal["paused", "running", "stopped"]


UserInput = Annotated[
    Union[MessageInput, ConfirmationInput, AgentStateInput], Field(discriminator="kind")
]


class Metrics(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    iterations: int = 0
    latency: float = 0.0


class ConversationInfo(BaseModel):
    conversation_id: str
    status: str
    agent_state: str
    runtime_status: str
    metrics: Metrics = Field(default_factory=Metrics)
    last_event_id: int = -1
    title: str | None = None
