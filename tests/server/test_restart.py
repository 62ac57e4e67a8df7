"""Server restarts: running conversations are found again; dead runtimes turn to ERROR.

A restart here is what a server restart does to jupyter-convo: the extension shuts its
manager down (keeping runtimes, the default), then a new manager and store are built over
the same data dir and start from what they find there, behind the same HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from server_harness import WAIT, Api, kill_process_group, state_is

from jupyter_convo.events.schema import AgentStateEvent, ErrorEvent
from jupyter_convo.server.app import ConvoExtension
from jupyter_convo.server.handlers import SERVICES_KEY
from jupyter_convo.testing import ScriptedLLM, reply


@pytest.fixture
def convo_config() -> dict[str, Any]:
    return {"keep_runtimes_on_shutdown": True}


def extension_of(serverapp: Any) -> ConvoExtension:
    app = serverapp.extension_manager.extension_points["jupyter_convo"].app
    assert isinstance(app, ConvoExtension)
    return app


async def shut_down(serverapp: Any) -> ConvoExtension:
    """The extension's shutdown, as on server stop (runtimes are kept)."""
    extension = extension_of(serverapp)
    await extension.stop_extension()
    return extension


def start_again(serverapp: Any, extension: ConvoExtension) -> None:
    """A new manager and store over the same data dir; this time runtimes are stopped on
    the final shutdown, so the test leaves nothing running."""
    extension.keep_runtimes_on_shutdown = False
    extension.initialize_settings()
    serverapp.web_app.settings[SERVICES_KEY] = extension.services


def runtime_pid(data_dir: Path, conversation_id: str) -> int:
    record = json.loads((data_dir / "conversations" / conversation_id / "runtime.json").read_text())
    return int(record["pgid"] or record["pid"])


async def wait_exited(pid: int) -> None:
    """Until the process has exited (its pidfd becomes readable), bounded."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()
    loop.add_reader(fd, lambda: exited.done() or exited.set_result(None))
    try:
        await asyncio.wait_for(exited, WAIT)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_a_running_conversation_is_found_again_and_a_killed_one_shows_error(
    alice: Api, open_socket: Any, jp_serverapp: Any, scripted_llm: ScriptedLLM, convo_data_dir: Path
) -> None:
    scripted_llm.add_script([reply("First answer."), reply("Second answer.")], match="survivor")
    cid = (await alice.start("survivor conversation"))["conversation_id"]
    before = await open_socket(cid)
    await before.until(state_is("awaiting_user_input"))
    last_seen = before.events[-1].id
    pid = runtime_pid(convo_data_dir, cid)

    extension = await shut_down(jp_serverapp)
    await before.until_closed()  # subscribers are let go when the manager shuts down
    os.kill(pid, 0)  # the runtime outlived the shutdown
    start_again(jp_serverapp, extension)

    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "RUNNING"
    assert [r["conversation_id"] for r in await alice.get("runtimes")] == [cid]
    after = await open_socket(cid, after_id=last_seen)
    await alice.post(f"conversations/{cid}/messages", {"text": "again please"})
    answer = await after.until(lambda e: e.kind == "message" and e.source == "agent")
    assert answer.text == "Second answer."  # type: ignore[union-attr]
    assert after.events[0].id == last_seen + 1, "resumed right after the last event seen"

    kill_process_group(pid)
    died = await after.until(lambda e: e.kind == "error")
    assert isinstance(died, ErrorEvent) and died.code == "RUNTIME_DIED"
    # the agent loop is gone: the event stream and the metadata say so, not "running"
    gone = await after.until(lambda e: e.kind == "agent_state")
    assert isinstance(gone, AgentStateEvent) and gone.state.value == "error", gone
    assert gone.id == died.id + 1 and gone.reason.startswith("RUNTIME_DIED")
    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "ERROR" and meta["agent_state"] == "error"
    assert await alice.get("runtimes") == []
    texts = [
        e["text"]
        for e in (await alice.get(f"conversations/{cid}/events/search", kind="message"))["items"]
    ]
    assert texts == ["survivor conversation", "First answer.", "again please", "Second answer."]


async def test_a_runtime_killed_while_the_server_is_down_shows_error(
    alice: Api, open_socket: Any, jp_serverapp: Any, scripted_llm: ScriptedLLM, convo_data_dir: Path
) -> None:
    scripted_llm.add_script([reply("Working on it.")], match="doomed")
    cid = (await alice.start("doomed conversation"))["conversation_id"]
    socket = await open_socket(cid)
    await socket.until(state_is("awaiting_user_input"))
    count = (await alice.get(f"conversations/{cid}/events/count"))["count"]
    pid = runtime_pid(convo_data_dir, cid)

    extension = await shut_down(jp_serverapp)
    kill_process_group(pid)
    await wait_exited(pid)
    start_again(jp_serverapp, extension)

    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "ERROR"
    assert "RUNTIME_DIED" in meta["error"]
    events = (await alice.get(f"conversations/{cid}/events/search", limit=1000))["items"]
    assert len(events) == count + 2, "the log is intact, plus the death notice"
    assert events[-2]["kind"] == "error" and events[-2]["code"] == "RUNTIME_DIED"
    assert events[-1]["kind"] == "agent_state" and events[-1]["state"] == "error"
    assert meta["agent_state"] == "error"
    assert await alice.get("runtimes") == []
