"""What the kernel side knows about a conversation: the shared fold, plus when it settles.

Pure bookkeeping, no I/O: the ``Conversation`` feeds it every event the server streams. The
header fields (title, states, metrics, error, the action waiting for confirmation, the
agent's last words) come from ``events.fold.ConversationFold``, the fold the server and the
side panel use too. On top, this module decides ``settled``: whether the agent is waiting
for the user or done, with nothing the user sent still unanswered (what ``wait()`` waits
for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..events.fold import ConversationFold

# Agent states in which the agent waits for the user or is done.
SETTLED_STATES = frozenset(
    {"awaiting_user_input", "awaiting_user_confirmation", "finished", "error", "stopped", "paused"}
)
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

    fold: ConversationFold = field(default_factory=ConversationFold)
    # A python action (id) whose output has not arrived yet.
    python_running: int | None = None
    _settle_id: int = -2
    _unsettle_id: int = -1
    _min_settle_id: int = -1
    _history_end: int = -1
    # Inputs the user sent that the log does not show yet: ("message", text) or
    # ("confirmation", action_id).
    pending: list[tuple[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ folded fields

    @property
    def title(self) -> str | None:
        return self.fold.title

    @property
    def status(self) -> str | None:
        """The conversation status (STARTING, RUNNING, STOPPED, ERROR, ARCHIVED)."""
        status = self.fold.status
        return None if status is None else str(getattr(status, "value", status))

    @property
    def agent_state(self) -> str | None:
        return self.fold.agent_state

    @property
    def agent_reason(self) -> str:
        return self.fold.agent_reason

    @property
    def error(self) -> str | None:
        return self.fold.error

    @property
    def awaiting(self) -> dict[str, Any] | None:
        """The action waiting for the user's confirmation (its event), if any."""
        return self.fold.awaiting

    @property
    def last_message(self) -> str | None:
        return self.fold.last_message

    @property
    def last_id(self) -> int:
        return self.fold.last_seen_id

    @property
    def metrics(self) -> Metrics:
        fold = self.fold
        return Metrics(
            prompt_tokens=fold.prompt_tokens,
            completion_tokens=fold.completion_tokens,
            cost=fold.cost,
            llm_calls=fold.llm_calls,
            latency=fold.latency,
        )

    # ------------------------------------------------------------------ settling

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
        """The server's record: title, status and, for a run that ended, a settle point.

        The events themselves are still folded from the first one (the kernel loads the
        whole history), so the fold's ``last_event_id`` is left alone.
        """
        fold = self.fold
        fold.title = metadata.get("title") or fold.title
        fold.status = metadata.get("status") or fold.status
        if metadata.get("agent_state") and fold.agent_state is None:
            fold.agent_state = str(metadata["agent_state"])
        if metadata.get("error"):
            fold.error = str(metadata["error"])
        if self.status in SETTLED_STATUSES:
            self._settle_id = max(self._settle_id, int(metadata.get("last_event_id", -1)))

    def apply(self, event: Mapping[str, Any]) -> None:
        event_id = int(event.get("id", -1))
        awaiting_before = self.fold.awaiting
        self.fold.apply(event)
        kind = event.get("kind")
        if kind == "agent_state":
            if event.get("state") in SETTLED_STATES:
                self._settle_id = max(self._settle_id, event_id)
            else:
                self._unsettle_id = max(self._unsettle_id, event_id)
        elif kind == "status":
            status = str(event.get("status"))
            if status in SETTLED_STATUSES:
                self._settle_id = max(self._settle_id, event_id)
            elif status != "READY":
                self._unsettle_id = max(self._unsettle_id, event_id)
        elif kind == "message" and event.get("source") == "user":
            self._drop_pending(("message", event.get("text")))
            self._unsettle_id = max(self._unsettle_id, event_id)
        elif kind == "confirmation":
            self._confirmation(event, event_id, awaiting_before)
        self._track_python(event, event_id)

    def _confirmation(
        self, event: Mapping[str, Any], event_id: int, awaiting: Mapping[str, Any] | None
    ) -> None:
        cause = event.get("cause")
        self._drop_pending(("confirmation", cause))
        self._unsettle_id = max(self._unsettle_id, event_id)
        answered = awaiting is not None and awaiting.get("id") == cause
        if answered and event.get("confirmed") and awaiting.get("kind") == "python":  # type: ignore[union-attr]
            self.python_running = cause  # the confirmed code runs now

    def _track_python(self, event: Mapping[str, Any], event_id: int) -> None:
        kind = event.get("kind")
        if kind == "python" and event.get("confirmation") != "awaiting":
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
