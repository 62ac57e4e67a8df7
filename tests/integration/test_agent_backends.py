"""The agent-backend seam through a real runtime: the built-in agent is one backend, another
package's backend plugs in with one entry point, the choice sticks across restarts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import AgentStateEvent, ErrorEvent, MessageEvent, StatusEvent
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply
from jupyter_convo.testing.echo_agent import ECHO_PREFIX, write_agent_entry_point

if TYPE_CHECKING:
    from runtime_harness import StartRuntime

pytestmark = pytest.mark.integration


def echo_env(tmp_path: Path) -> dict[str, str]:
    """A runtime environment where package ``convo-agent-echo`` registers backend ``echo``."""
    site = write_agent_entry_point(
        tmp_path / "site", "echo", "jupyter_convo.testing.echo_agent:EchoAgent"
    )
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def agents_started(path: Path) -> list[str | None]:
    with EventLog(path, read_only=True) as log:
        return [
            e.agent
            for e in log.read()
            if isinstance(e, StatusEvent) and e.status == "STARTING_RUNTIME"
        ]


async def test_builtin_agent_is_the_default_backend(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("hello there")])
    runtime = await start_runtime()
    info = await runtime.create("builtin-default", llm_config_for(scripted_llm), "hi")
    assert info["agent"] == "builtin"
    stream = await runtime.connect("builtin-default")
    answer = await stream.until(lambda e: isinstance(e, MessageEvent) and e.source == "agent")
    assert isinstance(answer, MessageEvent) and answer.text == "hello there"
    log_path = runtime.conversation_dir("builtin-default") / "events.jsonl"
    assert agents_started(log_path) == ["builtin"]


async def test_backend_from_an_entry_point_runs_and_sticks_across_a_restart(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    env = echo_env(tmp_path)
    cid = "echo-conv"
    llm = llm_config_for(scripted_llm)
    runtime = await start_runtime(env=env)
    info = await runtime.create(cid, llm, "first words", agent="echo")
    assert info["agent"] == "echo"
    stream = await runtime.connect(cid)
    await stream.until(lambda e: isinstance(e, MessageEvent) and e.source == "agent")
    await stream.send({"kind": "message", "text": "second"})
    answer = await stream.until(
        lambda e: isinstance(e, MessageEvent) and e.source == "agent" and "second" in e.text
    )
    assert isinstance(answer, MessageEvent) and answer.text == ECHO_PREFIX + "second"
    async with runtime.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/stop")).status_code == 200
    await stream.until(lambda e: isinstance(e, StatusEvent) and e.status == "STOPPED")
    assert runtime.wait_exit() == 0
    assert scripted_llm.requests == []  # the echo backend never called the LLM

    # A restart that names no agent continues with the one the log says it ran with.
    again = await start_runtime(env=env)
    info = await again.create(cid, llm, "third")
    assert info["agent"] == "echo"
    stream = await again.connect(cid)
    await stream.until(
        lambda e: isinstance(e, MessageEvent) and e.source == "agent" and "third" in e.text
    )
    log_path = again.conversation_dir(cid) / "events.jsonl"
    assert agents_started(log_path) == ["echo", "echo"]
    with EventLog(log_path, read_only=True) as log:
        agent_texts = [
            e.text for e in log.read() if isinstance(e, MessageEvent) and e.source == "agent"
        ]
        states = [e.state.value for e in log.read() if isinstance(e, AgentStateEvent)]
    assert agent_texts == [ECHO_PREFIX + t for t in ("first words", "second", "third")]
    assert "stopped" in states


async def test_unknown_backend_fails_the_start_naming_the_installed_ones(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    runtime = await start_runtime()
    body = runtime.create_body("no-such", llm_config_for(scripted_llm), "hi", agent="nope")
    async with runtime.client() as client:
        response = await client.post("/api/conversations", json=body)
    assert response.status_code == 500
    assert "unknown agent 'nope'" in response.json()["error"]
    assert "builtin" in response.json()["error"]
    with EventLog(runtime.conversation_dir("no-such") / "events.jsonl", read_only=True) as log:
        errors = [e for e in log.read() if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["RUNTIME_START_FAILED"]


async def test_a_known_agent_that_is_not_installed_says_how_to_install_it(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    runtime = await start_runtime(
        env={"JUPYTER_CONVO_AGENTS_PATH": str(tmp_path / "none"), "PATH": "/usr/bin:/bin"}
    )
    body = runtime.create_body("no-qwen", llm_config_for(scripted_llm), "hi", agent="qwen")
    async with runtime.client() as client:
        response = await client.post("/api/conversations", json=body)
    assert response.status_code == 500
    error = response.json()["error"]
    assert "Qwen Code agent is not installed" in error
    assert "npm install --prefix /opt/convo-agents @qwen-code/qwen-code" in error
