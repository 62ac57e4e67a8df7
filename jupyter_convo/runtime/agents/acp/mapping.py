"""ACP session updates -> our events, one turn at a time.

Message and thought chunks are gathered and logged as one ``message`` / ``think`` event
when something else happens or the turn ends (a turn's text is one event, not hundreds).
``tool_call`` is logged at once as a ``tool_call`` action; its updates are gathered and the
final one (completed / failed) becomes a ``tool_result`` observation keeping its text,
terminal output and diffs. ``plan`` is logged whole each time; ``usage_update`` only moves
the metrics.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from acp import schema as acp

from ....agent.metrics import Metrics
from ....events.schema import (
    Event,
    EventBase,
    MessageEvent,
    PlanEvent,
    PlanStep,
    ThinkEvent,
    ToolCallEvent,
    ToolLocation,
    ToolResultEvent,
)

FINAL_STATUSES = frozenset({"completed", "failed"})
MAX_ARGUMENTS_CHARS = 20_000


def block_text(block: Any) -> str:
    """The text of one ACP content block (resources by their URI, media by their type)."""
    if isinstance(block, acp.TextContentBlock):
        return block.text
    if isinstance(block, acp.ResourceContentBlock):
        return block.uri
    if isinstance(block, acp.EmbeddedResourceContentBlock):
        resource = block.resource
        return str(getattr(resource, "text", None) or getattr(resource, "uri", ""))
    return f"[{getattr(block, 'type', 'content')}]"


def unified_diff(path: str, old: str | None, new: str) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if old is None else f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _arguments(raw: Any) -> str:
    if raw is None:
        return ""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str, sort_keys=True)
    return text[:MAX_ARGUMENTS_CHARS]


def _locations(items: Iterable[acp.ToolCallLocation] | None) -> list[ToolLocation]:
    return [ToolLocation(path=item.path, line=item.line) for item in items or ()]


@dataclass
class _Call:
    """A tool call in flight: its action's id and what its updates said so far."""

    action_id: int
    title: str
    output: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    terminals: list[str] = field(default_factory=list)


@dataclass
class TurnMapper:
    """Turns one conversation's ACP updates into events through ``emit``.

    ``terminal_output(terminal_id)`` gives the output of a terminal we run for the agent (a
    ``terminal`` content item only names it)."""

    emit: Callable[[EventBase], Event]
    terminal_output: Callable[[str], str] = lambda _terminal_id: ""
    metrics: Metrics = field(default_factory=Metrics)
    _text: list[str] = field(default_factory=list)
    _thought: list[str] = field(default_factory=list)
    calls: dict[str, _Call] = field(default_factory=dict)
    muted: bool = False  # while an agent replays a loaded session's history

    def update(self, update: Any) -> None:
        if self.muted:
            return
        if isinstance(update, acp.AgentMessageChunk):
            self._flush_thought()
            self._text.append(block_text(update.content))
            return
        if isinstance(update, acp.AgentThoughtChunk):
            self._flush_text()
            self._thought.append(block_text(update.content))
            return
        if isinstance(update, acp.UsageUpdate):
            if update.cost is not None:
                self.metrics.cost = update.cost.amount
            return
        self.flush()
        if isinstance(update, acp.ToolCallStart):
            self.start_call(update)
        elif isinstance(update, acp.ToolCallProgress):
            self.progress(update)
        elif isinstance(update, acp.AgentPlanUpdate):
            self.emit(
                PlanEvent(
                    entries=[
                        PlanStep(content=e.content, priority=e.priority, status=e.status)
                        for e in update.entries
                    ]
                )
            )

    def start_call(self, call: acp.ToolCallStart) -> None:
        event = self.emit(
            ToolCallEvent(
                tool_call_id=call.tool_call_id,
                tool_kind=call.kind or "other",
                title=call.title,
                locations=_locations(call.locations),
                arguments=_arguments(call.raw_input),
            )
        )
        self.calls[call.tool_call_id] = _Call(event.id, call.title)
        self._content(call.tool_call_id, call.content)
        if call.status in FINAL_STATUSES:
            self._finish(call.tool_call_id, call.status, call.raw_output)

    def progress(self, update: acp.ToolCallProgress | acp.ToolCallUpdate) -> None:
        known = self.calls.get(update.tool_call_id)
        if known is None:  # an update for a call never announced: announce it now
            event = self.emit(
                ToolCallEvent(
                    tool_call_id=update.tool_call_id,
                    tool_kind=update.kind or "other",
                    title=update.title or update.tool_call_id,
                    locations=_locations(update.locations),
                    arguments=_arguments(update.raw_input),
                )
            )
            known = self.calls[update.tool_call_id] = _Call(event.id, update.title or "")
        if update.title:
            known.title = update.title
        self._content(update.tool_call_id, update.content)
        if update.status in FINAL_STATUSES:
            self._finish(update.tool_call_id, update.status, update.raw_output)

    def _content(self, tool_call_id: str, content: Iterable[Any] | None) -> None:
        call = self.calls[tool_call_id]
        for item in content or ():
            if isinstance(item, acp.FileEditToolCallContent):
                call.diffs.append(unified_diff(item.path, item.old_text, item.new_text))
            elif isinstance(item, acp.TerminalToolCallContent):
                if item.terminal_id not in call.terminals:
                    call.terminals.append(item.terminal_id)
            elif isinstance(item, acp.ContentToolCallContent):
                call.output.append(block_text(item.content))

    def _finish(self, tool_call_id: str, status: str, raw_output: Any) -> None:
        call = self.calls.pop(tool_call_id)
        output = [*call.output, *(self.terminal_output(t) for t in call.terminals)]
        if not any(output) and raw_output is not None:
            output.append(_arguments(raw_output))
        self.emit(
            ToolResultEvent(
                cause=call.action_id,
                tool_call_id=tool_call_id,
                status=status,
                title=call.title,
                output="\n".join(part for part in output if part),
                diff="".join(call.diffs),
            )
        )

    def action_id(self, tool_call_id: str) -> int | None:
        call = self.calls.get(tool_call_id)
        return call.action_id if call is not None else None

    # --- gathered text --------------------------------------------------------------------

    def _flush_text(self) -> None:
        text = "".join(self._text)
        self._text.clear()
        if text.strip():
            self.emit(MessageEvent(source="agent", text=text))

    def _flush_thought(self) -> None:
        thought = "".join(self._thought)
        self._thought.clear()
        if thought.strip():
            self.emit(ThinkEvent(thought=thought))

    def flush(self) -> None:
        """Log the gathered text and thought (before anything else, and at a turn's end)."""
        self._flush_thought()
        self._flush_text()

    def end_turn(self) -> None:
        """The turn ended: gathered text is logged; calls left open end as failed."""
        self.flush()
        for tool_call_id in list(self.calls):
            self._finish(tool_call_id, "failed", "the turn ended before this call finished")
