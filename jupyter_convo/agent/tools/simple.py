"""The two tools with nothing to execute: ``think`` (a note to self) and ``finish``."""

from __future__ import annotations

from typing import Any

from ...events.schema import ActionBase, EventBase, FinishEvent, ThinkEvent
from .args import function_spec, required_str
from .base import Tool

THINK_DESCRIPTION = (
    "Write down your reasoning without doing anything else: nothing runs and nothing "
    "changes. Use it to plan an analysis before starting, to weigh explanations for a "
    "surprising result (a wrong dtype, missing values, an unexpected join size), or to "
    "decide between approaches. The thought is kept in the conversation for you and the "
    "user to read."
)

FINISH_DESCRIPTION = (
    "End the task when the user's request is done, or when you cannot go on without them. "
    "The message is your final answer: say what you did, where the results are (files in "
    "the workspace, variables in the Python session), what you found, and anything left "
    "open or uncertain. Do not call it while work is still in progress."
)


class ThinkTool(Tool):
    """Logs a thought; the log entry is the whole effect."""

    name = "think"

    def spec(self) -> dict[str, Any]:
        return function_spec(
            self.name,
            THINK_DESCRIPTION,
            {"thought": {"type": "string", "description": "Your reasoning, in plain words."}},
            ["thought"],
        )

    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> ThinkEvent:
        thought = required_str(arguments, "thought", allow_empty=True)
        return ThinkEvent(thought=thought, tool_call_id=tool_call_id)

    async def execute(self, action: ActionBase) -> EventBase | None:
        return None


class FinishTool(Tool):
    """Ends the task; the controller moves the agent to ``finished`` when it sees it."""

    name = "finish"

    def spec(self) -> dict[str, Any]:
        return function_spec(
            self.name,
            FINISH_DESCRIPTION,
            {
                "message": {
                    "type": "string",
                    "description": "Your final message to the user.",
                }
            },
            ["message"],
        )

    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> FinishEvent:
        message = required_str(arguments, "message", allow_empty=True)
        return FinishEvent(message=message, tool_call_id=tool_call_id)

    async def execute(self, action: ActionBase) -> EventBase | None:
        return None
