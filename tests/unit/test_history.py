"""history.build_messages: log events -> a valid Chat Completions message sequence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jupyter_convo.agent.controller import rebuild_from_log
from jupyter_convo.agent.history import (
    FINISH_RESULT,
    INTERRUPTED_RESULT,
    THINK_RESULT,
    IncrementalHistory,
    build_messages,
    tool_call_for,
    truncate_for_llm,
)
from jupyter_convo.agent.prompts import system_prompt
from jupyter_convo.events.schema import (
    ActionBase,
    AgentState,
    AgentStateEvent,
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
    LLMCallEvent,
    MessageEvent,
    PythonError,
    PythonEvent,
    PythonOutputEvent,
    StatusEvent,
    ThinkEvent,
)


class Log:
    """A hand-made log: events get ids in order, like EventLog.append gives them."""

    def __init__(self) -> None:
        self.events: list[EventBase] = []

    def add(self, event: EventBase) -> EventBase:
        stored = event.model_copy(update={"id": len(self.events)})
        self.events.append(stored)
        return stored

    def llm(self, cost: float = 0.0, tokens: tuple[int, int] = (10, 5)) -> EventBase:
        return self.add(
            LLMCallEvent(model="m", prompt_tokens=tokens[0], completion_tokens=tokens[1], cost=cost)
        )

    def user(self, text: str, images: list[str] | None = None) -> EventBase:
        return self.add(MessageEvent(source="user", text=text, image_urls=images or []))


def assert_valid_sequence(messages: list[dict[str, Any]]) -> None:
    """Every assistant tool call is answered right after it, and no tool message dangles."""
    index = 0
    while index < len(messages):
        message = messages[index]
        assert message["role"] != "tool", f"tool message without a call at {index}"
        index += 1
        if message["role"] == "assistant" and message.get("tool_calls"):
            ids = [call["id"] for call in message["tool_calls"]]
            answered = [m["tool_call_id"] for m in messages[index : index + len(ids)]]
            assert answered == ids, f"calls {ids} answered by {answered}"
            assert all(m["role"] == "tool" for m in messages[index : index + len(ids)])
            index += len(ids)


def test_user_messages_and_system_prompt() -> None:
    log = Log()
    log.user("hello")
    log.user("look", images=["data:image/png;base64,AAAA"])
    messages = build_messages(log.events, system_prompt="SYS")
    assert messages[0] == {"role": "system", "content": "SYS"}
    assert messages[1] == {"role": "user", "content": "hello"}
    assert messages[2]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]


def test_command_turn_becomes_tool_call_and_result() -> None:
    log = Log()
    log.user("count lines")
    log.llm()
    action = log.add(
        CommandEvent(command="wc -l a.csv", thought="Let me count.", tool_call_id="c1")
    )
    log.add(
        CommandOutputEvent(
            cause=action.id, tool_call_id="c1", output="3 a.csv\n", exit_code=0, cwd="/ws"
        )
    )
    log.add(AgentStateEvent(state=AgentState.RUNNING))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assistant = messages[1]
    assert assistant["content"] == "Let me count."
    (call,) = assistant["tool_calls"]
    assert call["id"] == "c1"
    assert call["function"]["name"] == "terminal"
    assert json.loads(call["function"]["arguments"]) == {
        "command": "wc -l a.csv",
        "security_risk": "unknown",
    }
    assert messages[2] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "3 a.csv\n[exit code: 0; cwd: /ws]",
    }
    assert len(messages) == 3  # the state event is not for the LLM


def test_several_calls_in_one_turn_share_one_assistant_message() -> None:
    log = Log()
    log.user("go")
    log.llm()
    first = log.add(PythonEvent(code="x = 1", tool_call_id="a", security_risk="low"))
    second = log.add(FileReadEvent(path="notes.md", tool_call_id="b"))
    log.add(PythonOutputEvent(cause=first.id, tool_call_id="a"))
    log.add(FileContentEvent(cause=second.id, tool_call_id="b", path="notes.md", content="hi"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["a", "b"]
    assert messages[1]["content"] is None
    assert messages[2]["content"] == "(no output)"
    assert messages[3]["content"] == "hi"


def test_python_output_renders_text_images_and_errors() -> None:
    log = Log()
    log.llm()
    action = log.add(PythonEvent(code="plot()", tool_call_id="p"))
    log.add(
        PythonOutputEvent(
            cause=action.id,
            tool_call_id="p",
            stdout="rows: 3\n",
            stderr="warning!\n",
            display_data=[{"image/png": "iVBOR", "text/plain": "<Figure size 640x480>"}],
            result={"text/plain": "42"},
            execution_count=7,
            error=PythonError(
                ename="ValueError",
                evalue="bad",
                traceback=["\x1b[0;31mValueError\x1b[0m: bad"],
            ),
        )
    )
    text = build_messages(log.events)[-1]["content"]
    assert "rows: 3" in text
    assert "[stderr]\nwarning!" in text
    assert "[image/png output shown to the user]" in text
    assert "<Figure" not in text  # the image note replaces the figure's repr
    assert "Out[7]: 42" in text
    assert "ValueError: bad" in text
    assert "\x1b" not in text


def test_file_edit_arguments_and_results() -> None:
    log = Log()
    log.llm()
    edit = log.add(
        FileEditEvent(
            command="str_replace", path="a.py", old_str="x", new_str="y", tool_call_id="e"
        )
    )
    undo = log.add(FileEditEvent(command="undo", path="a.py", tool_call_id="u"))
    log.add(FileEditResultEvent(cause=edit.id, tool_call_id="e", diff="-x\n+y\n"))
    log.add(FileEditResultEvent(cause=undo.id, tool_call_id="u", error="nothing to undo"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    calls = messages[0]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"]) == {
        "command": "str_replace",
        "path": "a.py",
        "old_str": "x",
        "new_str": "y",
        "security_risk": "unknown",
    }
    assert json.loads(calls[1]["function"]["arguments"])["command"] == "undo_edit"
    assert messages[1]["content"] == "-x\n+y\n"
    assert messages[2]["content"] == "ERROR: nothing to undo"


def test_think_and_finish_get_short_results() -> None:
    log = Log()
    log.llm()
    log.add(ThinkEvent(thought="plan: load, clean", tool_call_id="t"))
    log.add(FinishEvent(message="Done.", thought="All good.", tool_call_id="f"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert messages[0]["content"] == "All good."  # a think's thought is its argument
    assert json.loads(messages[0]["tool_calls"][0]["function"]["arguments"]) == {
        "thought": "plan: load, clean"
    }
    assert [m["content"] for m in messages[1:]] == [THINK_RESULT, FINISH_RESULT]


def test_action_without_result_gets_interrupted_note() -> None:
    log = Log()
    log.user("sleep")
    log.llm()
    log.add(CommandEvent(command="sleep 100", tool_call_id="s"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert messages[-1] == {"role": "tool", "tool_call_id": "s", "content": INTERRUPTED_RESULT}


def test_user_message_during_a_tool_call_comes_after_its_result() -> None:
    log = Log()
    log.user("start")
    log.llm()
    action = log.add(CommandEvent(command="make", tool_call_id="m"))
    log.user("also check b.csv")
    log.add(CommandOutputEvent(cause=action.id, tool_call_id="m", output="ok", exit_code=0))
    log.llm()
    log.add(MessageEvent(source="agent", text="Both done."))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user", "assistant"]
    assert messages[2]["content"].startswith("ok")
    assert messages[3]["content"] == "also check b.csv"
    assert messages[4] == {"role": "assistant", "content": "Both done."}


def test_rejection_is_the_tool_result() -> None:
    log = Log()
    log.llm()
    action = log.add(CommandEvent(command="rm -rf data", tool_call_id="r", confirmation="awaiting"))
    log.add(ConfirmationEvent(cause=action.id, confirmed=False, reason="keep the data"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert "rejected" in messages[1]["content"]
    assert "keep the data" in messages[1]["content"]


def test_confirmed_action_result_is_its_observation() -> None:
    log = Log()
    log.llm()
    action = log.add(CommandEvent(command="ls", tool_call_id="l", confirmation="awaiting"))
    log.add(ConfirmationEvent(cause=action.id, confirmed=True))
    log.add(CommandOutputEvent(cause=action.id, tool_call_id="l", output="a.csv", exit_code=0))
    assert build_messages(log.events)[1]["content"].startswith("a.csv")


def test_tool_argument_error_becomes_a_call_and_its_result() -> None:
    log = Log()
    log.llm()
    log.add(
        ErrorEvent(
            code="AGENT_TOOL_ARGUMENTS",
            message="Invalid arguments for terminal: command is required",
            tool_call_id="bad",
            tool_name="terminal",
            tool_arguments='{"cmd": "ls"}',
        )
    )
    action = log.add(CommandEvent(command="ls", tool_call_id="good"))
    log.add(
        ErrorEvent(
            code="AGENT_TOOL_FAILED", message="shell died", cause=action.id, tool_call_id="good"
        )
    )
    log.add(ErrorEvent(code="LLM_AUTHENTICATION", message="bad key"))  # not for the LLM
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    calls = messages[0]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["terminal", "terminal"]
    assert calls[0]["function"]["arguments"] == '{"cmd": "ls"}'
    assert "command is required" in messages[1]["content"]
    assert "shell died" in messages[2]["content"]
    assert len(messages) == 3


def test_agent_messages_and_ignored_events() -> None:
    log = Log()
    log.add(StatusEvent(status="READY"))
    log.user("hi")
    log.add(AgentStateEvent(state=AgentState.RUNNING))
    log.llm()
    log.add(MessageEvent(source="agent", text="Which file?"))
    log.user("sales.csv")
    assert build_messages(log.events) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Which file?"},
        {"role": "user", "content": "sales.csv"},
    ]


def test_empty_llm_turn_is_left_out() -> None:
    log = Log()
    log.user("hi")
    log.llm()
    log.user("hello?")
    assert [m["role"] for m in build_messages(log.events)] == ["user", "user"]


def test_long_observations_are_truncated_with_a_note() -> None:
    log = Log()
    log.llm()
    action = log.add(CommandEvent(command="cat big", tool_call_id="c"))
    log.add(CommandOutputEvent(cause=action.id, tool_call_id="c", output="x" * 50_000))
    text = build_messages(log.events, max_chars=2_000)[-1]["content"]
    assert len(text) < 2_200
    assert "characters omitted" in text
    assert text.endswith("]")  # the exit status line at the end survives


def test_truncate_keeps_short_text() -> None:
    assert truncate_for_llm("short", 100) == "short"
    cut = truncate_for_llm("a" * 60 + "b" * 60, 20)
    assert cut.startswith("a" * 10) and cut.endswith("b" * 10)
    assert "100 characters omitted" in cut


def test_action_without_tool_call_id_gets_a_stable_one() -> None:
    log = Log()
    log.llm()
    action = log.add(CommandEvent(command="ls"))
    log.add(CommandOutputEvent(cause=action.id, output="x"))
    messages = build_messages(log.events)
    assert_valid_sequence(messages)
    assert messages[0]["tool_calls"][0]["id"] == f"call_event_{action.id}"


def test_tool_call_for_rejects_unknown_kinds() -> None:
    assert tool_call_for(FileReadEvent(path="a", view_range=[1, 5]))[1]["view_range"] == [1, 5]
    with pytest.raises(ValueError, match="no tool"):
        tool_call_for(ActionBase(source="user", kind="custom"))


def test_rebuild_from_log_totals_and_current_task() -> None:
    log = Log()
    log.user("first task")
    log.add(AgentStateEvent(state=AgentState.RUNNING))
    log.llm(cost=0.5, tokens=(100, 10))
    log.add(AgentStateEvent(state=AgentState.AWAITING_USER_INPUT))
    log.user("second task")
    log.add(AgentStateEvent(state=AgentState.RUNNING))
    log.llm(cost=0.25, tokens=(200, 20))
    log.user("a message while running does not start a task")
    log.llm(cost=0.25, tokens=(300, 30))
    snapshot = rebuild_from_log(log.events)
    assert snapshot.metrics.prompt_tokens == 600
    assert snapshot.metrics.completion_tokens == 60
    assert snapshot.metrics.llm_calls == 3
    assert snapshot.metrics.cost == pytest.approx(1.0)
    assert snapshot.metrics.iterations == 2
    assert snapshot.task_cost == pytest.approx(0.5)
    assert snapshot.awaiting is None


def test_rebuild_from_log_finds_the_waiting_action() -> None:
    log = Log()
    log.llm()
    answered = log.add(CommandEvent(command="a", confirmation="awaiting"))
    log.add(ConfirmationEvent(cause=answered.id, confirmed=False))
    log.llm()
    waiting = log.add(CommandEvent(command="b", confirmation="awaiting"))
    assert rebuild_from_log(log.events).awaiting == waiting
    log.add(ConfirmationEvent(cause=waiting.id, confirmed=True))
    assert rebuild_from_log(log.events).awaiting is None


def test_system_prompt_fills_workspace_and_instructions() -> None:
    text = system_prompt(
        workspace="/data/ws", extra_instructions="Answer in French.", instructions="SKILL: pandas"
    )
    assert "/data/ws" in text
    assert "${workspace}" not in text
    assert "Answer in French." in text and "SKILL: pandas" in text
    for tool in ("terminal", "python", "file_editor", "think", "finish"):
        assert f"`{tool}`" in text
    bare = system_prompt(workspace="/w")
    assert "Instructions from the user" not in bare


def mixed_log() -> Log:
    """Every kind of turn: calls, results, a user message mid-call, rejections, errors."""
    log = Log()
    log.add(StatusEvent(status="READY"))
    log.user("start")
    log.llm()
    first = log.add(CommandEvent(command="make", tool_call_id="m", thought="building"))
    log.user("also check b.csv")
    log.add(CommandOutputEvent(cause=first.id, tool_call_id="m", output="ok", exit_code=0))
    log.llm()
    log.add(ThinkEvent(thought="two files", tool_call_id="t"))
    risky = log.add(CommandEvent(command="rm x", tool_call_id="r", confirmation="awaiting"))
    log.add(ConfirmationEvent(cause=risky.id, confirmed=False, reason="keep x"))
    log.llm()
    log.add(ErrorEvent(code="AGENT_TOOL_ARGUMENTS", message="bad", tool_call_id="b", tool_name="x"))
    log.add(MessageEvent(source="agent", text="Let me retry."))
    log.llm()
    log.add(PythonEvent(code="1+1", tool_call_id="p"))
    log.user("stop soon")
    log.llm()
    log.add(FinishEvent(message="done", tool_call_id="f"))
    log.user("one more thing")
    return log


def test_incremental_history_equals_the_whole_fold_at_every_split() -> None:
    """As the controller uses it: each step passes every event after the checkpoint."""
    events = mixed_log().events
    prompt = "You are a test."
    for first_cut in range(1, len(events) + 1):
        for second_cut in range(first_cut, len(events) + 1):
            history = IncrementalHistory(system_prompt=prompt, max_chars=50)
            for cut in (first_cut, second_cut, len(events)):
                got = history.messages(events[history.checkpoint + 1 : cut])
                assert got == build_messages(events[:cut], system_prompt=prompt, max_chars=50)


def test_incremental_history_refuses_events_before_its_checkpoint() -> None:
    events = mixed_log().events
    history = IncrementalHistory()
    history.messages(events)
    with pytest.raises(ValueError, match="checkpoint"):
        history.messages(events[:3])
