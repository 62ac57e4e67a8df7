"""What the scripted LLM answers: steps, injected errors, and how a request finds its step.

A script is a list of items. Each ``ScriptedResponse`` is one assistant turn (text and/or
tool calls); ``ScriptedError`` items placed before a response are served first, at that
response's position, each ``times`` times. Routing is stateless so that concurrent
conversations and retries stay deterministic:

- the script is the first one whose ``match`` is a substring of the request's first user
  message (in the order scripts were added), else the default script (``match=None``);
- the step index is the number of assistant messages already in the request, so a retry of
  the same request lands on the same step.

The same pydantic models are the JSON script-file format used by
``python -m jupyter_convo.testing --script FILE``::

    {"scripts": [{"match": null, "steps": [
        {"type": "response", "tool_calls": [{"name": "terminal", "arguments": {"command": "ls"}}]},
        {"type": "error", "status": 429, "message": "slow down", "times": 2},
        {"type": "response", "content": "done"}]}]}

A bare list of steps is also accepted as the default script.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

CONTEXT_LENGTH_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted "
    "in 9000 tokens. Please reduce the length of the messages."
)


class ScriptedToolCall(BaseModel):
    """One function call in an assistant turn; ``arguments`` is sent as a JSON string."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


class ScriptedResponse(BaseModel):
    """One assistant turn. Usage is derived from character counts unless given."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["response"] = "response"
    content: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    finish_reason: str | None = None  # default: "tool_calls" with calls, else "stop"
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    # Seconds to wait before answering (for stop/timeout tests); cut short by server stop.
    delay: float = Field(default=0.0, ge=0)
    # Hold the answer until ``ScriptedLLM.open_gate(gate)`` is called (or the server stops).
    gate: str | None = None

    def resolved_finish_reason(self) -> str:
        if self.finish_reason:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


class ScriptedError(BaseModel):
    """An HTTP error served (``times`` times, or forever when None) before the next step."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["error"] = "error"
    status: int = Field(ge=400, le=599)
    message: str = "Scripted error"
    error_type: str | None = None  # the body's error.type; derived from status when None
    code: str | None = None
    times: int | None = Field(default=1, ge=1)
    retry_after: float | None = Field(default=None, ge=0)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type or _default_error_type(self.status),
                "param": None,
                "code": self.code,
            }
        }


ScriptItem = Annotated[ScriptedResponse | ScriptedError, Field(discriminator="type")]


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str | None = None
    steps: list[ScriptItem] = Field(default_factory=list)

    @field_validator("match")
    @classmethod
    def _match_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("match must be a non-empty substring, or None for the default")
        return value


class ScriptFile(BaseModel):
    """The JSON file format: scripts plus the model ids ``GET /v1/models`` lists."""

    model_config = ConfigDict(extra="forbid")

    scripts: list[Script] = Field(default_factory=list)
    models: list[str] = Field(default_factory=lambda: ["scripted-model"])


_STEPS_ADAPTER: TypeAdapter[list[ScriptItem]] = TypeAdapter(list[ScriptItem])


def load_script_file(path: str | Path) -> ScriptFile:
    """Read a script file; a bare JSON list of steps is the default script."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, list):
        return ScriptFile(scripts=[Script(steps=_STEPS_ADAPTER.validate_python(data))])
    return ScriptFile.model_validate(data)


# ---------------------------------------------------------------- builders (the script API)


def reply(text: str, **options: Any) -> ScriptedResponse:
    """An assistant message with text only (``options``: usage, delay, gate...)."""
    return ScriptedResponse(content=text, **options)


def call(
    name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None
) -> ScriptedToolCall:
    """One tool call, to put in ``tool_calls([...])``."""
    args: dict[str, Any] | str = arguments if isinstance(arguments, str) else dict(arguments or {})
    return ScriptedToolCall(name=name, arguments=args, id=id)


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | str | None = None,
    *,
    content: str | None = None,
    id: str | None = None,
    **options: Any,
) -> ScriptedResponse:
    """An assistant turn calling one tool (optionally with some text)."""
    return ScriptedResponse(content=content, tool_calls=[call(name, arguments, id=id)], **options)


def tool_calls(
    calls: Iterable[ScriptedToolCall | tuple[str, Mapping[str, Any]]],
    *,
    content: str | None = None,
    **options: Any,
) -> ScriptedResponse:
    """An assistant turn calling several tools: ``[call(...), ...]`` or ``[(name, args), ...]``."""
    built = [c if isinstance(c, ScriptedToolCall) else call(c[0], c[1]) for c in calls]
    if not built:
        raise ValueError("tool_calls() needs at least one call")
    return ScriptedResponse(content=content, tool_calls=built, **options)


def error(
    status: int,
    message: str = "Scripted error",
    times: int | None = 1,
    *,
    code: str | None = None,
    error_type: str | None = None,
    retry_after: float | None = None,
) -> ScriptedError:
    """An HTTP error served ``times`` times (None: forever) before the next step."""
    return ScriptedError(
        status=status,
        message=message,
        times=times,
        code=code,
        error_type=error_type,
        retry_after=retry_after,
    )


def context_length_error(
    message: str = CONTEXT_LENGTH_MESSAGE, times: int | None = 1
) -> ScriptedError:
    """The 400 an endpoint sends when the prompt is longer than the model's context."""
    return error(400, message, times, code="context_length_exceeded")


def _default_error_type(status: int) -> str:
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class Routed:
    """What to serve for one request: a response, an error, or None (script exhausted)."""

    script_name: str
    step: int
    item: ScriptedResponse | ScriptedError | None
    total_steps: int


def first_user_text(messages: Sequence[Any]) -> str:
    """The text of the first user message (content parts joined), '' when there is none."""
    for message in messages:
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def no_script_message(task: str, scripts: Sequence[Script]) -> str:
    """What a user reads when no script answers ``task``: the tasks this server knows."""
    known = [repr(script.match) for script in scripts if script.match is not None]
    shown = task if len(task) <= 120 else task[:117] + "..."
    if known:
        knows = (
            f"it only answers tasks that contain one of: {', '.join(known)}. "
            "Start a conversation with one of those tasks (the example notebooks do), or"
        )
    else:
        knows = "it has no scripts loaded. Load a script file (--script FILE), or"
    return (
        f"The scripted demo LLM (jupyter_convo.testing) has no answer for the task {shown!r}: "
        f"{knows} point jupyter-convo at a real LLM (JUPYTER_CONVO_LLM_MODEL, "
        "JUPYTER_CONVO_LLM_API_KEY, JUPYTER_CONVO_LLM_BASE_URL)."
    )


def count_assistant_messages(messages: Sequence[Any]) -> int:
    """The step a request is at: its assistant messages, plus those a condensed history's
    summary stands for (agent/condense.py), so a condensed run keeps its place."""
    from ..agent.condense import SUMMARY_TURNS

    count = 0
    for m in messages:
        if not isinstance(m, Mapping):
            continue
        if m.get("role") == "assistant":
            count += 1
        elif m.get("role") == "user":
            found = SUMMARY_TURNS.search(_content_text(m.get("content"))[:300])
            count += int(found.group(1)) if found else 0
    return count


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


class ScriptBook:
    """The scripts of one server and the counters of the errors they served. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[Script] = []
        self._served: dict[tuple[int, int], int] = {}  # (id(script), item index) -> count

    def add(self, script: Script) -> None:
        """Add a script; one with the same ``match`` replaces the old one (counters reset)."""
        with self._lock:
            kept = [s for s in self._scripts if s.match != script.match]
            dropped = {id(s) for s in self._scripts} - {id(s) for s in kept}
            self._served = {k: v for k, v in self._served.items() if k[0] not in dropped}
            self._scripts = [*kept, script]

    def clear(self) -> None:
        with self._lock:
            self._scripts = []
            self._served = {}

    @property
    def scripts(self) -> list[Script]:
        with self._lock:
            return list(self._scripts)

    def find_script(self, first_user_message: str) -> Script | None:
        with self._lock:
            scripts = list(self._scripts)
        for script in scripts:
            if script.match is not None and script.match in first_user_message:
                return script
        return next((s for s in scripts if s.match is None), None)

    def route(self, messages: Sequence[Any]) -> Routed | None:
        """Pick what answers ``messages``; None when no script matches at all."""
        script = self.find_script(first_user_text(messages))
        if script is None:
            return None
        step = count_assistant_messages(messages)
        name = "default" if script.match is None else repr(script.match)
        responses = sum(1 for item in script.steps if isinstance(item, ScriptedResponse))
        position = 0  # index of the response the current errors belong to
        with self._lock:
            for index, item in enumerate(script.steps):
                if isinstance(item, ScriptedResponse):
                    if position == step:
                        return Routed(name, step, item, responses)
                    position += 1
                elif position == step:
                    key = (id(script), index)
                    served = self._served.get(key, 0)
                    if item.times is None or served < item.times:
                        self._served[key] = served + 1
                        return Routed(name, step, item, responses)
        return Routed(name, step, None, responses)
