"""A runtime started with ``replay``: the recorded run is replayed, then the agent goes live."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runtime_harness import StartRuntime

from jupyter_convo.agent.history import build_messages
from jupyter_convo.events.schema import (
    AgentStateEvent,
    Event,
    MessageEvent,
    ReplayStepEvent,
    ReplaySummaryEvent,
)
from jupyter_convo.share.source import load_source, source_to_wire
from jupyter_convo.testing import ScriptedLLM, llm_config_for, reply

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "runs" / "sales-summary"
REPLAY_TIMEOUT = 90.0


def is_summary(event: Event) -> bool:
    return isinstance(event, ReplaySummaryEvent)


def awaiting_input(event: Event) -> bool:
    return isinstance(event, AgentStateEvent) and event.state.value == "awaiting_user_input"


async def test_an_inline_cassette_replay_then_a_live_message(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    runtime = await start_runtime()
    cid = "replay-inline"
    body = runtime.create_body(cid, llm_config_for(scripted_llm))
    body["replay"] = source_to_wire(load_source(EXAMPLE), "cassette")
    async with runtime.client() as client:
        created = await client.post("/api/conversations", json=body)
        assert created.status_code == 201, created.text
        stream = await runtime.connect(cid)
        summary = await stream.until(is_summary, timeout=REPLAY_TIMEOUT)
        assert isinstance(summary, ReplaySummaryEvent)
        assert (summary.mode, summary.steps, summary.reproduced) == ("cassette", 9, 9), [
            e.diff for e in stream.events if isinstance(e, ReplayStepEvent) and e.diff
        ]
        assert summary.source_conversation_id == "example-sales-summary"
        assert scripted_llm.requests == []
        if not any(awaiting_input(e) for e in stream.events[-3:]):
            await stream.until(awaiting_input, timeout=REPLAY_TIMEOUT)

        history = build_messages(stream.events)
        answered = sum(1 for m in history if m["role"] == "assistant")
        scripted_llm.add_script([reply("unused")] * answered + [reply("Live after the replay.")])
        sent = await client.post(
            f"/api/conversations/{cid}/events", json={"kind": "message", "text": "And now?"}
        )
        assert sent.status_code == 200, sent.text
        answer = await stream.until(
            lambda e: isinstance(e, MessageEvent) and e.source == "agent" and "Live" in e.text
        )
        assert isinstance(answer, MessageEvent) and answer.text == "Live after the replay."
    stream.close()


async def test_a_replay_from_a_path_in_the_conversation_folder(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    runtime = await start_runtime()
    cid = "replay-path"
    shutil.copytree(EXAMPLE, runtime.conversation_dir(cid) / "replay-source")
    body = runtime.create_body(cid, llm_config_for(scripted_llm))
    body["replay"] = {"mode": "actions", "source": "replay-source"}
    async with runtime.client() as client:
        created = await client.post("/api/conversations", json=body)
        assert created.status_code == 201, created.text
    stream = await runtime.connect(cid)
    summary = await stream.until(is_summary, timeout=REPLAY_TIMEOUT)
    assert isinstance(summary, ReplaySummaryEvent)
    assert (summary.mode, summary.steps, summary.reproduced) == ("actions", 9, 9)
    steps = [e for e in stream.events if isinstance(e, ReplayStepEvent)]
    assert [s.verdict for s in steps] == ["reproduced"] * 9
    summary_text = (runtime.conversation_dir(cid) / "workspace" / "summary.txt").read_text()
    assert summary_text.endswith("# skipped: 2024-02-11 (amount n/a)\n")
    stream.close()


BAD_REPLAYS = [
    ({"mode": "sideways", "source": "x"}, "replay.mode"),
    ({"mode": "actions"}, "give either source (a path) or events (inline)"),
    ({"source": "nothing-here"}, "nothing-here does not exist"),
    ({"events": [{"kind": "teleport"}]}, "replay.events[0] is not a valid event"),
]


async def test_a_bad_replay_request_is_a_400_naming_the_problem(
    start_runtime: StartRuntime, scripted_llm: ScriptedLLM
) -> None:
    runtime = await start_runtime()
    body = runtime.create_body("replay-bad", llm_config_for(scripted_llm))
    async with runtime.client() as client:
        for replay, message in BAD_REPLAYS:
            response = await client.post("/api/conversations", json={**body, "replay": replay})
            assert response.status_code == 400, (replay, response.text)
            assert message in response.text, (replay, response.text)
    assert not (runtime.conversation_dir("replay-bad") / "events.jsonl").exists()
