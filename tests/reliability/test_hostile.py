"""Hostile input: path traversal, oversized bodies, slow clients, WebSocket floods.

Each attack runs against a live server while a well-behaved client checks that other users
are not harmed: their requests are answered and their event streams complete.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
from live_server import ALICE, BOB, LiveServer
from reliability_helpers import Subscriber, astart, start, state_is, stored_events

from jupyter_convo.manager.keys import session_key
from jupyter_convo.testing import ScriptedLLM, call, reply, tool_calls

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"

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


# --- nesting, names, ids, archives, races -----------------------------------------------

DEEP = 3000


def deep_json(levels: int = DEEP) -> bytes:
    return b'{"text": ' + b"[" * levels + b"]" * levels + b"}"


def json_body_routes() -> list[tuple[str, str]]:
    """Every route of docs/openapi.yaml that takes a JSON body."""
    import yaml

    document = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path))
    return found


def test_deeply_nested_json_is_a_400_on_every_json_route(
    server: LiveServer, targets: dict[str, str]
) -> None:
    routes = json_body_routes()
    assert len(routes) >= 8, routes
    with server.client(ALICE) as alice:
        for cid in targets.values():
            for method, path in routes:
                url = path.replace("{conversation_id}", cid).removeprefix("/api/convo/")
                response = alice.request(method, url, content=deep_json())
                assert response.status_code == 400, (method, path, response.text[:300])
                assert "nested" in response.json()["message"], (method, path, response.text)
        assert alice.get(f"conversations/{targets['running']}").status_code == 200


async def test_deeply_nested_frames_are_refused_and_the_socket_stays_open(
    server: LiveServer, targets: dict[str, str]
) -> None:
    subscriber = await Subscriber.connect(server, targets["running"])
    await subscriber.connection.write_message(deep_json().decode())
    refused = await subscriber.until(lambda e: e["kind"] == "error" and e["id"] == -1)
    assert refused["code"] == "INVALID_INPUT" and "nested" in refused["message"], refused
    await subscriber.connection.write_message(json.dumps({"kind": "nope"}))
    again = await subscriber.until(lambda e: e["kind"] == "error" and e["id"] == -1)
    assert again["code"] == "INVALID_INPUT"  # still open and answering
    subscriber.close()


def test_deeply_nested_json_is_a_400_on_the_runtimes_routes(
    server: LiveServer, targets: dict[str, str]
) -> None:
    cid = targets["running"]
    record = json.loads((server.data_dir / "conversations" / cid / "runtime.json").read_text())
    key = session_key((server.data_dir / "server_secret").read_bytes(), cid)
    base = f"http://{record['host']}:{record['port']}"
    with httpx.Client(base_url=base, headers={"X-Session-API-Key": key}, timeout=30) as runtime:
        for url in ("/api/conversations", f"/api/conversations/{cid}/events"):
            response = runtime.post(url, content=deep_json())
            assert response.status_code == 400, (url, response.text[:300])
            assert response.json()["status"] == 400
        assert runtime.get(f"/api/conversations/{cid}").status_code == 200


@pytest.mark.parametrize("which", ["running", "stopped"])
def test_a_name_over_255_bytes_is_a_400_naming_the_limit(
    server: LiveServer, targets: dict[str, str], which: str
) -> None:
    cid = targets[which]
    long_name = "n" * 300
    with server.client(ALICE) as alice:
        for route, params in [
            ("files", {"path": long_name}),
            ("files/content", {"path": long_name}),
            ("files/content", {"path": f"dir/{'é' * 200}.txt"}),
            ("files", {"path": "/".join(["d" * 250] * 20)}),
        ]:
            response = alice.get(f"conversations/{cid}/{route}", params=params)
            assert response.status_code == 400, (which, route, response.text[:300])
            assert "255 bytes" in response.text or "4096 bytes" in response.text, response.text
        upload = alice.post(f"conversations/{cid}/files", files={"files": (long_name, b"x")})
        assert upload.status_code == 400 and "255 bytes" in upload.text, upload.text
    with server.client(ALICE) as alice:
        created = alice.post("conversations", json={"workspace": long_name})
        assert created.status_code == 400 and "255 bytes" in created.text, created.text


def test_malformed_ids_and_unknown_routes_answer_json_404(
    server: LiveServer, targets: dict[str, str]
) -> None:
    bad_ids = ["has space", "semi;colon", "x" * 65, "dot.dot", "ünïcode"]
    with server.client(ALICE) as alice:
        for bad in bad_ids:
            for suffix in ("", "/messages", "/events/ws", "/files/content", "/export"):
                for method in ("GET", "POST", "DELETE"):
                    response = alice.request(method, f"conversations/{bad}{suffix}")
                    assert response.status_code == 404, (bad, suffix, method, response.text)
                    assert response.headers["content-type"].startswith("application/json")
                    assert "conversation ids are" in response.json()["message"], response.text
        for route in ("nope", "conversations/search/more", f"conversations/{targets['running']}/x"):
            response = alice.get(route)
            assert response.status_code == 404, (route, response.text[:200])
            assert response.json()["message"].startswith("no route GET"), response.text
    with httpx.Client(base_url=server.api, timeout=30) as anonymous:
        refused = anonymous.get("conversations/has space")
        assert refused.status_code in (401, 403)
        assert refused.headers["content-type"].startswith("application/json")


def test_error_messages_keep_percent_signs(server: LiveServer, targets: dict[str, str]) -> None:
    with server.client(ALICE) as alice:
        response = alice.get("conversations/search", params={"100%": "yes"})
        assert response.status_code == 400
        assert "'100%'" in response.json()["message"], response.text
        missing = alice.get(
            f"conversations/{targets['stopped']}/files/content", params={"path": "50% off.txt"}
        )
        assert missing.status_code == 404
        assert "50% off.txt" in missing.json()["message"], missing.text
    assert "%%" not in server.log_text().split("===== start")[-1]


async def test_requests_racing_a_delete_are_404_or_409_never_500(
    server: LiveServer, llm: ScriptedLLM
) -> None:
    """Messages (which restart a stopped conversation), uploads, listings and reads sent
    while the conversation is deleted: each is answered (or refused 404/409) and none
    brings the deleted conversation's folder back."""
    llm.add_script([reply("raced"), reply("raced again")], match="race target")
    raced = []
    async with server.async_client(ALICE, timeout=120) as alice:
        for round_ in range(6):
            cid = await astart(alice, f"race target {round_}")
            raced.append(cid)
            if round_ % 2:
                (await alice.post(f"conversations/{cid}/stop")).raise_for_status()
            base = f"conversations/{cid}"
            answers = await asyncio.gather(
                alice.post(f"{base}/messages", json={"text": "go"}),
                alice.delete(base),
                alice.post(f"{base}/messages", json={"text": "go"}),
                alice.post(f"{base}/files", files={"files": ("late.txt", b"late")}),
                alice.get(f"{base}/files"),
                alice.get(f"{base}/files/content", params={"path": "late.txt"}),
                alice.get(f"{base}/workspace.zip"),
                alice.post(f"{base}/messages", json={"text": "go"}),
            )
            statuses = [answer.status_code for answer in answers]
            assert answers[1].status_code == 204, answers[1].text
            for answer in answers[:1] + answers[2:]:
                assert answer.status_code in (200, 202, 404, 409), (round_, statuses, answer.text)
                if answer.status_code >= 400:
                    assert answer.headers["content-type"].startswith("application/json")
                    assert "Unhandled" not in answer.json()["message"], answer.text
            assert (await alice.get(base)).status_code == 404
    left = [cid for cid in raced if (server.data_dir / "conversations" / cid).exists()]
    assert not left, "a deleted conversation came back"
