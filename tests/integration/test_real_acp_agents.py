"""The `agents` tier: real ACP agents from npm (OpenCode, Qwen Code) in a real runtime, in
the bubblewrap jail, their LLM the scripted one behind the gateway.

Run by ``scripts/test.sh`` after ``scripts/install-agents.sh`` (it sets
``CONVO_AGENTS_TIER=1``); skipped otherwise, saying why.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from test_jailed_tools import gone

from jupyter_convo.agent.confine import probe
from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import AgentStateEvent, LLMCallEvent, MessageEvent
from jupyter_convo.runtime.agents.registry import KNOWN_AGENTS
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply

if TYPE_CHECKING:
    from runtime_harness import StartRuntime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("CONVO_AGENTS_TIER") != "1",
        reason="real npm agents run in the agents tier (scripts/test.sh, CONVO_AGENTS_TIER=1)",
    ),
]


@pytest.mark.parametrize("name", sorted(KNOWN_AGENTS))
async def test_a_real_agent_answers_through_the_gateway_in_the_jail(
    name: str, start_runtime: StartRuntime, scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    if KNOWN_AGENTS[name].find() is None:
        pytest.fail(f"{name} is not installed: run scripts/install-agents.sh")
    bwrap, reason = probe("bwrap")
    assert bwrap is not None, reason
    task = f"say hello {uuid.uuid4().hex[:8]}"
    scripted_llm.add_script([reply(f"Hello from {name}!")], match=task)
    scripted_llm.add_script([reply("A title")])  # titles and other side requests
    llm = llm_config_for(scripted_llm)
    real_key = llm.api_key.get_secret_value() if llm.api_key else ""
    runtime = await start_runtime()
    cid = f"real-{name}"
    body: dict[str, Any] = runtime.create_body(cid, llm, task, agent=name)
    body["confinement"] = {"mechanism": "bubblewrap", "bwrap": bwrap}
    # The agent boots during the bind (npm agents take seconds; more on a busy machine).
    async with httpx.AsyncClient(
        base_url=runtime.base_url, headers=runtime.headers(), timeout=180
    ) as client:
        created = await client.post("/api/conversations", json=body)
    assert created.status_code == 201, created.text + runtime.log_text()[-3000:]
    stream = await runtime.connect(cid)
    answer = await stream.until(
        lambda e: isinstance(e, MessageEvent) and e.source == "agent", timeout=180
    )
    assert isinstance(answer, MessageEvent) and f"Hello from {name}!" in answer.text
    await stream.until(
        lambda e: isinstance(e, AgentStateEvent) and e.state.value == "awaiting_user_input",
        timeout=60,
    )
    directory = runtime.conversation_dir(cid)
    with EventLog(directory / "events.jsonl", read_only=True) as log:
        events = log.read()
    assert any(isinstance(e, LLMCallEvent) and e.prompt_tokens > 0 for e in events)
    assert {r["model"] for r in scripted_llm.requests} == {llm.model}
    # The user's key is nowhere the agent could read: not its config, its HOME, its log.
    for path in (directory / "home").rglob("*"):
        if path.is_file():
            assert real_key.encode() not in path.read_bytes(), path
    async with runtime.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/stop")).status_code == 200
    assert runtime.wait_exit() == 0
    await gone(str(directory / "workspace"))  # no process of its jail is left
