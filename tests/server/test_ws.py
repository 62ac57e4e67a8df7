"""The event relay: many subscribers, late ones resuming, inputs over the socket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_harness import Api, EventSocket, state_is
from tornado.httpclient import HTTPClientError

from jupyter_convo.events.schema import ErrorEvent, Event, event_to_json
from jupyter_convo.testing import ScriptedLLM, reply, tool_call


def agent_message(event: Event) -> bool:
    return event.kind == "message" and event.source == "agent"


def as_json(socket: EventSocket) -> list[str]:
    return [event_to_json(event) for event in socket.events]


async def test_two_subscribers_and_a_late_one_resuming_with_after_id(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo one", "security_risk": "low"}),
            reply("Done with one. Shall I go on?"),
            tool_call("finish", {"message": "all done"}),
        ],
        match="relay",
    )
    task = await alice.post("conversations", {"initial_message": "relay test"})
    cid = task["conversation_id"]
    first = await open_socket(cid)
    second = await open_socket(cid)
    await first.until(state_is("awaiting_user_input"))
    await second.until(state_is("awaiting_user_input"))
    assert as_json(first) == as_json(second)
    ids = [event.id for event in first.events]
    assert ids == list(range(len(ids))), "from the first event, in order, no gaps"

    resume_after = first.events[len(first.events) // 2].id
    late = await open_socket(cid, after_id=resume_after)
    await late.until(state_is("awaiting_user_input"))
    assert as_json(late) == as_json(first)[resume_after + 1 :]

    # the late subscriber steers; everyone sees the rest
    await late.send({"kind": "message", "text": "yes, finish"})
    for socket in (first, second, late):
        await socket.until(state_is("finished"))
    assert as_json(first) == as_json(second)
    assert as_json(late) == as_json(first)[resume_after + 1 :]
    messages = [e for e in first.events if e.kind == "message" and e.source == "user"]
    assert [m.text for m in messages] == ["relay test", "yes, finish"]  # type: ignore[union-attr]
    stored = await alice.get(f"conversations/{cid}/events/search", limit=1000)
    assert [e["id"] for e in stored["items"]][: len(first.events)] == [e.id for e in first.events]


async def test_bad_frames_are_answered_and_the_socket_stays_open(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [reply("Hi! What shall I do?"), reply("Noted."), reply("Back again.")], match="frames"
    )
    task = await alice.start("frames test")
    cid = task["conversation_id"]
    socket = await open_socket(cid)
    await socket.until(state_is("awaiting_user_input"))

    await socket.send("{not json")
    error = await socket.until(lambda e: e.kind == "error")
    assert isinstance(error, ErrorEvent)
    assert error.id == -1 and error.code == "INVALID_INPUT"
    await socket.send({"kind": "confirmation", "confirmed": True})
    error = await socket.until(lambda e: e.kind == "error")
    assert isinstance(error, ErrorEvent) and "action_id" in error.message

    await socket.send({"kind": "message", "text": "note this"})
    noted = await socket.until(agent_message)
    assert noted.text == "Noted."  # type: ignore[union-attr]

    await alice.post(f"conversations/{cid}/stop")
    await socket.send({"kind": "agent_state", "state": "paused"})
    error = await socket.until(lambda e: e.kind == "error" and e.id == -1)
    assert isinstance(error, ErrorEvent) and error.code == "CONVERSATION_NOT_RUNNING"

    # a message restarts the stopped conversation, as over REST
    await socket.send({"kind": "message", "text": "come back"})
    back = await socket.until(agent_message)
    assert back.text == "Back again."  # type: ignore[union-attr]
    assert (await alice.get(f"conversations/{cid}"))["status"] == "RUNNING"


async def test_the_log_is_served_while_the_runtime_is_down(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([tool_call("finish", {"message": "finished early"})], match="down")
    task = await alice.start("down test")
    cid = task["conversation_id"]
    live = await open_socket(cid)
    await live.until(state_is("finished"))
    await alice.post(f"conversations/{cid}/stop")
    stored = (await alice.get(f"conversations/{cid}/events/search", limit=1000))["items"]

    replay = await open_socket(cid)
    for _ in stored:
        assert await replay.next_event() is not None
    assert [event.id for event in replay.events] == [e["id"] for e in stored]
    assert replay.events[-1].id == stored[-1]["id"]

    tail = await open_socket(cid, after_id=stored[-2]["id"])
    event = await tail.next_event()
    assert event is not None and event.id == stored[-1]["id"]


async def test_socket_refusals(alice: Api, open_socket: Any, scripted_llm: ScriptedLLM) -> None:
    with pytest.raises(HTTPClientError) as missing:
        await open_socket("no-such-conversation")
    assert missing.value.code == 404
    task = await alice.post("conversations", {})
    with pytest.raises(HTTPClientError) as bad:
        await open_socket(task["conversation_id"], after_id="soon")
    assert bad.value.code == 400
    with pytest.raises(HTTPClientError) as negative:
        await open_socket(task["conversation_id"], after_id=-5)
    assert negative.value.code == 400
    for refused in (missing, bad, negative):  # JSON like every route, not Jupyter's page
        response = refused.value.response
        assert response is not None
        assert response.headers["Content-Type"].startswith("application/json")
        assert json.loads(response.body)["message"]


async def test_deleting_a_watched_conversation_closes_its_sockets_with_4404(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    """The documented close code of a deleted conversation, running or stopped."""
    scripted_llm.add_script([reply("watched, then deleted")], match="watched")
    for stop_first in (False, True):
        cid = (await alice.start(f"watched {stop_first}"))["conversation_id"]
        watchers = [await open_socket(cid), await open_socket(cid)]
        await watchers[0].until(state_is("awaiting_user_input"))
        if stop_first:
            await alice.post(f"conversations/{cid}/stop")
        await alice.call("DELETE", f"conversations/{cid}")
        for watcher in watchers:
            await watcher.until_closed()
            assert watcher.connection.close_code == 4404, (stop_first, watcher.kinds())
            assert watcher.connection.close_reason == "conversation deleted"
