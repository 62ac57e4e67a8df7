"""The records of the store: conversation metadata and start tasks, with their queries.

Timestamps are aware UTC datetimes (naive input is taken as UTC); ids are urlsafe so they
can name directories and URL path segments.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..events.redact import SECRET_PLACEHOLDER
from ..events.schema import ConversationStatus

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


# --- time and ids ----------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """A urlsafe id (32 hex characters) usable in paths and URLs."""
    return uuid.uuid4().hex


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken as UTC (query strings rarely carry offsets)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_micros(value: datetime) -> int:
    """Microseconds since the epoch: the stored form, exact and index-friendly."""
    return (as_utc(value) - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def fold_title(text: str | None) -> str | None:
    """The case-insensitive form of a title, matched by plain substring search."""
    return None if text is None else text.casefold()


# --- models -------------------------------------------------------------------------------


class _Timestamped(BaseModel):
    """``created_at``/``updated_at`` normalized to aware UTC datetimes."""

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)


class ConversationMetadata(_Timestamped):
    """What the server knows about a conversation without reading its event log."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id, pattern=ID_PATTERN)
    user_id: str | None = None
    title: str | None = None
    status: ConversationStatus = ConversationStatus.STARTING
    agent_state: str | None = None  # an AgentState value once the agent reported one
    trigger: str = Field(default="gui", min_length=1, max_length=32)  # gui|notebook|cli|api|replay
    repository: str | None = None
    model: str | None = None
    sandbox: str = Field(default="process", min_length=1, max_length=32)
    workspace: str | None = None
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost: float = Field(default=0.0, ge=0)
    last_event_id: int = Field(default=-1, ge=-1)
    error: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ConversationQuery(BaseModel):
    """Filters of ``conversations/search`` and ``conversations/count``.

    ``user_id=None`` means every user's conversations (admin and internal use); the server
    always passes the requesting user. Datetime bounds are ``gte`` inclusive, ``lt``
    exclusive; naive datetimes are UTC.
    """

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    title__contains: str | None = None
    created_at__gte: datetime | None = None
    created_at__lt: datetime | None = None
    updated_at__gte: datetime | None = None
    updated_at__lt: datetime | None = None
    status: ConversationStatus | None = None
    trigger: str | None = None
    repository: str | None = None


class ConversationPage(BaseModel):
    items: list[ConversationMetadata]
    next_page_id: str | None = None


class StartTaskStatus(str, Enum):
    WORKING = "WORKING"
    WAITING_FOR_SANDBOX = "WAITING_FOR_SANDBOX"
    PREPARING_WORKSPACE = "PREPARING_WORKSPACE"
    STARTING_CONVERSATION = "STARTING_CONVERSATION"
    READY = "READY"
    ERROR = "ERROR"


# A key naming a credential: its value never reaches the database.
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:api_?key|secrets?|token|password|passwd|credentials?|authorization)$",
    re.IGNORECASE,
)


def sanitize_request(value: Any) -> Any:
    """A copy of a start request with every credential-named value hidden.

    Keys such as ``api_key``, ``session_api_key``, ``github_token`` or ``secrets`` keep
    their place (so the request still reads as sent) but hold ``<secret-hidden>``.
    """
    if isinstance(value, Mapping):
        clean: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key):
                clean[key] = _hide(item)
            else:
                clean[str(key)] = sanitize_request(item)
        return clean
    if isinstance(value, (list, tuple)):
        return [sanitize_request(item) for item in value]
    return value


def _hide(value: Any) -> Any:
    """Hide credential strings; numbers and flags (``input_cost_per_token``) are no secret."""
    if isinstance(value, Mapping):
        return {str(key): _hide(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hide(item) for item in value]
    if isinstance(value, (bool, int, float)) or value is None or value == "":
        return value
    return SECRET_PLACEHOLDER


class StartTask(_Timestamped):
    """Progress of starting one conversation, polled or streamed by clients."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id, pattern=ID_PATTERN)
    conversation_id: str | None = None
    user_id: str | None = None
    status: StartTaskStatus = StartTaskStatus.WORKING
    # Why it failed (ERROR), or what the sandbox waits for (WAITING_FOR_SANDBOX).
    detail: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)

    @field_validator("request")
    @classmethod
    def _sanitized(cls, value: dict[str, Any]) -> dict[str, Any]:
        clean: dict[str, Any] = sanitize_request(value)
        return clean


class StartTaskQuery(BaseModel):
    """Filters of ``start-tasks/search`` and ``start-tasks/count``."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = None
    conversation_id: str | None = None
    status: StartTaskStatus | None = None
    created_at__gte: datetime | None = None


class StartTaskPage(BaseModel):
    items: list[StartTask]
    next_page_id: str | None = None
