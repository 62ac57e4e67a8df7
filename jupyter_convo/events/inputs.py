"""What a user can send into a running conversation (REST body or WebSocket frame)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    MessageInput | ConfirmationInput | AgentStateInput, Field(discriminator="kind")
]
