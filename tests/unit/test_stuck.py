"""stuck.detect_stuck: repeated actions with repeated results, repeated agent messages."""

from __future__ import annotations

import pytest

from jupyter_convo.agent.stuck import STUCK_CODE, detect_stuck
from jupyter_convo.events.schema import (
    AgentState,
    AgentStateEvent,
    CommandEvent,
    CommandOutputEvent,
    ConfirmationEvent,
    ErrorEvent,
    EventBase,
    LLMCallEvent,
    MessageEvent,
    PythonEvent,
    PythonOutputEvent,
    ThinkEvent,
)


class Log:
    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def add(self, event: EventBase) -> EventBase:
        stored = event.model_copy(update={"id": len(self.events)})
        self.events.append(stored)
        return stored

    def command(self, command: str, output: str, *, call: str = "c") -> None:
        """One LLM step running ``command``; tool call ids and thoughts differ each time."""
        n = len(self.events)
        self.add(LLMCallEvent(model="m"))
        action = self.add(
            CommandEvent(command=command, thought=f"try {n}", tool_call_id=f"{call}{n}")
        )
        self.add(CommandOutputEvent(cause=action.id, output=output, exit_code=1))
        self.add(AgentStateEvent(state=AgentState.RUNNING, reason=str(n)))

    def user(self, text: str) -> None:
        self.add(MessageEvent(source="user", text=text))

    def agent(self, text: str) -> None:
        self.add(LLMCallEvent(model="m"))
        self.add(MessageEvent(source="agent", text=text))


def test_same_action_and_result_three_times_is_stuck() -> None:
    log = Log()
    log.user("go")
    log.command("cat missing.csv", "No such file")
    log.command("cat missing.csv", "No such file")
    assert detect_stuck(log.events) is None
    log.command("cat missing.csv", "No such file")
    reason = detect_stuck(log.events)
    assert reason is not None and "command" in reason and "3 times" in reason


def test_a_different_result_or_action_breaks_the_row() -> None:
    log = Log()
    log.command("make", "error 1")
    log.command("make", "error 2")
    log.command("make", "error 2")
    assert detect_stuck(log.events) is None
    log.command("make test", "error 2")
    assert detect_stuck(log.events) is None


def test_a_user_message_starts_a_new_row() -> None:
    log = Log()
    log.command("ls", "a")
    log.command("ls", "a")
    log.user("keep going")
    log.command("ls", "a")
    assert detect_stuck(log.events) is None
    log.command("ls", "a")
    log.command("ls", "a")
    assert detect_stuck(log.events) is not None


def test_python_execution_count_does_not_hide_a_repeat() -> None:
    log = Log()
    for count in (1, 2, 3):
        log.add(LLMCallEvent(model="m"))
        action = log.add(PythonEvent(code="df.plot()"))
        log.add(PythonOutputEvent(cause=action.id, stderr="NameError", execution_count=count))
    assert detect_stuck(log.events) is not None


def test_an_action_still_running_is_not_counted() -> None:
    log = Log()
    log.command("ls", "a")
    log.command("ls", "a")
    log.add(CommandEvent(command="ls"))  # no result yet
    assert detect_stuck(log.events) is None


def test_after_a_stuck_error_the_count_starts_again() -> None:
    log = Log()
    for _ in range(3):
        log.command("ls", "a")
    assert detect_stuck(log.events) is not None
    log.add(ErrorEvent(code=STUCK_CODE, message="stuck"))
    assert detect_stuck(log.events) is None
    log.command("ls", "a")
    assert detect_stuck(log.events) is None


def test_repeated_invalid_tool_calls_are_stuck() -> None:
    log = Log()
    for n in range(3):
        log.add(LLMCallEvent(model="m"))
        log.add(
            ErrorEvent(
                code="AGENT_TOOL_ARGUMENTS",
                message="command is required",
                tool_call_id=f"x{n}",
                tool_name="terminal",
                tool_arguments="{}",
            )
        )
    reason = detect_stuck(log.events)
    assert reason is not None and "invalid tool call" in reason


def test_the_same_rejected_action_is_stuck() -> None:
    log = Log()
    for _ in range(3):
        log.add(LLMCallEvent(model="m"))
        action = log.add(CommandEvent(command="rm -rf /", confirmation="awaiting"))
        log.add(ConfirmationEvent(cause=action.id, confirmed=False, reason="no"))
    assert detect_stuck(log.events) is not None


def test_repeated_thinking_is_stuck() -> None:
    log = Log()
    for _ in range(3):
        log.add(LLMCallEvent(model="m"))
        log.add(ThinkEvent(thought="I should look at the data."))
    assert detect_stuck(log.events) is not None


def test_the_same_agent_message_three_times_is_stuck() -> None:
    log = Log()
    log.user("hi")
    log.agent("I cannot help with that.")
    log.user("please?")
    log.agent("I cannot help with that.")
    log.user("why?")
    assert detect_stuck(log.events) is None
    log.agent("I cannot help with that.")
    reason = detect_stuck(log.events)
    assert reason is not None and "message" in reason


def test_actions_between_messages_break_the_message_row() -> None:
    log = Log()
    log.agent("Done.")
    log.user("again")
    log.agent("Done.")
    log.command("ls", "a")
    log.agent("Done.")
    assert detect_stuck(log.events) is None


def test_different_messages_are_not_stuck() -> None:
    log = Log()
    for text in ("one", "two", "three"):
        log.user("next")
        log.agent(text)
    assert detect_stuck(log.events) is None


def test_repeats_must_be_meaningful() -> None:
    with pytest.raises(ValueError, match="repeats"):
        detect_stuck([], repeats=1)
    log = Log()
    log.command("ls", "a")
    log.command("ls", "a")
    assert detect_stuck(log.events, repeats=2) is not None


def test_different_thoughts_are_not_a_repeated_think() -> None:
    """A think action's thought is its argument: distinct thoughts are progress."""
    log = Log()
    log.add(MessageEvent(source="user", text="plan it"))
    for n in range(5):
        log.add(LLMCallEvent(model="m"))
        log.add(ThinkEvent(thought=f"step {n} of the plan"))
    assert detect_stuck(log.events) is None
    for _ in range(3):
        log.add(LLMCallEvent(model="m"))
        log.add(ThinkEvent(thought="the same thought"))
    assert detect_stuck(log.events) is not None
