"""The event schema: one discriminated union on ``kind`` that every layer speaks.

Events are immutable records. Actions come from the agent or the user, observations from the
environment and answer an action through ``cause``; state events report changes. The JSON
form is the storage form: ``event_to_json(event_from_json(line)) == line`` for every line we
write.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer, field_validator

Source = Literal["agent", "user", "environment"]
SecurityRisk = Literal["unknown", "low", "medium", "high"]
Confirmation = Literal["none", "awaiting", "confirmed", "rejected"]
MimeBundle = dict[str, Any]


class AgentState(str, Enum):
    """Where the agent loop is; the controller only moves along allowed edges."""

    LOADING = "loading"
    RUNNING = "running"
    AWAITING_USER_INPUT = "awaiting_user_input"
    AWAITING_USER_CONFIRMATION = "awaiting_user_confirmation"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"


class ConversationStatus(str, Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"
    ARCHIVED = "ARCHIVED"


class RuntimeStatus(str, Enum):
    """Progress of a runtime, reported in ``status`` events."""

    STARTING_RUNTIME = "STARTING_RUNTIME"
    BUILDING_RUNTIME = "BUILDING_RUNTIME"
    SETTING_UP_WORKSPACE = "SETTING_UP_WORKSPACE"
    READY = "READY"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    ERROR = "ERROR"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class EventBase(BaseModel):
    """Fields common to every event. ``id`` is -1 until the log assigns one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int = -1
    timestamp: datetime = Field(default_factory=utcnow)
    source: Source
    kind: str
    cause: int | None = None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @field_serializer("timestamp")
    def _iso(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ActionBase(EventBase):
    """An action the agent (or the user) asks the environment to carry out."""

    # The higher of what the LLM claimed (``llm_risk``) and the security analyzer's
    # verdict, whose reason is ``risk_reason`` (empty when the LLM's risk stood).
    security_risk: SecurityRisk = "unknown"
    llm_risk: SecurityRisk | None = None
    risk_reason: str = ""
    confirmation: Confirmation = "none"
    tool_call_id: str | None = None
    thought: str = ""


class ObservationBase(EventBase):
    source: Source = "environment"
    tool_call_id: str | None = None


# --- conversation -----------------------------------------------------------------------


class MessageEvent(EventBase):
    kind: Literal["message"] = "message"
    text: str
    image_urls: list[str] = Field(default_factory=list)


class ThinkEvent(ActionBase):
    kind: Literal["think"] = "think"
    source: Source = "agent"
    security_risk: SecurityRisk = "low"


class FinishEvent(ActionBase):
    kind: Literal["finish"] = "finish"
    source: Source = "agent"
    security_risk: SecurityRisk = "low"
    message: str = ""


# --- tools ------------------------------------------------------------------------------


class CommandEvent(ActionBase):
    kind: Literal["command"] = "command"
    source: Source = "agent"
    command: str
    timeout: float | None = None


class CommandOutputEvent(ObservationBase):
    kind: Literal["command_output"] = "command_output"
    command: str = ""
    exit_code: int | None = None
    output: str = ""
    truncated: bool = False
    timed_out: bool = False
    cwd: str = ""


class PythonEvent(ActionBase):
    kind: Literal["python"] = "python"
    source: Source = "agent"
    code: str
    timeout: float | None = None


class PythonError(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ename: str
    evalue: str
    traceback: list[str] = Field(default_factory=list)


class PythonOutputEvent(ObservationBase):
    kind: Literal["python_output"] = "python_output"
    stdout: str = ""
    stderr: str = ""
    result: MimeBundle | None = None
    display_data: list[MimeBundle] = Field(default_factory=list)
    error: PythonError | None = None
    execution_count: int | None = None
    truncated: bool = False
    timed_out: bool = False


class FileReadEvent(ActionBase):
    kind: Literal["file_read"] = "file_read"
    source: Source = "agent"
    security_risk: SecurityRisk = "low"
    path: str
    view_range: list[int] | None = None


class FileContentEvent(ObservationBase):
    kind: Literal["file_content"] = "file_content"
    path: str = ""
    content: str = ""
    error: str | None = None
    truncated: bool = False


FileEditCommand = Literal["create", "str_replace", "insert", "undo"]


class FileEditEvent(ActionBase):
    kind: Literal["file_edit"] = "file_edit"
    source: Source = "agent"
    command: FileEditCommand
    path: str
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None


class FileEditResultEvent(ObservationBase):
    kind: Literal["file_edit_result"] = "file_edit_result"
    command: FileEditCommand | None = None
    path: str = ""
    diff: str = ""
    error: str | None = None


# --- user answers and state -------------------------------------------------------------


# --- external agents (ACP): their tools, plans -------------------------------------------


class ToolLocation(BaseModel):
    """A file (and line) a tool call works on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    line: int | None = None


class PermissionChoice(BaseModel):
    """One answer an external agent offers to a permission request (ACP option kinds:
    allow_once, allow_always, reject_once, reject_always)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    option_id: str
    name: str
    kind: str


class ToolCallEvent(ActionBase):
    """A tool call of an external agent, as it described it: its kind (read, edit, delete,
    move, search, execute, think, fetch, other), title, files and input. With
    ``confirmation == "awaiting"`` it is a permission request offering ``options``."""

    kind: Literal["tool_call"] = "tool_call"
    source: Source = "agent"
    tool_kind: str = "other"
    title: str = ""
    locations: list[ToolLocation] = Field(default_factory=list)
    arguments: str = ""  # the agent's raw input, as JSON text
    options: list[PermissionChoice] = Field(default_factory=list)


class ToolResultEvent(ObservationBase):
    """How an external agent's tool call ended: its text and terminal output, its diffs."""

    kind: Literal["tool_result"] = "tool_result"
    status: str = "completed"  # completed | failed
    title: str = ""
    output: str = ""
    diff: str = ""  # unified diff of the files it changed


class PlanStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    priority: str = "medium"  # high | medium | low
    status: str = "pending"  # pending | in_progress | completed


class PlanEvent(EventBase):
    """An external agent's plan: the whole list each time it changes."""

    kind: Literal["plan"] = "plan"
    source: Source = "agent"
    entries: list[PlanStep] = Field(default_factory=list)


class ConfirmationEvent(EventBase):
    """The user's answer to an action that waited for confirmation (``cause``)."""

    kind: Literal["confirmation"] = "confirmation"
    source: Source = "user"
    confirmed: bool
    reason: str = ""


class AgentStateEvent(EventBase):
    kind: Literal["agent_state"] = "agent_state"
    source: Source = "environment"
    state: AgentState
    reason: str = ""


class StatusEvent(EventBase):
    kind: Literal["status"] = "status"
    source: Source = "environment"
    status: str
    message: str = ""
    # The agent backend a (re)start runs (``runtime.agents``); set on STARTING_RUNTIME.
    agent: str | None = None


class SandboxMount(BaseModel):
    """One path as the agent's processes see it: ``ro``/``rw`` (``source`` when it comes
    from elsewhere, like the private /tmp), ``hidden`` (masked: empty) or ``link``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    mode: Literal["ro", "rw", "hidden", "link"]
    source: str | None = None


class SandboxEvent(EventBase):
    """How this run isolates the agent's tool processes (logged as a runtime starts a
    conversation): ``mechanism`` bubblewrap | container | none (then ``confined`` is false
    and ``message`` is the warning), the network, the private HOME and the mounts."""

    kind: Literal["sandbox"] = "sandbox"
    source: Source = "environment"
    mechanism: str
    confined: bool
    network: bool = True
    network_off_by: Literal["server", "conversation"] | None = None
    home: str | None = None
    mounts: list[SandboxMount] = Field(default_factory=list)
    message: str = ""


class ErrorEvent(EventBase):
    kind: Literal["error"] = "error"
    source: Source = "environment"
    code: str
    message: str = ""
    # Set when the error answers an LLM tool call (bad arguments, unknown tool, a tool that
    # failed): the history then shows it to the LLM as that call's result.
    tool_call_id: str | None = None
    tool_name: str | None = None
    tool_arguments: str | None = None


class TitleEvent(EventBase):
    """A conversation's title changed (generated, or renamed by its owner)."""

    kind: Literal["title"] = "title"
    source: Source = "user"
    title: str


class LLMCallEvent(EventBase):
    kind: Literal["llm_call"] = "llm_call"
    source: Source = "agent"
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    response_id: str | None = None


class CondensationEvent(EventBase):
    """The agent condensed its history: from now on the LLM sees events ``start_id`` to
    ``end_id`` as ``summary`` (the log itself keeps them). Only the latest one counts;
    its range starts where the previous one's did, so it covers it.

    ``tokens_before``/``tokens_after`` estimate the LLM request without and with it;
    the summary's own LLM call is counted in ``prompt_tokens``, ``completion_tokens``
    and ``cost``."""

    kind: Literal["condensation"] = "condensation"
    source: Source = "agent"
    start_id: int = Field(ge=0)
    end_id: int = Field(ge=0)
    summary: str
    turns: int = Field(default=0, ge=0)  # assistant messages the summary stands for
    reason: Literal["context_window", "context_error"] = "context_window"
    tokens_before: int = Field(default=0, ge=0)
    tokens_after: int = Field(default=0, ge=0)
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


# --- replay -----------------------------------------------------------------------------

ReplayVerdict = Literal["reproduced", "diverged"]
ReplayMode = Literal["actions", "cassette"]


class ReplayStepEvent(EventBase):
    """How one re-executed action (``cause``) compared with the recorded run's step.

    ``recorded_event_id`` is the recorded action; ``diff`` is a unified diff of the two
    normalised observations (empty when reproduced).
    """

    kind: Literal["replay_step"] = "replay_step"
    source: Source = "environment"
    step: int = Field(ge=1)
    recorded_event_id: int
    recorded_observation_id: int | None = None
    observation_id: int | None = None
    verdict: ReplayVerdict
    diff: str = ""


class ReplaySummaryEvent(EventBase):
    """The end of a replay: how many steps reproduced, and which diverged."""

    kind: Literal["replay_summary"] = "replay_summary"
    source: Source = "environment"
    mode: ReplayMode
    source_conversation_id: str | None = None
    steps: int = 0
    reproduced: int = 0
    diverged: int = 0
    skipped: int = 0
    diverged_steps: list[int] = Field(default_factory=list)
    message: str = ""


Event = Annotated[
    (
        MessageEvent
        | ThinkEvent
        | FinishEvent
        | CommandEvent
        | CommandOutputEvent
        | PythonEvent
        | PythonOutputEvent
        | FileReadEvent
        | FileContentEvent
        | FileEditEvent
        | FileEditResultEvent
        | ToolCallEvent
        | ToolResultEvent
        | PlanEvent
        | ConfirmationEvent
        | AgentStateEvent
        | StatusEvent
        | SandboxEvent
        | ErrorEvent
        | TitleEvent
        | LLMCallEvent
        | CondensationEvent
        | ReplayStepEvent
        | ReplaySummaryEvent
    ),
    Field(discriminator="kind"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_KINDS: tuple[str, ...] = (
    "message",
    "think",
    "finish",
    "command",
    "command_output",
    "python",
    "python_output",
    "file_read",
    "file_content",
    "file_edit",
    "file_edit_result",
    "tool_call",
    "tool_result",
    "plan",
    "confirmation",
    "agent_state",
    "status",
    "sandbox",
    "error",
    "title",
    "llm_call",
    "replay_step",
    "replay_summary",
    "condensation",  # last: kinds keep their index codes (events/log/indexfile.py)
)
ACTION_KINDS: frozenset[str] = frozenset(
    {"think", "finish", "command", "python", "file_read", "file_edit", "tool_call"}
)
OBSERVATION_KINDS: frozenset[str] = frozenset(
    {"command_output", "python_output", "file_content", "file_edit_result", "tool_result"}
)


def event_from_json(data: str | bytes) -> Event:
    """Parse one stored or received event (raises ``pydantic.ValidationError``)."""
    return EVENT_ADAPTER.validate_json(data)


def event_from_dict(data: dict[str, Any]) -> Event:
    return EVENT_ADAPTER.validate_python(data)


def event_to_json(event: EventBase) -> str:
    """The canonical one-line JSON form (no redaction: see ``redact.SecretRegistry``)."""
    return event.model_dump_json()


def event_to_dict(event: EventBase) -> dict[str, Any]:
    return event.model_dump(mode="json")


def is_action(event: EventBase) -> bool:
    return event.kind in ACTION_KINDS
