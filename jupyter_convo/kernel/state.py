"""What the kernel side knows about a conversation, folded from its events.

Pure bookkeeping, no I/O: the ``Conversation`` feeds it every event the server streams and
asks it for the header (title, states, metrics) and for ``settled``: whether the agent is
waiting for the user or done, with nothing the user sent still unanswered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .render import SETTLED_STATES

# Runtime statuses (``status`` events) and conversation statuses that end a run.
SETTLED_STATUSES = frozenset({"STOPPED", "ERROR", "ARCHIVED"})


@dataclass
class Metrics:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    llm_calls: int = 0
    latency: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": self.cost,
            "llm_calls": self.llm_calls,
            "latency": self.latency,
        }


@dataclass
class ConversationState:
    """Folds events (wire dicts) into what a view and ``wait()`` need."""

    title: str | None = None
    status: str | None = None  # conversation status (metadata) or the last runtime status
    agent_state: str | None = None
    agent_reason: str = ""
    metrics: Metrics = field(default_factory=Metrics)
    last_id: int = -1
    last_message: str | None = None
    error: str | None = None
    # The action waiting for the user's confirmation (its event), if any.
    awaiting: dict[str, Any] | None = None
    # A python action (id) whose output has not arrived yet.
    python_running: int | None = None
    # The last ``sandbox`` event: how the agent's tools are isolated (badge).
    sandbox: dict[str, Any] | None = None
    _settle_id: int = -2
    _unsettle_id: int = -1
    _min_settle_id: int = -1
    _history_end: int = -1
    # Inputs the user sent that the log does not show yet: ("message", text) or
    # ("confirmation", action_id).
    pending: list[tuple[str, Any]] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """The agent waits for the user or is done, and nothing sent is still unanswered."""
        if self.pending or self.last_id < self._history_end:
            return False
        return self._settle_id > max(self._unsettle_id, self._min_settle_id)

    def history_ends_at(self, event_id: int) -> None:
        """Events up to ``event_id`` exist: not settled before they have all arrived."""
        self._history_end = max(self._history_end, event_id)

    def settle_after(self, event_id: int) -> None:
        """Only a settle after ``event_id`` counts (a restart makes older ones history)."""
        self._min_settle_id = max(self._min_settle_id, event_id)

    def apply_metadata(self, metadata: Mapping[str, Any]) -> None:
        """The server's record: title, status and, for a run that ended, a settle point."""
        self.title = metadata.get("title") or self.title
        self.status = metadata.get("status") or self.status
        if metadata.get("agent_state") and self.agent_state is None:
            self.agent_state = str(metadata["agent_state"])
        if metadata.get("error"):
            self.error = str(metadata["error"])
        if self.status in SETTLED_STATUSES:
            self._settle_id = max(self._settle_id, int(metadata.get("last_event_id", -1)))

    def apply(self, event: Mapping[str, Any]) -> None:
        event_id = int(event.get("id", -1))
        if event_id > self.last_id:
            self.last_id = event_id
        kind = event.get("kind")
        if kind == "llm_call":
            self._count(event)
        elif kind == "title":
            self.title = str(event.get("title") or self.title)
        elif kind == "agent_state":
            self._agent_state(event, event_id)
        elif kind == "status":
            self._status(event, event_id)
        elif kind == "sandbox":
            self.sandbox = dict(event)
        elif kind == "message":
            self._message(event, event_id)
        elif kind == "confirmation":
            self._confirmation(event, event_id)
        elif kind == "finish":
            self.last_message = str(event.get("message") or self.last_message or "")
        elif kind == "error" and event_id >= 0:
            self.error = f"{event.get('code')}: {event.get('message', '')}"
        self._track_actions(event, event_id)

    def _count(self, event: Mapping[str, Any]) -> None:
        self.metrics.prompt_tokens += int(event.get("prompt_tokens") or 0)
        self.metrics.completion_tokens += int(event.get("completion_tokens") or 0)
        self.metrics.cost += float(event.get("cost") or 0.0)
        self.metrics.latency += float(event.get("latency") or 0.0)
        self.metrics.llm_calls += 1

    def _agent_state(self, event: Mapping[str, Any], event_id: int) -> None:
        self.agent_state = str(event.get("state"))
        self.agent_reason = str(event.get("reason") or "")
        if self.agent_state in SETTLED_STATES:
            self._settle_id = max(self._settle_id, event_id)
        else:
            self._unsettle_id = max(self._unsettle_id, event_id)
        if self.agent_state != "awaiting_user_confirmation":
            self.awaiting = None

    def _status(self, event: Mapping[str, Any], event_id: int) -> None:
        status = str(event.get("status"))
        self.status = status
        if status in SETTLED_STATUSES:
            self._settle_id = max(self._settle_id, event_id)
            if status == "ERROR" and event.get("message"):
                self.error = str(event["message"])
        elif status != "READY":
            self._unsettle_id = max(self._unsettle_id, event_id)

    def _message(self, event: Mapping[str, Any], event_id: int) -> None:
        if event.get("source") == "user":
            self._drop_pending(("message", event.get("text")))
            self._unsettle_id = max(self._unsettle_id, event_id)
        else:
            self.last_message = str(event.get("text", ""))

    def _confirmation(self, event: Mapping[str, Any], event_id: int) -> None:
        cause = event.get("cause")
        self._drop_pending(("confirmation", cause))
        self._unsettle_id = max(self._unsettle_id, event_id)
        awaiting = self.awaiting
        if awaiting is not None and awaiting.get("id") == cause:
            if event.get("confirmed") and awaiting.get("kind") == "python":
                self.python_running = cause  # the confirmed code runs now
            self.awaiting = None

    def _track_actions(self, event: Mapping[str, Any], event_id: int) -> None:
        kind = event.get("kind")
        if event.get("confirmation") == "awaiting":
            self.awaiting = dict(event)
        elif kind == "python":
            self.python_running = event_id
        answered = event.get("cause") == self.python_running and kind != "confirmation"
        if self.python_running is not None and answered:
            self.python_running = None  # its output (or error) arrived
        if kind == "agent_state" and event.get("state") in SETTLED_STATES:
            self.python_running = None

    def _drop_pending(self, item: tuple[str, Any]) -> None:
        if item in self.pending:
            self.pending.remove(item)

    def expect(self, item: tuple[str, Any]) -> None:
        """The user sent ``item``: not settled until the log shows it."""
        self.pending.append(item)

    def forget(self, item: tuple[str, Any]) -> None:
        """Sending ``item`` failed: stop waiting for it."""
        self._drop_pending(item)
