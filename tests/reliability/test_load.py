"""Load: 20 conversations at once, each streaming over 1,000 events to 3 subscribers.

Each conversation's script is 20 LLM answers of 50 ``think`` calls (cheap events, made as
fast as the agent can), the first held by a gate until its 3 subscribers are connected.
Afterwards every subscriber has seen exactly the log: every id once, in order, no gap, the
same JSON as stored.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from live_server import ALICE, LiveServer
from reliability_helpers import Subscriber, astart, state_is, stored_events

from jupyter_convo.testing import ScriptedLLM, call, reply, tool_calls

pytestmark = pytest.mark.timeout(300)  # bounded waits inside; this is the backstop
CONVERSATIONS = 20
SUBSCRIBERS = 3
ANSWERS = 20
CALLS = 50  # 20 x (50 thinks + llm_call) + the rest: over 1,000 events each
WAIT = 240.0


def burst(name: str) -> list[Any]:
    answers: list[Any] = [
        tool_calls(
            [call("think", {"thought": f"{name} {step}.{n}"}) for n in range(CALLS)],
            gate=name if step == 0 else None,
        )
        for step in range(ANSWERS)
    ]
    return [*answers, reply(f"{name} done")]


async def run_one(server: LiveServer, llm: ScriptedLLM, index: int) -> tuple[str, list[Subscriber]]:
    name = f"load-{index}-{server.port}"
    llm.add_script(burst(name), match=name)
    async with server.async_client(ALICE, timeout=WAIT) as client:
        cid = await astart(client, name, max_iterations=ANSWERS + 10)
    subscribers = [await Subscriber.connect(server, cid) for _ in range(SUBSCRIBERS)]
    return cid, subscribers


async def test_twenty_conversations_stream_every_event_to_every_subscriber(
    server: LiveServer, llm: ScriptedLLM
) -> None:
    started = await asyncio.gather(*(run_one(server, llm, n) for n in range(CONVERSATIONS)))
    for index in range(CONVERSATIONS):
        llm.open_gate(f"load-{index}-{server.port}")
    done = state_is("awaiting_user_input", "error", "finished")
    await asyncio.wait_for(
        asyncio.gather(
            *(
                subscriber.until(done, timeout=WAIT)
                for _, subscribers in started
                for subscriber in subscribers
            )
        ),
        WAIT,
    )
    for cid, subscribers in started:
        log = stored_events(server.data_dir, cid)
        assert len(log) > 1000, f"{cid}: only {len(log)} events"
        assert [e["id"] for e in log] == list(range(len(log))), f"{cid}: the log has gaps"
        assert not [e for e in log if e["kind"] == "error"], f"{cid}: {log[-3:]}"
        for subscriber in subscribers:
            seen = subscriber.logged()
            ids = [event["id"] for event in seen]
            assert ids == list(range(len(ids))), f"{cid}: lost, duplicated or reordered ids"
            assert len(ids) <= len(log)
            assert [json.dumps(e, sort_keys=True) for e in seen] == [
                json.dumps(e, sort_keys=True) for e in log[: len(seen)]
            ], f"{cid}: a subscriber saw other content than the log"
            assert seen[-1]["kind"] == "agent_state" and seen[-1]["state"] == "awaiting_user_input"
            subscriber.close()
