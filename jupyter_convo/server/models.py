"""Request schemas of the server API: every body and query string is validated here.

A bad field is answered with 400 naming the field (see ``handlers.base``), so the models
carry the limits the routes promise (page sizes, title length, id shapes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ..agent.settings import CondensationSettings, ConfirmationPolicy, SecuritySettings
from ..events.log import MAX_PAGE_LIMIT as MAX_EVENT_PAGE_LIMIT
from ..events.schema import ConversationStatus
from ..store.conversations import MAX_PAGE_LIMIT, StartTaskStatus
from ..store.settings import check_secret_length
from ..store.titles import MAX_TITLE_CHARS

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
TRIGGER_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# A sandbox kind's name (an entry point of jupyter_convo.sandboxes; GET capabilities).
SANDBOX_KIND_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
MAX_BATCH_IDS = 100
MAX_TITLE_LENGTH = MAX_TITLE_CHARS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- query strings -----------------------------------------------------------------------


class ConversationFilters(_Strict):
    """Filters shared by ``conversations/search`` and ``conversations/count``."""

    title__contains: str | None = None
    created_at__gte: datetime | None = None
    created_at__lt: datetime | None = None
    updated_at__gte: datetime | None = None
    updated_at__lt: datetime | None = None
    status: ConversationStatus | None = None
    trigger: str | None = None
    repository: str | None = None


class ConversationSearchParams(ConversationFilters):
    page_id: str | None = None
    limit: int = Field(default=MAX_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)


class IdsParams(_Strict):
    """``?ids=a&ids=b``: a batch get, answered in the same order (null where not found)."""

    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_IDS)


class StartTaskFilters(_Strict):
    conversation_id: str | None = None
    status: StartTaskStatus | None = None
    created_at__gte: datetime | None = None


class StartTaskSearchParams(StartTaskFilters):
    page_id: str | None = None
    limit: int = Field(default=MAX_PAGE_LIMIT, ge=1, le=MAX_PAGE_LIMIT)


class EventFilters(_Strict):
    """Filters of ``events/search`` and ``events/count`` (ids are exclusive bounds)."""

    after_id: int | None = Field(default=None, ge=-1)
    before_id: int | None = Field(default=None, ge=0)
    kind: list[str] | None = None
    source: Literal["agent", "user", "environment"] | None = None
    text: str | None = None


class EventSearchParams(EventFilters):
    reverse: bool = False
    # Events are small and clients read whole logs, so pages may be larger than
    # conversation pages (the log's own maximum).
    limit: int = Field(default=100, ge=1, le=MAX_EVENT_PAGE_LIMIT)
    page_id: str | None = None


class WebSocketParams(_Strict):
    after_id: int = Field(default=-1, ge=-1)


class FilesParams(_Strict):
    path: str | None = None


class FileContentParams(_Strict):
    path: str = Field(min_length=1)


class RememberPromptParams(_Strict):
    event_id: int = Field(ge=0)


class ExportParams(_Strict):
    """``conversations/{id}/export``: also pack the workspace's files (size-capped)."""

    workspace: bool = False


# --- bodies ---------------------------------------------------------------------------------


class ConversationOptions(_Strict):
    """Per-conversation settings: they win over the user's settings and server config."""

    model: str | None = Field(default=None, min_length=1)
    base_url: str | None = Field(default=None, min_length=1)
    api_key: SecretStr | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    max_budget_per_task: float | None = Field(default=None, gt=0)
    # true/false are "risky"/"never"; "always" asks before every action but think/finish.
    confirmation_mode: bool | ConfirmationPolicy | None = None
    # The security analyzer: "rules" (default), "llm" or "none", and rules of your own.
    security: SecuritySettings | None = None
    # The model's context window in tokens (known models have one) and when to condense.
    context_window: int | None = Field(default=None, ge=1_000)
    condensation: CondensationSettings | None = None
    kernel_connection_file: str | None = None
    extra_instructions: str | None = None
    # False cuts the network of the agent's tools (kept across restarts); the server's
    # c.Confinement.network = False cuts it for everyone.
    network: bool | None = None

    @field_validator("api_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret_length(
                value, "api_key", hint="; for a local server that needs no key, leave it unset"
            )
        return value


class ReplayOptions(_Strict):
    """``replay`` of ``POST conversations``: replay one of the user's conversations (an
    imported export, say) into the new one, step by step, then go on live."""

    source_conversation_id: str = Field(pattern=ID_PATTERN)
    mode: Literal["actions", "cassette"] = "actions"


class CreateConversationRequest(ConversationOptions):
    """``POST conversations`` and ``POST conversations/stream-start``."""

    initial_message: str | None = Field(default=None, min_length=1)
    image_urls: list[str] = Field(default_factory=list)
    title: str | None = Field(default=None, min_length=1, max_length=MAX_TITLE_LENGTH)
    workspace: str | None = Field(default=None, min_length=1)
    sandbox: str | None = Field(default=None, pattern=SANDBOX_KIND_PATTERN)
    # The agent backend (``jupyter convo agents`` lists them); None: the server's default.
    agent: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    trigger: str = Field(default="gui", pattern=TRIGGER_PATTERN)
    replay: ReplayOptions | None = None
    # Start the workspace as a clone: a git URL, or a path inside the Jupyter root. The
    # token comes from your secrets (GITHUB_TOKEN, GITLAB_TOKEN, BITBUCKET_TOKEN, else
    # GIT_TOKEN; or the one named in repository_token_secret).
    repository: str | None = Field(default=None, min_length=1, max_length=2_000)
    branch: str | None = Field(default=None, min_length=1, max_length=250)
    repository_token_secret: str | None = Field(default=None, min_length=1, max_length=128)


class StartConversationRequest(ConversationOptions):
    """``POST conversations/{id}/start``: restart from the log, optionally with a message."""

    initial_message: str | None = Field(default=None, min_length=1)
    image_urls: list[str] = Field(default_factory=list)


class UpdateConversationRequest(_Strict):
    title: str = Field(min_length=1, max_length=MAX_TITLE_LENGTH)


class SendMessageRequest(_Strict):
    text: str = Field(min_length=1)
    image_urls: list[str] = Field(default_factory=list)


class ExpConfigRequest(_Strict):
    """An experiment configuration attached once to a conversation."""

    config: dict[str, Any] = Field(default_factory=dict)
