"""Limits: running conversations per user, page sizes, batch sizes, upload size."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server_harness import Api, state_is
from test_routes import multipart, record, services_of

from jupyter_convo.events.schema import ErrorEvent
from jupyter_convo.testing import ScriptedLLM, reply

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture
def convo_config() -> dict[str, Any]:
    return {"max_concurrent_conversations": 1, "upload_max_bytes": UPLOAD_LIMIT}


async def test_starting_one_too_many_stops_the_oldest_with_an_error_event(
    alice: Api, bob: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("A here, waiting.")], match="first")
    scripted_llm.add_script([reply("B here, waiting.")], match="second")
    scripted_llm.add_script([reply("Bob here.")], match="bob's")
    oldest = (await alice.start("first conversation"))["conversation_id"]
    watcher = await open_socket(oldest)
    await watcher.until(state_is("awaiting_user_input"))
    theirs = (await bob.start("bob's conversation"))["conversation_id"]
    assert [r["conversation_id"] for r in await alice.get("runtimes")] == [oldest]

    newest = (await alice.start("second conversation"))["conversation_id"]
    error = await watcher.until(lambda e: e.kind == "error")
    assert isinstance(error, ErrorEvent)
    assert error.code == "AGENT_ERROR$TOO_MANY_CONVERSATIONS"
    assert [r["conversation_id"] for r in await alice.get("runtimes")] == [newest]
    stopped = await alice.get(f"conversations/{oldest}")
    assert stopped["status"] == "STOPPED"
    assert stopped["error"].startswith("AGENT_ERROR$TOO_MANY_CONVERSATIONS")
    # the limit is per user: bob's conversation runs on
    assert [r["conversation_id"] for r in await bob.get("runtimes")] == [theirs]


async def test_page_and_batch_sizes_are_bounded(alice: Api, jp_serverapp: Any) -> None:
    cid = record(services_of(jp_serverapp), "alice", title="Limits").id
    for route, params in [
        ("conversations/search", {"limit": 101}),
        ("conversations/search", {"limit": 0}),
        ("conversations/search", {"limit": "many"}),
        ("start-tasks/search", {"limit": 101}),
        (f"conversations/{cid}/events/search", {"limit": 1001}),
        (f"conversations/{cid}/events/search", {"limit": 0}),
    ]:
        error = await alice.error("GET", route, params=params)
        assert error.code == 400, (route, params, error)
        assert "limit" in error.message
    too_many = await alice.error("GET", "conversations", params={"ids": [cid] * 101})
    assert too_many.code == 400 and "ids" in too_many.message
    assert len((await alice.get("conversations/search", limit=100))["items"]) == 1
    assert (await alice.get(f"conversations/{cid}/events/search", limit=1000))["items"] == []


async def test_an_oversized_upload_is_refused_whole(alice: Api, jp_serverapp: Any) -> None:
    services = services_of(jp_serverapp)
    meta = record(services, "alice", title="Uploads")
    workspace = services.workspace_dir(meta)
    body, headers = multipart({"small.txt": b"ok", "big.bin": b"x" * (UPLOAD_LIMIT + 1)})
    error = await alice.error(
        "POST", f"conversations/{meta.id}/files", raw_body=body, headers=headers
    )
    assert error.code == 413 and str(UPLOAD_LIMIT) in error.message
    assert sorted(p.name for p in workspace.iterdir()) == []
    body, headers = multipart({"fits.bin": b"y" * (UPLOAD_LIMIT // 2)})
    result = await alice.call(
        "POST", f"conversations/{meta.id}/files", raw_body=body, headers=headers
    )
    assert result["uploaded"] == ["fits.bin"]


@pytest.mark.parametrize("convo_config", [{"max_concurrent_conversations": 3}])
async def test_the_limit_holds_for_starts_at_the_same_time(
    alice: Api, jp_serverapp: Any, scripted_llm: ScriptedLLM, convo_data_dir: Any
) -> None:
    """Six ``stream-start`` at once with a limit of three: three run, the three least
    recently active are stopped with the error event, none is left running over it."""
    scripted_llm.add_script([reply("racing to start")], match="racer")
    tasks = await asyncio.gather(*(alice.start(f"racer {n}") for n in range(6)))
    ids = [task["conversation_id"] for task in tasks]
    running = [r["conversation_id"] for r in await alice.get("runtimes")]
    assert len(running) == 3 and set(running) <= set(ids), running
    manager = services_of(jp_serverapp).manager
    assert await manager.get_running_agent_loops(user_id="alice") == set(running)
    alive = [
        cid for cid in ids if (convo_data_dir / "conversations" / cid / "runtime.json").exists()
    ]
    assert sorted(alive) == sorted(running), "no runtime process beyond the limit"
    for cid in set(ids) - set(running):
        meta = await alice.get(f"conversations/{cid}")
        assert meta["status"] == "STOPPED", meta
        assert meta["error"].startswith("AGENT_ERROR$TOO_MANY_CONVERSATIONS"), meta
