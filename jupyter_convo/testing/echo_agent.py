"""A third-party agent backend in miniature, for tests of the backend seam.

``EchoAgent`` answers every message with ``echo: <text>`` and counts one LLM-free call per
answer. Tests register it the way an outside package would (one entry point, see
``write_agent_entry_point``) and run it through a real runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..agent.metrics import Metrics
from ..events.inputs import AgentStateInput, ConfirmationInput, MessageInput, UserInput
from ..events.schema import AgentState, AgentStateEvent, ErrorEvent, Event, MessageEvent
from ..runtime.agents.base import AgentBackend, AgentContext

ECHO_PREFIX = "echo: "


class EchoAgent(AgentBackend):
    """Echoes the user's messages; remembers nothing but what the log holds."""

    name = "echo"
    description = "test double: answers each message with 'echo: <message>'"

    def __init__(self, context: AgentContext) -> None:
        super().__init__(context)
        self._state = AgentState.LOADING
        self._metrics = Metrics()

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def metrics(self) -> Metrics:
        return self._metrics.model_copy()

    def _set(self, state: AgentState, reason: str = "") -> Event:
        self._state = state
        return self.context.events.emit(AgentStateEvent(state=state, reason=reason))

    async def start(self, initial_message: str | None, image_urls: Sequence[str] = ()) -> None:
        answered = sum(
            1
            for event in self.context.events.read()
            if isinstance(event, MessageEvent) and event.source == "agent"
        )
        self._metrics.iterations = answered
        self._set(AgentState.LOADING, "resuming" if answered else "starting")
        if initial_message:
            self._answer(initial_message)
        else:
            self._set(AgentState.AWAITING_USER_INPUT)

    def _answer(self, text: str) -> Event:
        message = self.context.events.emit(MessageEvent(source="user", text=text))
        self._set(AgentState.RUNNING)
        self.context.events.emit(MessageEvent(source="agent", text=ECHO_PREFIX + text))
        self._metrics.iterations += 1
        self._set(AgentState.AWAITING_USER_INPUT)
        return message

    async def handle_input(self, item: UserInput) -> Event:
        if isinstance(item, MessageInput):
            return self._answer(item.text)
        if isinstance(item, AgentStateInput) and item.state == "stopped":
            return self._set(AgentState.STOPPED, "stopped by the user")
        assert isinstance(item, ConfirmationInput | AgentStateInput)
        return self.context.events.emit(
            ErrorEvent(code="ECHO_UNSUPPORTED", message=f"echo ignores {item.kind} input")
        )

    async def stop(self) -> None:
        if self._state is not AgentState.STOPPED:
            self._set(AgentState.STOPPED, "runtime stopping")


def write_agent_entry_point(directory: Path, name: str, target: str) -> Path:
    """Register ``target`` ("module:Class") as agent backend ``name`` in a minimal
    distribution under ``directory`` (put it on PYTHONPATH), as an installed package would."""
    dist = directory / f"convo_agent_{name}-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: convo-agent-{name}\nVersion: 0\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(
        f"[jupyter_convo.agents]\n{name} = {target}\n", encoding="utf-8"
    )
    return directory
