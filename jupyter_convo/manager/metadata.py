"""Conversation metadata as a fold over the event log.

The log is the truth; the store's row is a cache of this fold (status, agent state, tokens,
cost, title, last event). Folding the same events always gives the same fields, so the row
can be rebuilt from the log at any time (e.g. after a server restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..events.schema import (
    AgentState,
    AgentStateEvent,
    ConversationStatus,
    ErrorEvent,
    Event,
    LLMCallEvent,
    MessageEvent,
    RuntimeStatus,
    StatusEvent,
    TitleEvent,
)
from ..store.conversations import ConversationMetadata
from .title import title_from_message

RUNTIME_DIED = "RUNTIME_DIED"
TOO_MANY_CONVERSATIONS = "AGENT_ERROR$TOO_MANY_CONVERSATIONS"
# Error codes after which the agent loop is gone for good (until a restart).
FATAL_ERROR_CODES = frozenset({RUNTIME_DIED, "RUNTIME_START_FAILED"})
MAX_ERROR_CHARS = 500

_STATUS_OF_RUNTIME: dict[str, ConversationStatus] = {
    RuntimeStatus.STARTING_RUNTIME.value: ConversationStatus.STARTING,
    RuntimeStatus.BUILDING_RUNTIME.value: ConversationStatus.STARTING,
    RuntimeStatus.SETTING_UP_WORKSPACE.value: ConversationStatus.STARTING,
    RuntimeStatus.READY.value: ConversationStatus.RUNNING,
    RuntimeStatus.STOPPING.value: ConversationStatus.STOPPED,
    RuntimeStatus.STOPPED.value: ConversationStatus.STOPPED,
    RuntimeStatus.ERROR.value: ConversationStatus.ERROR,
}


def describe_error(code: str, message: str) -> str:
    text = f"{code}: {message}" if message else code
    return text[:MAX_ERROR_CHARS]


@dataclass
class MetadataFold:
    """The metadata fields one conversation's events add up to."""

    last_event_id: int = -1
    status: ConversationStatus | None = None
    agent_state: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str | None = None
    title: str | None = None
    error: str | None = None
    updated_at: datetime | None = None
    # Fields changed since the last ``take_changes``.
    _changed: set[str] = field(default_factory=set, repr=False)

    def apply(self, event: Event) -> bool:
        """Fold one logged event in (ids at or below ``last_event_id`` are ignored)."""
        if event.id <= self.last_event_id:
            return False
        self._set("last_event_id", event.id)
        self._set("updated_at", event.timestamp)
        if isinstance(event, LLMCallEvent):
            self._set("prompt_tokens", self.prompt_tokens + event.prompt_tokens)
            self._set("completion_tokens", self.completion_tokens + event.completion_tokens)
            self._set("cost", self.cost + event.cost)
            self._set("model", event.model)
        elif isinstance(event, TitleEvent):
            self._set("title", event.title)
        elif isinstance(event, MessageEvent):
            if event.source == "user" and not self.title:
                self._set("title", title_from_message(event.text))
        elif isinstance(event, StatusEvent):
            status = _STATUS_OF_RUNTIME.get(event.status)
            if status is not None:
                self._set("status", status)
            if status is ConversationStatus.RUNNING:
                self._set("error", None)
            elif status is ConversationStatus.ERROR:
                self._set("error", describe_error("RUNTIME_ERROR", event.message))
        elif isinstance(event, AgentStateEvent):
            self._apply_agent_state(event)
        elif isinstance(event, ErrorEvent):
            self._set("error", describe_error(event.code, event.message))
            if event.code in FATAL_ERROR_CODES:
                # The loop is gone: no agent runs on (logs from before the manager also
                # logged the agent state with it).
                self._set("status", ConversationStatus.ERROR)
                self._set("agent_state", AgentState.ERROR.value)
        return True

    def _apply_agent_state(self, event: AgentStateEvent) -> None:
        self._set("agent_state", event.state.value)
        if event.state is AgentState.ERROR:
            self._set("status", ConversationStatus.ERROR)
            if event.reason:
                self._set("error", event.reason[:MAX_ERROR_CHARS])
        elif event.state is AgentState.STOPPED:
            return  # the runtime's status events say whether the conversation stopped
        elif self.status in (ConversationStatus.ERROR, ConversationStatus.STARTING, None):
            # The loop runs again (e.g. a new message after an LLM error).
            self._set("status", ConversationStatus.RUNNING)
            self._set("error", None)

    def _set(self, name: str, value: Any) -> None:
        if getattr(self, name) != value:
            setattr(self, name, value)
            self._changed.add(name)

    def take_changes(self) -> dict[str, Any]:
        """The changed fields (store column names), then forget them."""
        changes = {name: getattr(self, name) for name in sorted(self._changed)}
        self._changed.clear()
        if "updated_at" in changes and changes["updated_at"] is None:
            del changes["updated_at"]
        return changes

    @classmethod
    def from_metadata(cls, meta: ConversationMetadata) -> MetadataFold:
        """A fold that continues from the stored row (events up to its last id are in)."""
        return cls(
            last_event_id=meta.last_event_id,
            status=meta.status,
            agent_state=meta.agent_state,
            prompt_tokens=meta.prompt_tokens,
            completion_tokens=meta.completion_tokens,
            cost=meta.cost,
            model=meta.model,
            title=meta.title,
            error=meta.error,
            updated_at=meta.updated_at,
        )

    def snapshot(self, *, include_title: bool = True) -> dict[str, Any]:
        """Every folded field, for a full rewrite of the row (a rebuild from the log)."""
        fields = {
            "last_event_id": self.last_event_id,
            "agent_state": self.agent_state,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "error": self.error,
        }
        names = (
            ("status", "model", "title", "updated_at")
            if include_title
            else (
                "status",
                "model",
                "updated_at",
            )
        )
        for name in names:
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        self._changed.clear()
        return fields
