"""What every tool provides to the controller."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ...events.schema import ActionBase, EventBase


class ToolArgumentError(ValueError):
    """The LLM called a tool with arguments we cannot use; told back to the LLM as text."""


class Tool(ABC):
    """A tool the agent can call: its OpenAI function spec, parsing, and execution.

    ``parse`` turns the LLM's JSON arguments into an action event (not yet logged);
    ``execute`` carries the action out and returns its observation (id and cause are set
    by the controller when it logs it). Tools with nothing to execute (think, finish)
    return ``None`` from ``execute``.
    """

    name: str = ""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """The Chat Completions tool definition: {"type": "function", "function": {...}}."""

    @abstractmethod
    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> ActionBase:
        """Validate arguments into an action event; raise ``ToolArgumentError`` if unusable."""

    @abstractmethod
    async def execute(self, action: ActionBase) -> EventBase | None:
        """Carry out ``action`` and return its observation."""

    async def close(self) -> None:  # noqa: B027 - most tools hold nothing
        """Release processes or kernels the tool started."""

    async def interrupt(self) -> None:
        """Called after an ``execute`` was cancelled (the user stopped the agent).

        The tool must be usable for the next action afterwards. The default closes it, so
        a tool that starts its process lazily gets a fresh one; override to interrupt the
        work in place and keep the session's state (cwd, variables).
        """
        await self.close()
