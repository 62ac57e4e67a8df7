"""One channel: while a runtime runs, the server talks to it only over its HTTP/WS API.

The runtime here keeps its conversation under another root than the server's
(``jupyter_convo.testing.separate_root``): the server's folder of the conversation never
gets an event log or the agent's files, as with a runtime on another machine. Whatever the
server shows of the running conversation (its events live and caught up, searches and
counts, its metadata, its workspace) therefore came over the runtime's routes; a read of the
server's own files would find nothing.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from server_harness import Api, state_is
from test_routes import multipart
from traitlets.config import Config

from jupyter_convo.testing import ScriptedLLM, reply, tool_call
from jupyter_convo.testing.separate_root import SeparateRootManager


@pytest.fixture
def runtime_root(tmp_path: Path) -> Path:
    root = tmp_path / "runtime-side"
    root.mkdir()
    return root


@pytest.fixture
def convo_config() -> dict[str, Any]:
    return {"manager_class": SeparateRootManager}


@pytest.fixture
def jp_server_config(jp_server_config: Any, runtime_root: Path) -> Any:
    jp_server_config["SeparateRootSandbox"] = Config({"runtime_root": str(runtime_root)})
    return jp_server_config


async def test_a_running_conversation_is_seen_only_through_its_runtime(
    alice: Api,
    open_socket: Any,
    scripted_llm: ScriptedLLM,
    convo_data_dir: Path,
    runtime_root: Path,
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo made-remotely > note.txt"}),
            reply("first answer"),
            reply("second answer"),
        ],
        match="one channel",
    )
    cid = (await alice.start("one channel please"))["conversation_id"]
    watcher = await open_socket(cid)
    await watcher.until(state_is("awaiting_user_input"))

    # The two views of the conversation's folder: the runtime's has the log and the file,
    # the server's has neither.
    server_side = convo_data_dir / "conversations" / cid
    runtime_side = runtime_root / cid
    assert (runtime_side / "events.jsonl").is_file()
    assert (runtime_side / "workspace" / "note.txt").read_text() == "made-remotely\n"
    assert not (server_side / "events.jsonl").exists()
    assert not (server_side / "workspace" / "note.txt").exists()

    # Stored events: all of them to a new watcher, the rest after an id to another.
    ids = [event.id for event in watcher.events]
    assert ids == list(range(len(ids))) and len(ids) > 5
    late = await open_socket(cid, after_id=3)
    await late.until(lambda event: event.id == ids[-1])
    assert [event.id for event in late.events] == ids[4:]

    # Search and count answered by the runtime, filters included.
    page = await alice.get(f"conversations/{cid}/events/search", limit=1000)
    assert [item["id"] for item in page["items"]] == ids
    assert (await alice.get(f"conversations/{cid}/events/count"))["count"] == len(ids)
    commands = await alice.get(f"conversations/{cid}/events/search", kind="command")
    assert [item["command"] for item in commands["items"]] == ["echo made-remotely > note.txt"]
    newest = await alice.get(f"conversations/{cid}/events/search", reverse=True, limit=2)
    assert [item["id"] for item in newest["items"]] == ids[:-3:-1]
    bad = await alice.error("GET", f"conversations/{cid}/events/search", params={"kind": "dance"})
    assert bad.code == 400 and "dance" in bad.message

    # Metadata follows the relayed events.
    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "RUNNING" and meta["agent_state"] == "awaiting_user_input"
    assert meta["last_event_id"] == ids[-1]

    # The workspace: listed, read, uploaded into and zipped by the runtime.
    assert "note.txt" in await alice.get(f"conversations/{cid}/files")
    content = await alice.get(f"conversations/{cid}/files/content", path="note.txt")
    assert content["content"] == "made-remotely\n"
    body, headers = multipart({"data/in.csv": b"a,b\n1,2\n"})
    uploaded = await alice.call(
        "POST", f"conversations/{cid}/files", raw_body=body, headers=headers
    )
    assert uploaded["uploaded"] == ["data/in.csv"]
    assert (runtime_side / "workspace" / "data" / "in.csv").read_bytes() == b"a,b\n1,2\n"
    assert not (server_side / "workspace" / "data").exists()
    archive = await alice.raw("GET", f"conversations/{cid}/workspace.zip")
    names = zipfile.ZipFile(io.BytesIO(archive.body)).namelist()
    assert {"note.txt", "data/in.csv"} <= set(names)

    # Live again: a message in, the answer relayed to both watchers.
    await alice.post(f"conversations/{cid}/messages", {"text": "and now?"})
    await late.until(lambda event: getattr(event, "text", None) == "second answer")
    last = await watcher.until(state_is("awaiting_user_input"))
    assert last.id > ids[-1]
    assert (await alice.get(f"conversations/{cid}/events/count"))["count"] == last.id + 1
    assert not (server_side / "events.jsonl").exists()
