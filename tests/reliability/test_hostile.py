"""Hostile input: path traversal, oversized bodies, slow clients, WebSocket floods.

Each attack runs against a live server while a well-behaved client checks that other users
are not harmed: their requests are answered and their event streams complete.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import PurePosixPath
from typing import Any

import pytest
from live_server import ALICE, BOB, LiveServer
from reliability_helpers import Subscriber, astart, start, state_is, stored_events

from jupyter_convo.testing import ScriptedLLM, call, reply, tool_calls

TRAVERSALS = [
    "../../../../etc/passwd",
    "..",
    "../outside.txt",
    "a/../../outside.txt",
    "/etc/passwd",
    "./../outside.txt",
    "..\\..\\outside.txt",
    "%2e%2e/outside.txt",
    "link-out/passwd",
    "link-out",
    "a\x00b",
]


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    return {
        "keep_runtimes_on_shutdown": False,
        "max_concurrent_conversations": 30,
        "upload_max_bytes": 64 * 1024,
    }


@pytest.fixture(scope="module")
def targets(server: LiveServer, llm: ScriptedLLM) -> dict[str, str]:
    """A running and a stopped conversation of alice, each with a symlink out of its
    workspace and a file beside the workspace that must stay unreachable."""
    llm.add_script([reply("hostile target"), reply("still here")], match="hostile target")
    with server.client(ALICE) as alice:
        running = start(alice, "hostile target running")
        stopped = start(alice, "hostile target stopped")
        alice.post(f"conversations/{stopped}/stop").raise_for_status()
    for cid in (running, stopped):
        conversation_dir = server.data_dir / "conversations" / cid
        (conversation_dir / "outside.txt").write_text("must stay private\n")
        workspace = conversation_dir / "workspace"
        workspace.mkdir(exist_ok=True)
        (workspace / "inside.txt").write_text("fine\n")
        os.symlink("/etc", workspace / "link-out")
    return {"running": running, "stopped": stopped}


@pytest.mark.parametrize("which", ["running", "stopped"])
def test_no_file_route_leaves_the_workspace(
    server: LiveServer, targets: dict[str, str], which: str
) -> None:
    cid = targets[which]
    with server.client(ALICE) as alice:
        assert alice.get(f"conversations/{cid}/files/content", params={"path": "inside.txt"}).json()
        for path in TRAVERSALS:
            for route in ("files", "files/content"):
                response = alice.get(f"conversations/{cid}/{route}", params={"path": path})
                assert response.status_code in (400, 403, 404), (
                    f"{which} {route}?path={path!r}: {response.status_code} {response.text[:300]}"
                )
                assert "root:" not in response.text and "must stay private" not in response.text
            upload = alice.post(
                f"conversations/{cid}/files", files={"files": (path or "x", b"planted")}
            )
            assert upload.status_code in (200, 400, 403), (path, upload.status_code, upload.text)
            if upload.status_code == 200:
                body = upload.json()
                for name in body["uploaded"]:  # e.g. a file named "..\\x" is fine on POSIX
                    parts = PurePosixPath(name).parts
                    assert ".." not in parts and not name.startswith("/"), body
        zipped = alice.get(f"conversations/{cid}/workspace.zip")
        assert zipped.status_code == 200
        assert b"root:" not in zipped.content and b"must stay private" not in zipped.content
    # nothing was written outside the workspace
    conversation_dir = server.data_dir / "conversations" / cid
    assert (conversation_dir / "outside.txt").read_text() == "must stay private\n"
    written = [p for p in server.base.rglob("*") if p.is_file() and p.read_bytes() == b"planted"]
    workspaces = [
        (server.data_dir / "conversations" / c / "workspace").resolve() for c in targets.values()
    ]
    outside = [p for p in written if not any(w in p.resolve().parents for w in workspaces)]
    assert not outside, outside


def test_a_workspace_outside_the_server_root_is_refused(server: LiveServer) -> None:
    with server.client(ALICE) as alice:
        for workspace in ("../..", "/etc", "../convo-data"):
            response = alice.post("conversations", json={"workspace": workspace})
            assert response.status_code == 400, (workspace, response.text)


def test_oversized_bodies_are_refused_and_the_server_goes_on(
    server: LiveServer, targets: dict[str, str]
) -> None:
    cid = targets["stopped"]
    big = b"x" * (2 * 1024 * 1024)
    with server.client(ALICE) as alice:
        upload = alice.post(f"conversations/{cid}/files", files={"files": ("big.bin", big)})
        assert upload.status_code == 413, upload.text
        title = alice.patch(f"conversations/{cid}", json={"title": "t" * 100_000})
        assert title.status_code == 400
        message = alice.post(
            f"conversations/{cid}/exp-config", content=b'{"config": {"a": "' + big * 4 + b'"}}'
        )
        assert message.status_code in (400, 413), message.status_code
        assert alice.get(f"conversations/{cid}").status_code == 200
    assert not (server.data_dir / "conversations" / cid / "workspace" / "big.bin").exists()


async def test_slow_clients_do_not_block_others(
    server: LiveServer, targets: dict[str, str]
) -> None:
    """Slowloris: sockets that send half a request line, half the headers, or a body far
    shorter than its Content-Length, and then nothing. Others are still answered."""
    stalled = []
    partials = [
        b"GET /api/convo/conversations/search HTTP/1.1\r\nHost: x\r\n",
        b"GET /api/convo/conv",
        b"POST /api/convo/conversations HTTP/1.1\r\nHost: x\r\n"
        b'Authorization: token alice-token\r\nContent-Length: 100000\r\n\r\n{"ti',
    ]
    for index in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(partials[index % len(partials)])
        stalled.append(sock)
    try:
        async with server.async_client(BOB, timeout=30) as bob:
            for _ in range(5):
                response = await bob.get("conversations/search")
                assert response.status_code == 200
        async with server.async_client(ALICE, timeout=30) as alice:
            assert (await alice.get(f"conversations/{targets['running']}")).status_code == 200
    finally:
        for sock in stalled:
            sock.close()


async def test_websocket_floods_do_not_harm_other_users(
    server: LiveServer, llm: ScriptedLLM
) -> None:
    """One client floods its socket with thousands of frames, another never reads its
    socket while events pour in; bob's own conversation still streams every event."""
    name = f"flooded {server.port}"
    llm.add_script(
        [
            tool_calls([call("think", {"thought": f"{name} {s}.{n}"}) for n in range(40)])
            for s in range(15)
        ]
        + [reply("flood over")],
        match=name,
    )
    llm.add_script([reply("bob is fine"), reply("bob again")], match="bob's own")
    async with server.async_client(ALICE, timeout=60) as alice:
        cid = await astart(alice, name, max_iterations=30)
    flooder = await Subscriber.connect(server, cid)
    sleeper = await Subscriber.connect(server, cid)  # never reads
    garbage = "{" * 1000
    for n in range(3000):
        flooder.connection.write_message(garbage if n % 2 else json.dumps({"kind": "nope"}))
    async with server.async_client(BOB, timeout=60) as bob:
        bob_cid = await astart(bob, "bob's own conversation")
        watcher = await Subscriber.connect(server, bob_cid, headers=BOB)
        await watcher.until(state_is("awaiting_user_input"))
        await bob.post(f"conversations/{bob_cid}/messages", json={"text": "more"})
        await watcher.until(lambda e: e["kind"] == "message" and e["text"] == "bob again")
        assert (await bob.get("conversations/search")).status_code == 200
    ids = [event["id"] for event in watcher.logged()]
    assert ids == list(range(len(ids)))
    # the flooded conversation itself finished, and its log is whole
    reader = await Subscriber.connect(server, cid)
    await reader.until(state_is("awaiting_user_input", "error"), timeout=120)
    log = stored_events(server.data_dir, cid)
    assert [e["id"] for e in log] == list(range(len(log)))
    assert any(e["kind"] == "message" and e.get("text") == "flood over" for e in log)
    for subscriber in (flooder, sleeper, watcher, reader):
        subscriber.close()
