"""The fold from a conversation's events to its state: written once, used everywhere.

The server's metadata row (``manager/metadata.py``) and the kernel's ``Conversation``
(``kernel/state.py``) both fold with ``ConversationFold``; the side panel's TypeScript fold
(``labextension/src/models/state.ts``) is tested against the same fixtures
(``tests/fixtures/fold/*.json``), so the three cannot drift apart.

Two parts, as the panel needs them: the *metadata* fields (status, agent state, tokens,
cost, model, title, error, updated_at) take each logged event once, in id order, past
``last_event_id`` (so a fold can continue from a stored row); the *tracked* fields (the
action waiting for confirmation, the agent's last words, the last sandbox event, the
highest id seen) follow every logged event, also older ones a view loads after the row.
Frames that are not logged (id -1) only ever carry a title.

Events come as pydantic models (the server) or wire dicts (the kernel, the fixtures);
``updated_at`` keeps the timestamp in the form it came in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .schema import ConversationStatus, EventBase
from .title import title_from_message

# Error codes after which the agent loop is gone until a restart.
FATAL_ERROR_CODES = frozenset({"RUNTIME_DIED", "RUNTIME_START_FAILED"})
MAX_ERROR_CHARS = 500

# Runtime statuses (``status`` events) as conversation statuses.
STATUS_OF_RUNTIME: dict[str, ConversationStatus] = {
    "STARTING_RUNTIME": ConversationStatus.STARTING,
    "BUILDING_RUNTIME": ConversationStatus.STARTING,
    "SETTING_UP_WORKSPACE": ConversationStatus.STARTING,
    "READY": ConversationStatus.RUNNING,
    "STOPPING": ConversationStatus.STOPPED,
    "STOPPED": ConversationStatus.STOPPED,
    "ERROR": ConversationStatus.ERROR,
}

# The fields ``take_changes`` reports: the columns of the server's metadata row.
METADATA_FIELDS = frozenset(
    {
        "last_event_id",
        "status",
        "agent_state",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "model",
        "title",
        "error",
        "updated_at",
    }
)

EventLike = EventBase | Mapping[str, Any]


def describe_error(code: str, message: str) -> str:
    text = f"{code}: {message}" if message else code
    return text[:MAX_ERROR_CHARS]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


class _Fields:
    """Read an event's fields the same way whether it is a model or a wire dict."""

    __slots__ = ("event",)

    def __init__(self, event: EventLike) -> None:
        self.event = event

    def get(self, name: str, default: Any = None) -> Any:
        if isinstance(self.event, Mapping):
            value = self.event.get(name, default)
        else:
            value = getattr(self.event, name, default)
        return _plain(value)


@dataclass
class ConversationFold:
    """What one conversation's events add up to (see the module docstring)."""

    # metadata fields
    last_event_id: int = -1
    status: ConversationStatus | None = None
    agent_state: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    model: str | None = None
    title: str | None = None
    error: str | None = None
    updated_at: Any = None
    llm_calls: int = 0
    latency: float = 0.0
    agent_reason: str = ""
    # tracked fields
    last_seen_id: int = -1
    awaiting: dict[str, Any] | None = None
    last_message: str | None = None
    # The last ``sandbox`` event: how the agent's tools are isolated (the badge).
    sandbox: dict[str, Any] | None = None
    _changed: set[str] = field(default_factory=set, repr=False)

    def apply(self, event: EventLike) -> bool:
        """Fold one event in; whether it changed the metadata fields' fold."""
        e = _Fields(event)
        event_id = int(e.get("id", -1))
        kind = e.get("kind")
        if event_id < 0:
            if kind == "title" and e.get("title"):
                self._set("title", e.get("title"))
            return False
        folded = event_id > self.last_event_id
        if folded:
            self._fold(e, event_id, kind)
        self._track(event, e, kind)
        self.last_seen_id = max(self.last_seen_id, event_id)
        return folded

    def _fold(self, e: _Fields, event_id: int, kind: Any) -> None:
        self._set("last_event_id", event_id)
        self._set("updated_at", e.get("timestamp") or self.updated_at)
        if kind == "llm_call":
            self._set("prompt_tokens", self.prompt_tokens + int(e.get("prompt_tokens") or 0))
            self._set(
                "completion_tokens", self.completion_tokens + int(e.get("completion_tokens") or 0)
            )
            self._set("cost", self.cost + float(e.get("cost") or 0.0))
            self._set("model", e.get("model") or self.model)
            self.llm_calls += 1
            self.latency += float(e.get("latency") or 0.0)
        elif kind == "condensation":  # the summary's own LLM call (agent/condense.py)
            self._set("prompt_tokens", self.prompt_tokens + int(e.get("prompt_tokens") or 0))
            self._set(
                "completion_tokens", self.completion_tokens + int(e.get("completion_tokens") or 0)
            )
            self._set("cost", self.cost + float(e.get("cost") or 0.0))
            self.llm_calls += 1
        elif kind == "title":
            self._set("title", e.get("title") or self.title)
        elif kind == "message":
            if e.get("source") == "user" and not self.title:
                self._set("title", title_from_message(str(e.get("text") or "")))
        elif kind == "status":
            self._fold_status(str(e.get("status")), str(e.get("message") or ""))
        elif kind == "agent_state":
            self._fold_agent_state(str(e.get("state")), str(e.get("reason") or ""))
        elif kind == "error":
            code = str(e.get("code") or "")
            self._set("error", describe_error(code, str(e.get("message") or "")))
            if code in FATAL_ERROR_CODES:
                # The loop is gone: no agent runs on until a restart.
                self._set("status", ConversationStatus.ERROR)
                self._set("agent_state", "error")

    def _fold_status(self, runtime_status: str, message: str) -> None:
        status = STATUS_OF_RUNTIME.get(runtime_status)
        if status is not None:
            self._set("status", status)
        if status is ConversationStatus.RUNNING:
            self._set("error", None)
        elif status is ConversationStatus.ERROR:
            self._set("error", describe_error("RUNTIME_ERROR", message))

    def _fold_agent_state(self, state: str, reason: str) -> None:
        self._set("agent_state", state)
        self.agent_reason = reason
        if state == "error":
            self._set("status", ConversationStatus.ERROR)
            if reason:
                self._set("error", reason[:MAX_ERROR_CHARS])
        elif state == "stopped":
            return  # the runtime's status events say whether the conversation stopped
        elif self.status in (ConversationStatus.ERROR, ConversationStatus.STARTING, None):
            # The loop runs again (e.g. a new message after an LLM error).
            self._set("status", ConversationStatus.RUNNING)
            self._set("error", None)

    def _track(self, event: EventLike, e: _Fields, kind: Any) -> None:
        """The action waiting for confirmation, the agent's last words, the sandbox."""
        if kind == "sandbox" and (
            self.sandbox is None or self.sandbox.get("id", -1) <= e.get("id")
        ):
            self.sandbox = _as_dict(event)
        if e.get("confirmation") == "awaiting":
            self.awaiting = _as_dict(event)
        elif kind == "confirmation":
            if self.awaiting is not None and self.awaiting.get("id") == e.get("cause"):
                self.awaiting = None
        elif kind == "agent_state" and e.get("state") != "awaiting_user_confirmation":
            self.awaiting = None
        if kind == "message" and e.get("source") != "user":
            self.last_message = str(e.get("text") or "")
        elif kind == "finish" and e.get("message"):
            self.last_message = str(e.get("message"))

    def _set(self, name: str, value: Any) -> None:
        if getattr(self, name) != value:
            setattr(self, name, value)
            if name in METADATA_FIELDS:
                self._changed.add(name)

    def take_changes(self) -> dict[str, Any]:
        """The metadata fields changed since the last call (store column names)."""
        changes = {name: getattr(self, name) for name in sorted(self._changed)}
        self._changed.clear()
        if "updated_at" in changes and changes["updated_at"] is None:
            del changes["updated_at"]
        return changes

    def summary(self) -> dict[str, Any]:
        """The folded state as plain JSON values (what the shared fixtures compare)."""
        return {
            "title": self.title,
            "status": _plain(self.status),
            "agent_state": self.agent_state,
            "error": self.error,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "llm_calls": self.llm_calls,
            "last_event_id": self.last_event_id,
            "last_seen_id": self.last_seen_id,
            "updated_at": _plain(self.updated_at),
            "awaiting_id": None if self.awaiting is None else self.awaiting.get("id"),
            "last_message": self.last_message,
            "sandbox_id": None if self.sandbox is None else self.sandbox.get("id"),
        }


def _as_dict(event: EventLike) -> dict[str, Any]:
    if isinstance(event, Mapping):
        return dict(event)
    from .schema import event_to_dict

    return event_to_dict(event)
