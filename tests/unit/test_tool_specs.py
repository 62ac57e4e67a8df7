"""The tool set as the LLM sees it (specs, argument parsing) and the output shaping
helpers; nothing here starts a shell or a kernel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.agent.tools import Tool, ToolArgumentError, build_tools
from jupyter_convo.agent.tools.env import agent_environment
from jupyter_convo.agent.tools.terminal import shell_environment
from jupyter_convo.agent.tools.text import (
    clean_terminal_output,
    join_cut,
    truncate_middle,
)
from jupyter_convo.agent.workspace import Workspace
from jupyter_convo.events.schema import CommandEvent, FinishEvent, PythonEvent, ThinkEvent


@pytest.fixture
def tools(tmp_path: Path) -> dict[str, Tool]:
    settings = AgentSettings(command_timeout=45, python_timeout=90)
    return {tool.name: tool for tool in build_tools(Workspace(tmp_path), settings)}


def test_build_tools_gives_the_five_tools(tools: dict[str, Tool]) -> None:
    assert list(tools) == ["terminal", "python", "file_editor", "think", "finish"]


def test_specs_are_json_function_tools(tools: dict[str, Tool]) -> None:
    for name, tool in tools.items():
        spec = tool.spec()
        json.dumps(spec)  # sent as is to the Chat Completions API
        assert spec["type"] == "function"
        function = spec["function"]
        assert function["name"] == name
        assert len(function["description"]) > 80
        parameters = function["parameters"]
        assert parameters["type"] == "object"
        assert set(parameters["required"]) <= set(parameters["properties"])
        has_risk = "security_risk" in parameters["properties"]
        assert has_risk == (name not in ("think", "finish"))
        if has_risk:
            assert "security_risk" in parameters["required"]


def test_specs_state_the_configured_timeouts(tools: dict[str, Tool]) -> None:
    assert "45 s" in tools["terminal"].spec()["function"]["description"]
    assert "90 s" in tools["python"].spec()["function"]["description"]


def test_terminal_parse(tools: dict[str, Tool]) -> None:
    action = tools["terminal"].parse(
        {"command": "ls", "timeout": "12.5", "security_risk": "low"}, tool_call_id="t1"
    )
    assert isinstance(action, CommandEvent)
    assert (action.command, action.timeout, action.security_risk) == ("ls", 12.5, "low")
    assert action.tool_call_id == "t1"
    bare = tools["terminal"].parse({"command": "ls"}, tool_call_id=None)
    assert isinstance(bare, CommandEvent)
    assert (bare.timeout, bare.security_risk) == (None, "unknown")


def test_python_parse(tools: dict[str, Tool]) -> None:
    action = tools["python"].parse(
        {"code": "1 + 1", "timeout": 3, "security_risk": "high"}, tool_call_id="p1"
    )
    assert isinstance(action, PythonEvent)
    assert (action.code, action.timeout, action.security_risk) == ("1 + 1", 3.0, "high")


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("terminal", {}, "missing required argument 'command'"),
        ("terminal", {"command": ""}, "command must not be empty"),
        ("terminal", {"command": ["ls"]}, "command must be a string"),
        ("terminal", {"command": "ls", "timeout": 0}, "timeout must be a positive"),
        ("terminal", {"command": "ls", "timeout": "soon"}, "timeout must be a positive"),
        ("terminal", {"command": "ls", "timeout": float("inf")}, "timeout must be a positive"),
        ("terminal", {"command": "ls", "security_risk": "none"}, "security_risk must be"),
        ("python", {}, "missing required argument 'code'"),
        ("python", {"code": "1", "timeout": -1}, "timeout must be a positive"),
        ("python", {"code": "1", "security_risk": 2}, "security_risk must be"),
        ("think", {}, "missing required argument 'thought'"),
        ("finish", {"message": 3}, "message must be a string"),
    ],
)
def test_parse_refuses_bad_arguments(
    tools: dict[str, Tool], tool: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolArgumentError, match=message):
        tools[tool].parse(arguments, tool_call_id=None)


async def test_think_and_finish_only_make_events(tools: dict[str, Tool]) -> None:
    think = tools["think"].parse({"thought": "check dtypes first"}, tool_call_id="k")
    assert isinstance(think, ThinkEvent)
    assert (think.thought, think.tool_call_id) == ("check dtypes first", "k")
    assert await tools["think"].execute(think) is None
    finish = tools["finish"].parse({"message": "done: see report.md"}, tool_call_id="f")
    assert isinstance(finish, FinishEvent)
    assert finish.message == "done: see report.md"
    assert await tools["finish"].execute(finish) is None


def test_truncate_middle_keeps_head_and_tail() -> None:
    assert truncate_middle("short", 10) == ("short", False)
    text = "".join(f"{n:04d}\n" for n in range(1000))  # 5000 characters
    cut, truncated = truncate_middle(text, 100)
    assert truncated
    assert cut.startswith("0000\n0001\n")
    assert cut.endswith("0998\n0999\n")
    assert "[... 4900 characters cut from the middle of this output (5000 in all) ...]" in cut


def test_join_cut_counts_what_was_dropped_while_capturing() -> None:
    text = join_cut("a" * 80, "b" * 80, 100, dropped=1000)
    assert text.startswith("a" * 50 + "\n[... 1060 characters cut")
    assert "(1160 in all)" in text
    assert text.endswith("b" * 50)


def test_clean_terminal_output() -> None:
    assert clean_terminal_output("\x1b[01;34mdata\x1b[0m\n") == "data\n"
    assert clean_terminal_output("10%\r50%\r100%\ndone\r\n") == "100%\ndone\n"
    assert clean_terminal_output("\x1b]0;title\x07plain") == "plain"


def test_agent_environment_hides_our_variables_and_adds_secrets() -> None:
    settings = AgentSettings(
        secrets={"DB_PASSWORD": SecretStr("hunter2-long"), "not valid": SecretStr("xxxxxxx")}
    )
    base = {"PATH": "/bin", "JUPYTER_CONVO_SESSION_KEY": "k", "HOME": "/home/u"}
    env = agent_environment(settings, base)
    assert env == {"PATH": "/bin", "HOME": "/home/u", "DB_PASSWORD": "hunter2-long"}


def test_shell_environment_turns_off_pagers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGER", "less")
    monkeypatch.setenv("BASH_ENV", "/etc/profile")
    env = shell_environment(AgentSettings())
    assert (env["PAGER"], env["GIT_PAGER"], env["TERM"]) == ("cat", "cat", "dumb")
    assert "BASH_ENV" not in env
