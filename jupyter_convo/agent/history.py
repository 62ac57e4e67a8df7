"""The agent's memory is its event log: turn events into Chat Completions messages.

A pure function, so a restarted conversation sees exactly what the first run saw. An LLM
turn starts at an ``llm_call`` event; the actions after it form one assistant message with
``tool_calls`` and their observations become ``tool`` messages. Every tool call gets a
result (a synthetic one when the log has none), so the message sequence is always valid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..events.schema import (
    ACTION_KINDS,
    OBSERVATION_KINDS,
    ActionBase,
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    ErrorEvent,
    EventBase,
    FileContentEvent,
    FileEditEvent,
    FileEditResultEvent,
    FileReadEvent,
    FinishEvent,
    MessageEvent,
    MimeBundle,
    PythonEvent,
    PythonOutputEvent,
    ThinkEvent,
)

Message = dict[str, Any]

DEFAULT_MAX_CHARS = 30_000
INTERRUPTED_RESULT = "(interrupted: no result was recorded)"
THINK_RESULT = "Your thought has been recorded."
FINISH_RESULT = "The task was marked as finished."

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# What an external (ACP) agent logs: its own tools and plans, never sent to our LLM as calls.
EXTERNAL_AGENT_KINDS = frozenset({"tool_call", "tool_result", "plan"})


def build_messages(
    events: Iterable[EventBase],
    *,
    system_prompt: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> list[Message]:
    """The Chat Completions ``messages`` for a conversation's events, oldest first.

    Observation text longer than ``max_chars`` is cut in the middle with a note. Events
    the LLM does not need (state changes, status, titles, LLM call records other than as
    turn boundaries) are left out.
    """
    builder = _HistoryBuilder(max_chars)
    if system_prompt:
        builder.messages.append({"role": "system", "content": system_prompt})
    for event in events:
        builder.add(event)
    builder.flush()
    return builder.messages


class IncrementalHistory:
    """``build_messages`` for a log that only grows, folding only what is new.

    The fold closes a turn at every ``llm_call``: right after one, its state is the
    messages so far plus an empty turn, and no later event changes those messages. So the
    messages up to the last ``llm_call`` are kept (``checkpoint`` is its id) and each call
    of ``messages`` folds only the events after it; the result equals ``build_messages``
    over the whole log. The controller re-built the history from the whole log every step
    before (3 ms per step at 1,000 events, bench/bench_step.py).
    """

    def __init__(
        self, *, system_prompt: str | None = None, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self.max_chars = max_chars
        self.checkpoint = -1
        self._closed: list[Message] = []
        if system_prompt:
            self._closed.append({"role": "system", "content": system_prompt})

    def restart(self, prefix: Sequence[Message], checkpoint: int) -> None:
        """Continue from ``prefix``, the messages for the log up to ``checkpoint`` (a
        condensed history: agent/condense.py)."""
        self._closed = list(prefix)
        self.checkpoint = checkpoint

    def messages(self, new_events: Sequence[EventBase]) -> list[Message]:
        """The messages for the log, given its events after ``checkpoint`` (in id order)."""
        builder = _HistoryBuilder(self.max_chars)
        builder.messages = list(self._closed)
        last_call = max(
            (index for index, event in enumerate(new_events) if event.kind == "llm_call"),
            default=-1,
        )
        for index, event in enumerate(new_events):
            if event.id <= self.checkpoint:
                raise ValueError(f"event {event.id} is not after the checkpoint {self.checkpoint}")
            builder.add(event)
            if index == last_call:
                self._closed = list(builder.messages)
                self.checkpoint = event.id
        builder.flush()
        return builder.messages


def tool_call_for(action: ActionBase) -> tuple[str, dict[str, Any]]:
    """The tool name and arguments an action was (or would have been) called with."""
    # What the LLM sent: its own rating, not the analyzer's (older events have only one).
    risk = {"security_risk": action.llm_risk or action.security_risk}
    if isinstance(action, CommandEvent):
        args: dict[str, Any] = {"command": action.command}
        if action.timeout is not None:
            args["timeout"] = action.timeout
        return "terminal", {**args, **risk}
    if isinstance(action, PythonEvent):
        args = {"code": action.code}
        if action.timeout is not None:
            args["timeout"] = action.timeout
        return "python", {**args, **risk}
    if isinstance(action, FileReadEvent):
        args = {"command": "view", "path": action.path}
        if action.view_range is not None:
            args["view_range"] = action.view_range
        return "file_editor", {**args, **risk}
    if isinstance(action, FileEditEvent):
        command = "undo_edit" if action.command == "undo" else action.command
        args = {"command": command, "path": action.path}
        for name in ("file_text", "old_str", "new_str", "insert_line"):
            value = getattr(action, name)
            if value is not None:
                args[name] = value
        return "file_editor", {**args, **risk}
    if isinstance(action, ThinkEvent):
        return "think", {"thought": action.thought}
    if isinstance(action, FinishEvent):
        return "finish", {"message": action.message}
    raise ValueError(f"no tool produces actions of kind {action.kind!r}")


def truncate_for_llm(text: str, max_chars: int) -> str:
    """Keep the head and the tail of ``text``; say how much was left out in between."""
    if len(text) <= max_chars:
        return text
    keep = max(max_chars // 2, 1)
    omitted = len(text) - 2 * keep
    return f"{text[:keep]}\n[... {omitted} characters omitted ...]\n{text[-keep:]}"


def render_observation(event: EventBase) -> str:
    """An observation as concise text for the LLM."""
    if isinstance(event, CommandOutputEvent):
        return _render_command(event)
    if isinstance(event, PythonOutputEvent):
        return _render_python(event)
    if isinstance(event, FileContentEvent):
        if event.error:
            return f"ERROR: {event.error}"
        note = "\n[file content truncated]" if event.truncated else ""
        return f"{event.content}{note}" if event.content else f"({event.path} is empty)"
    if isinstance(event, FileEditResultEvent):
        if event.error:
            return f"ERROR: {event.error}"
        return event.diff or f"{event.path}: no changes"
    if isinstance(event, ErrorEvent):
        return f"ERROR ({event.code}): {event.message}"
    raise ValueError(f"{event.kind!r} is not an observation")


def _render_command(event: CommandOutputEvent) -> str:
    parts = [event.output.rstrip("\n")] if event.output else ["(no output)"]
    if event.truncated:
        parts.append("[output truncated]")
    if event.timed_out:
        parts.append("[the command timed out and was interrupted]")
    status = f"exit code: {event.exit_code}" if event.exit_code is not None else "no exit code"
    if event.cwd:
        status += f"; cwd: {event.cwd}"
    parts.append(f"[{status}]")
    return "\n".join(parts)


def _render_python(event: PythonOutputEvent) -> str:
    parts: list[str] = []
    if event.stdout:
        parts.append(event.stdout.rstrip("\n"))
    if event.stderr:
        parts.append("[stderr]\n" + event.stderr.rstrip("\n"))
    for bundle in event.display_data:
        parts.append(_render_bundle(bundle))
    if event.result:
        parts.append(f"Out[{event.execution_count or ''}]: {_render_bundle(event.result)}")
    if event.error is not None:
        trace = _ANSI.sub("", "\n".join(event.error.traceback)).strip()
        parts.append(trace or f"{event.error.ename}: {event.error.evalue}")
    if event.truncated:
        parts.append("[output truncated]")
    if event.timed_out:
        parts.append("[the code timed out and was interrupted]")
    return "\n".join(p for p in parts if p) or "(no output)"


def _render_bundle(bundle: MimeBundle) -> str:
    lines: list[str] = []
    text = bundle.get("text/plain")
    rich = sorted(mime for mime in bundle if mime != "text/plain")
    images = [mime for mime in rich if mime.startswith("image/")]
    if isinstance(text, list):
        text = "".join(str(part) for part in text)
    if text and not images:
        lines.append(str(text))
    lines.extend(f"[{mime} output shown to the user]" for mime in images)
    if not lines:
        lines.extend(f"[{mime} output shown to the user]" for mime in rich)
    return "\n".join(lines)


def _user_message(event: MessageEvent) -> Message:
    if not event.image_urls:
        return {"role": "user", "content": event.text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": event.text}]
    parts.extend({"type": "image_url", "image_url": {"url": url}} for url in event.image_urls)
    return {"role": "user", "content": parts}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@dataclass
class _Turn:
    """One assistant message in the making: text, tool calls and their results."""

    content: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    call_of_action: dict[int, str] = field(default_factory=dict)
    deferred: list[Message] = field(default_factory=list)

    def waiting(self) -> bool:
        """True while a tool call has no result yet (a user message then waits too)."""
        return any(call["id"] not in self.results for call in self.calls)


class _HistoryBuilder:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.messages: list[Message] = []
        self.turn: _Turn | None = None

    def add(self, event: EventBase) -> None:
        if event.kind in EXTERNAL_AGENT_KINDS:  # another agent's tools: not ours to call
            return
        if event.kind == "llm_call":
            self.flush()
            self.turn = _Turn()
        elif isinstance(event, MessageEvent):
            self._add_message(event)
        elif isinstance(event, ActionBase) and event.kind in ACTION_KINDS:
            if event.source == "agent":
                self._add_action(event)
        elif event.kind in OBSERVATION_KINDS:
            self._add_result(event, render_observation(event))
        elif isinstance(event, ConfirmationEvent):
            if not event.confirmed:
                reason = f" Reason: {event.reason}" if event.reason else ""
                text = f"The user rejected this action; it was not executed.{reason}"
                self._add_result(event, text)
        elif isinstance(event, ErrorEvent):
            self._add_error(event)

    def flush(self) -> None:
        turn, self.turn = self.turn, None
        if turn is None:
            return
        if turn.content or turn.calls:
            message: Message = {"role": "assistant", "content": "\n\n".join(turn.content) or None}
            if turn.calls:
                message["tool_calls"] = turn.calls
            self.messages.append(message)
            for call in turn.calls:
                result = turn.results.get(call["id"], INTERRUPTED_RESULT)
                self.messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": result}
                )
        self.messages.extend(turn.deferred)

    def _current(self) -> _Turn:
        if self.turn is None:
            self.turn = _Turn()
        return self.turn

    def _add_message(self, event: MessageEvent) -> None:
        if event.source == "agent":
            if event.text:
                self._current().content.append(event.text)
            return
        message = _user_message(event)
        if self.turn is not None and self.turn.waiting():
            self.turn.deferred.append(message)
        else:
            self.flush()
            self.messages.append(message)

    def _add_action(self, action: ActionBase) -> None:
        turn = self._current()
        name, args = tool_call_for(action)
        call_id = action.tool_call_id or f"call_event_{action.id}"
        turn.calls.append(_call(call_id, name, json.dumps(args, ensure_ascii=False)))
        turn.call_of_action[action.id] = call_id
        if action.thought and not isinstance(action, ThinkEvent):
            turn.content.append(action.thought)
        if isinstance(action, ThinkEvent):
            turn.results[call_id] = THINK_RESULT
        elif isinstance(action, FinishEvent):
            turn.results[call_id] = FINISH_RESULT

    def _add_error(self, event: ErrorEvent) -> None:
        if event.tool_call_id is None and event.cause is None:
            return
        if event.tool_name is not None and event.tool_call_id is not None:
            turn = self._current()
            arguments = event.tool_arguments or "{}"
            turn.calls.append(_call(event.tool_call_id, event.tool_name, arguments))
        self._add_result(event, render_observation(event))

    def _add_result(self, event: EventBase, text: str) -> None:
        turn = self.turn
        if turn is None:
            return
        call_id = turn.call_of_action.get(event.cause) if event.cause is not None else None
        if call_id is None:
            wanted = getattr(event, "tool_call_id", None)
            call_id = next((c["id"] for c in turn.calls if c["id"] == wanted), None)
        if call_id is None:
            return
        turn.results[call_id] = truncate_for_llm(text, self.max_chars)
