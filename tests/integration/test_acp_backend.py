"""The ACP backend through a real runtime, its agent a scripted ACP agent on the official SDK
(``jupyter_convo.testing.acp_agent``) run in the conversation's bubblewrap jail."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from test_jailed_tools import gone, marked

from jupyter_convo.agent.cassette import Cassette
from jupyter_convo.agent.confine import probe
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    AgentStateEvent,
    ConfirmationEvent,
    ErrorEvent,
    Event,
    LLMCallEvent,
    MessageEvent,
    PlanEvent,
    ThinkEvent,
    ToolCallEvent,
    ToolResultEvent,
)
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply
from jupyter_convo.testing.acp_agent import SCRIPT_ENV
from jupyter_convo.testing.echo_agent import write_agent_entry_point

if TYPE_CHECKING:
    from runtime_harness import RuntimeProcess, StartRuntime

pytestmark = pytest.mark.integration


@pytest.fixture
def bwrap() -> str:
    path, reason = probe("bwrap")
    if path is None:
        pytest.fail(f"the ACP backend runs its agent in bubblewrap: {reason}")
    return path


def state_is(*states: str) -> Any:
    return lambda e: isinstance(e, AgentStateEvent) and e.state.value in states


def acp_env(tmp_path: Path, script: dict[str, Any]) -> dict[str, str]:
    site = write_agent_entry_point(
        tmp_path / "site", "scripted-acp", "jupyter_convo.testing.acp_agent:ScriptedAcpAgent"
    )
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, SCRIPT_ENV: json.dumps(script)}


async def create(
    runtime: RuntimeProcess, cid: str, llm: Any, bwrap_path: str, message: str | None, **opts: Any
) -> Any:
    body = runtime.create_body(cid, llm, message, agent="scripted-acp", **opts)
    body["confinement"] = {"mechanism": "bubblewrap", "bwrap": bwrap_path}
    async with runtime.client() as client:
        return await client.post("/api/conversations", json=body)


def stored(runtime: RuntimeProcess, cid: str) -> list[Event]:
    with EventLog(runtime.conversation_dir(cid) / "events.jsonl", read_only=True) as log:
        return log.read()


async def test_updates_files_and_terminals_map_onto_events(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    outside = tmp_path / "outside.txt"
    script = {
        "turns": [
            [
                {"env": ["HOME", "JUPYTER_CONVO_SESSION_KEY"]},
                {"thought": "Let me plan."},
                {"message": "Hello, I will write ", "chunks": 3},
                {"message": "a note."},
                {"plan": [{"content": "write", "status": "in_progress"}, {"content": "run"}]},
                {"usage": {"used": 100, "size": 1000, "cost": 0.25}},
                {
                    "tool": {
                        "id": "w1",
                        "kind": "edit",
                        "title": "Write notes",
                        "path": "notes.txt",
                    },
                    "write": {"path": "notes.txt", "content": "first line\n"},
                },
                {"tool": {"id": "r1", "kind": "read", "title": "Read notes"}, "read": "notes.txt"},
                {
                    "tool": {"id": "c1", "kind": "execute", "title": "Copy"},
                    "terminal": {"command": "cp", "args": ["notes.txt", "notes"]},
                },
                {
                    "tool": {"id": "t1", "kind": "execute", "title": "Run"},
                    "terminal": {
                        "command": "sh",
                        "args": ["-c", "echo from-terminal; cat notes.txt"],
                    },
                },
                {
                    "tool": {"id": "x1", "kind": "edit", "title": "Escape"},
                    "write": {"path": str(outside), "content": "escaped"},
                },
                {"message": "All done."},
            ]
        ]
    }
    runtime = await start_runtime(env=acp_env(tmp_path, script))
    cid = "acp-updates"
    created = await create(runtime, cid, llm_config_for(scripted_llm), bwrap, "write a note")
    assert created.status_code == 201, created.text
    assert created.json()["agent"] == "scripted-acp"
    stream = await runtime.connect(cid)
    await stream.until(state_is("awaiting_user_input"), timeout=60)

    events = stored(runtime, cid)
    agent_texts = [e.text for e in events if isinstance(e, MessageEvent) and e.source == "agent"]
    # Chunks are gathered into one message per stretch of text.
    assert agent_texts[0] == "env: HOME"  # its private HOME; never the session key
    assert agent_texts[1] == "Hello, I will write a note."
    assert agent_texts[-1] == "All done."
    assert [e.thought for e in events if isinstance(e, ThinkEvent)] == ["Let me plan."]
    [plan] = [e for e in events if isinstance(e, PlanEvent)]
    assert [(s.content, s.status) for s in plan.entries] == [
        ("write", "in_progress"),
        ("run", "pending"),
    ]
    calls = {e.tool_call_id: e for e in events if isinstance(e, ToolCallEvent)}
    results = {e.tool_call_id: e for e in events if isinstance(e, ToolResultEvent)}
    assert set(calls) == set(results) == {"w1", "r1", "c1", "t1", "x1"}
    for call_id, result in results.items():
        assert result.cause == calls[call_id].id
    assert calls["w1"].tool_kind == "edit" and calls["w1"].locations[0].path == "notes.txt"
    assert results["w1"].status == "completed" and "+first line" in results["w1"].diff
    assert (runtime.conversation_dir(cid) / "workspace" / "notes.txt").read_text() == "first line\n"
    assert "first line" in results["r1"].output
    assert "from-terminal" in results["t1"].output and "exit 0" in results["t1"].output
    assert "first line" in results["t1"].output
    # fs/* never leaves the workspace.
    assert results["x1"].status == "failed" and "outside" in results["x1"].output
    assert not outside.exists()
    async with runtime.client() as client:
        info = (await client.get(f"/api/conversations/{cid}")).json()
    assert info["metrics"]["cost"] == 0.25
    assert info["metrics"]["prompt_tokens"] == 20 and info["metrics"]["completion_tokens"] == 10


async def test_permission_requests_go_through_confirmation(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    script = {
        "turns": [
            [
                {
                    "tool": {"id": "a", "kind": "edit", "title": "Write a"},
                    "permission": True,
                    "write": {"path": "a.txt", "content": "A"},
                },
                {
                    "tool": {"id": "b", "kind": "edit", "title": "Write b"},
                    "permission": True,
                    "write": {"path": "b.txt", "content": "B"},
                },
                {"message": "finished"},
            ]
        ]
    }
    runtime = await start_runtime(env=acp_env(tmp_path, script))
    cid = "acp-permission"
    llm = llm_config_for(scripted_llm)
    created = await create(runtime, cid, llm, bwrap, "write two files", confirmation_mode=True)
    assert created.status_code == 201, created.text
    stream = await runtime.connect(cid)
    asking = await stream.until(
        lambda e: isinstance(e, ToolCallEvent) and e.confirmation == "awaiting"
    )
    assert isinstance(asking, ToolCallEvent) and asking.title == "Write a"
    assert [(o.name, o.kind) for o in asking.options] == [
        ("Allow", "allow_once"),
        ("Reject", "reject_once"),
    ]
    await stream.until(state_is("awaiting_user_confirmation"))
    await stream.send({"kind": "confirmation", "action_id": asking.id, "confirmed": True})
    second = await stream.until(
        lambda e: isinstance(e, ToolCallEvent) and e.confirmation == "awaiting"
    )
    await stream.send(
        {"kind": "confirmation", "action_id": second.id, "confirmed": False, "reason": "no"}
    )
    await stream.until(state_is("awaiting_user_input"))
    workspace = runtime.conversation_dir(cid) / "workspace"
    assert (workspace / "a.txt").read_text() == "A"
    assert not (workspace / "b.txt").exists()
    events = stored(runtime, cid)
    answers = [(e.cause, e.confirmed) for e in events if isinstance(e, ConfirmationEvent)]
    assert answers == [(asking.id, True), (second.id, False)]
    results = {e.tool_call_id: e for e in events if isinstance(e, ToolResultEvent)}
    assert results["a"].status == "completed"
    assert results["b"].status == "failed" and "rejected" in results["b"].output


async def test_stop_cancels_the_turn_and_a_crash_is_an_error(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    marker = f"acp-marker-{uuid.uuid4().hex[:8]}"
    script = {"marker": marker, "turns": [[{"message": "working"}, {"hang": True}], [{"crash": 3}]]}
    runtime = await start_runtime(env=acp_env(tmp_path, script))
    cid = "acp-cancel"
    created = await create(runtime, cid, llm_config_for(scripted_llm), bwrap, "go")
    assert created.status_code == 201, created.text
    stream = await runtime.connect(cid)
    await stream.until(state_is("running"))
    assert marked(marker)
    await stream.send({"kind": "agent_state", "state": "stopped"})
    # The text gathered so far is logged when the cancelled turn ends.
    await stream.until(lambda e: isinstance(e, MessageEvent) and e.text == "working")
    await stream.until(state_is("stopped"))
    await stream.send({"kind": "message", "text": "again"})
    error = await stream.until(lambda e: isinstance(e, ErrorEvent))
    assert isinstance(error, ErrorEvent) and error.code == "ACP_AGENT_EXITED"
    assert "code 3" in error.message
    await stream.until(state_is("error"))
    await gone(marker)
    # The runtime still answers and stops cleanly.
    async with runtime.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/stop")).status_code == 200
    assert runtime.wait_exit() == 0


async def test_an_agent_that_never_initializes_fails_the_start_and_leaves_nothing(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    marker = f"acp-marker-{uuid.uuid4().hex[:8]}"
    runtime = await start_runtime(env=acp_env(tmp_path, {"marker": marker, "initialize": False}))
    llm = llm_config_for(scripted_llm)
    created = await create(runtime, "acp-mute", llm, bwrap, "hi", agent_start_timeout=3)
    assert created.status_code == 500
    assert "did not answer ACP initialize within 3 s" in created.json()["error"]
    errors = [e for e in stored(runtime, "acp-mute") if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["RUNTIME_START_FAILED"]
    await gone(marker)


async def test_the_agent_dies_with_its_runtime(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    marker = f"acp-marker-{uuid.uuid4().hex[:8]}"
    script = {"marker": marker, "turns": [[{"message": "working"}, {"hang": True}]]}
    runtime = await start_runtime(env=acp_env(tmp_path, script))
    created = await create(runtime, "acp-kill", llm_config_for(scripted_llm), bwrap, "go")
    assert created.status_code == 201, created.text
    stream = await runtime.connect("acp-kill")
    await stream.until(state_is("running"))
    assert marked(marker)
    os.kill(runtime.proc.pid, signal.SIGKILL)  # the runtime alone, not its group
    runtime.wait_exit()
    await gone(marker)


async def test_llm_calls_go_through_the_gateway_with_budget_and_record(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path, bwrap: str
) -> None:
    scripted_llm.add_script([reply("plain answer")], match="first question")
    scripted_llm.add_script([reply("streamed answer")], match="second question")
    llm = llm_config_for(scripted_llm, input_cost_per_token=0.001, output_cost_per_token=0.002)
    real_key = llm.api_key.get_secret_value() if llm.api_key else ""
    script = {
        "turns": [
            [{"find": real_key}, {"llm": "first question"}],
            # A new task: its budget starts again. Its second call is over it.
            [{"llm": "second question", "stream": True}, {"llm": "third question"}],
        ]
    }
    runtime = await start_runtime(env=acp_env(tmp_path, script))
    cid = "acp-gateway"
    created = await create(runtime, cid, llm, bwrap, "ask", max_budget_per_task=0.001)
    assert created.status_code == 201, created.text
    stream = await runtime.connect(cid)
    await stream.until(state_is("awaiting_user_input"), timeout=60)
    await stream.send({"kind": "message", "text": "more"})
    await stream.until(lambda e: isinstance(e, LLMCallEvent) and e.id > 0)
    await stream.until(state_is("awaiting_user_input"), timeout=60)
    events = stored(runtime, cid)
    said = [e.text for e in events if isinstance(e, MessageEvent) and e.source == "agent"]
    # The agent never saw the user's key; the provider got it (from the gateway), and the
    # configured model, not the name the agent asked for.
    assert said == [
        "found: Falseplain answer",
        "streamed answerllm error 402",  # the third call is over the task's budget
    ]
    requests = scripted_llm.requests
    assert len(requests) == 2 and {r["model"] for r in requests} == {llm.model}
    calls = [e for e in events if isinstance(e, LLMCallEvent)]
    assert len(calls) == 2 and all(c.prompt_tokens > 0 and c.cost > 0 for c in calls)
    [budget] = [e for e in events if isinstance(e, ErrorEvent)]
    assert budget.code == "AGENT_BUDGET_EXCEEDED"
    cassette = Cassette(runtime.conversation_dir(cid) / "cassette.jsonl").entries()
    assert len(cassette) == 2
    assert cassette[1].response is not None
    assert cassette[1].response["choices"][0]["message"]["content"] == "streamed answer"
    async with runtime.client() as client:
        info = (await client.get(f"/api/conversations/{cid}")).json()
    assert info["metrics"]["llm_calls"] == 2
    assert info["metrics"]["cost"] == pytest.approx(sum(c.cost for c in calls))
    text = (runtime.conversation_dir(cid) / "events.jsonl").read_text()
    assert real_key not in text


@pytest.mark.parametrize("load_session", [True, False])
async def test_a_restart_continues_the_session_or_primes_a_new_one(
    load_session: bool,
    start_runtime: StartRuntime,
    scripted_llm: ScriptedLLM,
    tmp_path: Path,
    bwrap: str,
) -> None:
    # Each run of the scripted agent starts its script again: turn 1 answers every time.
    script = {"load_session": load_session, "turns": [[{"echo_prompt": True}]]}
    env = acp_env(tmp_path, script)
    llm = llm_config_for(scripted_llm)
    cid = "acp-restart"
    first = await start_runtime(env=env)
    assert (await create(first, cid, llm, bwrap, "remember the word kumquat")).status_code == 201
    stream = await first.connect(cid)
    await stream.until(state_is("awaiting_user_input"))
    async with first.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/stop")).status_code == 200
    assert first.wait_exit() == 0
    first_run_last_id = stored(first, cid)[-1].id

    second = await start_runtime(env=env)
    assert (await create(second, cid, llm, bwrap, "which word?")).status_code == 201
    # Only the second run's events: the first run's own "awaiting" state is in the log too.
    stream = await second.connect(cid, after_id=first_run_last_id)
    await stream.until(state_is("awaiting_user_input"))
    events = stored(second, cid)
    said = [e.text for e in events if isinstance(e, MessageEvent) and e.source == "agent"]
    reasons = [e.reason for e in events if isinstance(e, AgentStateEvent)]
    assert "replayed history" not in said  # a loaded session's replay is not logged twice
    if load_session:
        assert said[-1].startswith("loaded scripted-") and said[-1].endswith(": which word?")
        assert "resumed with session/load" in reasons
    else:
        assert "kumquat" in said[-1] and said[-1].endswith("which word?")
        assert "resumed with a new session primed with the conversation so far" in reasons
