"""Security: credentials on every route, users kept apart, runtimes locked down, no leak.

- Every route of docs/openapi.yaml answers 401/403 without credentials or with a wrong
  token, and never shows data.
- Bob reaches none of alice's conversations: 404 on every per-conversation route (403 for
  a rename), not in his search, count, batch get, start tasks, runtimes or WebSocket.
- A runtime answers nothing but ``/alive`` without its session key (or with another
  conversation's), and every socket it (and its children) listens on is on loopback, read
  from ``/proc/net/tcp[6]`` through the sockets in ``/proc/<pid>/fd``.
- After a run that used the LLM API key and a registered secret (in a message, a shell
  command, a Python cell, a file), neither value appears anywhere in the data dir (but the
  0600 secrets file), the server log, the runtime log, an export or a notebook.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml
from live_server import ALICE, BOB, LiveServer
from reliability_helpers import Subscriber, astart, start, state_is
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from jupyter_convo.manager.keys import session_key
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
PLANTED_KEY = "sk-planted-llm-key-7f3a9c1e5b"
PLANTED_SECRET = "pw-planted-db-secret-42d8e0"
METHODS_WITH_BODY = {"post", "put", "patch"}
# A valid body per route (by its last path segment), so refusals are about visibility.
VALID_BODIES = {
    "messages": b'{"text": "hi"}',
    "events": b'{"kind": "message", "text": "hi"}',
    "exp-config": b'{"config": {"a": 1}}',
    "{conversation_id}": b'{"title": "mine now"}',
}


def routes() -> list[tuple[str, str]]:
    document = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return [(path, method) for path, item in document["paths"].items() for method in item]


@pytest.fixture(scope="module")
def conversation(server: LiveServer, llm: ScriptedLLM) -> str:
    """One of alice's conversations, stopped (its routes answer from disk)."""
    llm.add_script([reply("security target")], match="security target")
    with server.client(ALICE) as alice:
        cid = start(alice, "security target")
        alice.post(f"conversations/{cid}/stop").raise_for_status()
    return cid


def call(
    client: httpx.Client, method: str, path: str, cid: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    url = server_path(path, cid)
    body = b"{}" if method in METHODS_WITH_BODY else None
    return client.request(method.upper(), url, content=body, headers=headers)


def server_path(path: str, cid: str) -> str:
    return path.replace("{conversation_id}", cid).removeprefix("/api/convo/")


@pytest.mark.parametrize("credentials", [None, "token not-a-user"], ids=["none", "wrong"])
def test_every_route_needs_credentials(
    server: LiveServer, conversation: str, credentials: str | None
) -> None:
    headers = {"Authorization": credentials} if credentials else {}
    with httpx.Client(base_url=server.api, timeout=30) as anonymous:
        for path, method in routes():
            response = call(anonymous, method, path, conversation, headers)
            assert response.status_code in (401, 403), (
                f"{method.upper()} {path} answered {response.status_code} without credentials"
            )
            assert conversation not in response.text, f"{method.upper()} {path} leaked data"


async def test_the_websocket_needs_credentials(server: LiveServer, conversation: str) -> None:
    for headers in ({}, {"Authorization": "token not-a-user"}):
        with pytest.raises(HTTPClientError) as refused:
            await Subscriber.connect(server, conversation, headers=headers)
        assert refused.value.code in (401, 403)


def test_bob_reaches_none_of_alices_conversations(server: LiveServer, conversation: str) -> None:
    """Every per-conversation route answers bob exactly as for an id that does not exist
    (a rename: 403, as the design asks), with valid bodies and without."""
    missing = "0" * 32
    with server.client(BOB) as bob, server.client(ALICE) as alice:
        for path, method in routes():
            if "{conversation_id}" not in path:
                continue
            for body in (b"{}", VALID_BODIES.get(path.rsplit("/", 1)[-1], b"{}")):
                url = server_path(path, conversation)
                content = body if method in METHODS_WITH_BODY else None
                theirs = bob.request(method.upper(), url, content=content)
                nobody = bob.request(method.upper(), server_path(path, missing), content=content)
                label = f"bob: {method.upper()} {path} {body!r}"
                if method == "patch" and path.endswith("{conversation_id}") and body != b"{}":
                    assert theirs.status_code == 403, f"{label}: {theirs.status_code}"
                else:
                    assert theirs.status_code == nobody.status_code, (
                        f"{label}: {theirs.status_code} ({theirs.text[:200]}) but "
                        f"{nobody.status_code} for a missing id"
                    )
                    assert theirs.status_code in (400, 404), f"{label}: {theirs.status_code}"
                assert theirs.text.replace(conversation, missing) == nobody.text or (
                    theirs.status_code == 403
                ), label
                assert "security target" not in theirs.text
        assert conversation not in bob.get("conversations/search").text
        assert bob.get("conversations/count").json()["count"] == 0
        assert bob.get("conversations", params={"ids": conversation}).json() == [None]
        tasks = alice.get("start-tasks/search").json()["items"]
        mine = [task["id"] for task in tasks if task["conversation_id"] == conversation]
        assert mine and bob.get("start-tasks", params={"ids": mine}).json() == [None]
        assert conversation not in bob.get("start-tasks/search").text
        assert conversation not in bob.get("runtimes").text
        # and alice still has it, untouched (bob's DELETE and rename did nothing)
        assert alice.get(f"conversations/{conversation}").json()["title"] is not None


async def test_bob_cannot_watch_alices_conversation(server: LiveServer, conversation: str) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await Subscriber.connect(server, conversation, headers=BOB)
    assert refused.value.code == 404


# --- runtimes ------------------------------------------------------------------------------

RUNTIME_ROUTES = [
    ("GET", "/health"),
    ("POST", "/api/conversations"),
    ("GET", "/api/conversations/{cid}"),
    ("POST", "/api/conversations/{cid}/events"),
    ("GET", "/api/conversations/{cid}/events/search"),
    ("GET", "/api/conversations/{cid}/events/count"),
    ("GET", "/api/conversations/{cid}/events/ws"),
    ("POST", "/api/conversations/{cid}/stop"),
    ("GET", "/api/conversations/{cid}/list-files"),
    ("GET", "/api/conversations/{cid}/select-file?file=x"),
    ("POST", "/api/conversations/{cid}/upload-files"),
    ("GET", "/api/conversations/{cid}/workspace.zip"),
]


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of ``pid``, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            found.append((_address(address), int(port, 16)))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    return ":".join(b.hex() for b in words)


def is_loopback(address: str) -> bool:
    v4_mapped_loopback = address.startswith("0000:0000:0000:0000:0000:ffff:7f")
    return (
        address.startswith("127.")
        or address.replace(":", "") in ("0" * 31 + "1",)
        or (v4_mapped_loopback)
    )


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            for child in map(int, (task / "children").read_text().split()):
                found.append(child)
                stack.append(child)
    return found


async def test_a_runtime_refuses_requests_without_its_key_and_listens_on_loopback_only(
    server: LiveServer, llm: ScriptedLLM
) -> None:
    llm.add_script(
        [tool_call("python", {"code": "print('kernel up')"}), reply("waiting")],
        match="runtime lock",
    )
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, "runtime lock")
        other = await astart(alice, "runtime lock too")
    subscriber = await Subscriber.connect(server, cid)
    await subscriber.until(state_is("awaiting_user_input"))  # the kernel ran a cell
    subscriber.close()
    assert any(e["kind"] == "python_output" for e in subscriber.events)
    record = json.loads((server.data_dir / "conversations" / cid / "runtime.json").read_text())
    base = f"http://{record['host']}:{record['port']}"
    secret = (server.data_dir / "server_secret").read_bytes()
    other_key = {"X-Session-API-Key": session_key(secret, other)}
    wrong_key = {"X-Session-API-Key": "x" * 43}
    async with httpx.AsyncClient(base_url=base, timeout=30) as runtime:
        assert (await runtime.get("/alive")).status_code == 200
        own = {"X-Session-API-Key": session_key(secret, cid)}
        assert (await runtime.get("/health", headers=own)).status_code == 200  # the right key
        for method, route in RUNTIME_ROUTES:
            url = route.replace("{cid}", cid)
            for headers in ({}, wrong_key, other_key):
                response = await runtime.request(method, url, headers=headers, content=b"{}")
                assert response.status_code == 401, f"{method} {route}: {response.status_code}"
                assert "runtime lock" not in response.text
    pid = int(record["pid"])
    processes = [pid, *descendants(pid)]
    addresses = [addr for p in processes for addr in listening_addresses(p)]
    assert (record["host"], record["port"]) in addresses or any(
        port == record["port"] for _, port in addresses
    ), addresses
    assert all(is_loopback(address) for address, _ in addresses), addresses
    assert len(processes) > 1, "the kernel runs as a child of the runtime"


# --- planted secrets -----------------------------------------------------------------------


async def test_planted_secrets_appear_nowhere(server: LiveServer, llm: ScriptedLLM) -> None:
    async with server.async_client(ALICE) as alice:
        (
            await alice.put(
                "settings",
                json={"llm_api_key": PLANTED_KEY, "secrets": {"DB_PASSWORD": PLANTED_SECRET}},
            )
        ).raise_for_status()
        shown = (await alice.get("settings")).text
        assert PLANTED_KEY not in shown and PLANTED_SECRET not in shown
        llm.add_script(
            [
                tool_call("terminal", {"command": "echo db=$DB_PASSWORD; echo $DB_PASSWORD > f"}),
                tool_call(
                    "python", {"code": "import os; print(os.environ['DB_PASSWORD'][::-1][::-1])"}
                ),
                tool_call("file_editor", {"command": "view", "path": "f"}),
                reply(f"I saw {PLANTED_SECRET} and the key {PLANTED_KEY}"),
            ],
            match="planted",
        )
        cid = await astart(alice, f"planted: use {PLANTED_SECRET} please")
        subscriber = await Subscriber.connect(server, cid)
        await subscriber.until(state_is("awaiting_user_input", "error"))
        frames = json.dumps(subscriber.events)
        subscriber.close()
        export = await alice.get(f"conversations/{cid}/export")
        notebook = await alice.get(f"conversations/{cid}/notebook")
        (await alice.post(f"conversations/{cid}/stop")).raise_for_status()
    assert PLANTED_SECRET not in frames and PLANTED_KEY not in frames
    assert "<secret-hidden>" in frames, "the run did carry the secret (now hidden)"
    leaks = scan_tree(server.data_dir, allowed={"alice.secrets.json"})
    leaks += scan_bytes("server log", server.log_path.read_bytes())
    for name, response in (("export", export), ("notebook", notebook)):
        if response.status_code == 200:
            leaks += scan_bytes(name, response.content)
    assert not leaks, leaks
    secrets_files = list(server.data_dir.glob("settings/*.secrets.json"))
    assert secrets_files, "the secrets are stored somewhere"
    for path in secrets_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def scan_tree(root: Path, allowed: set[str]) -> list[str]:
    """Every file but ``allowed`` names and the workspaces: a workspace holds what the
    agent wrote on purpose (here ``f``, written by ``echo $DB_PASSWORD > f``)."""
    leaks = []
    for path in root.rglob("*"):
        if "workspace" in path.relative_to(root).parts:
            continue
        if path.is_file() and path.name not in allowed:
            leaks += scan_bytes(str(path.relative_to(root)), path.read_bytes())
    return leaks


def scan_bytes(name: str, data: bytes) -> list[str]:
    """Secrets in ``data``, or in any member if it is a zip (exports, workspace zips)."""
    found = [
        f"{name} holds {value[:12]}..."
        for value in (PLANTED_KEY, PLANTED_SECRET)
        if value.encode() in data
    ]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                found += scan_bytes(f"{name}:{member}", archive.read(member))
    return found


# --- credentials in the server log ---------------------------------------------------------


async def test_tokens_never_reach_the_server_log(server: LiveServer, conversation: str) -> None:
    """Browsers and WebSocket clients send the token as ``?token=``; requests refused with
    a 4xx are logged with their URL. Neither that token nor an Authorization header may
    be written."""
    marker = f"token-probe-{conversation[:8]}"
    async with httpx.AsyncClient(base_url=server.api, timeout=30) as anonymous:
        for route, params, method, body in [
            ("conversations/search", {"limit": "many"}, "GET", None),  # 400 bad query
            ("conversations/search", {marker: "1"}, "GET", None),  # 400 unknown parameter
            (f"conversations/{'0' * 32}", {}, "GET", None),  # 404 missing
            ("conversations/bad%20id!", {}, "GET", None),  # 404 malformed id
            ("no-such-route", {}, "GET", None),  # 404 unknown route
            ("conversations", {}, "POST", b"{not json"),  # 400 bad body
            (f"conversations/{conversation}", {}, "PATCH", b'{"title": ""}'),  # 400
        ]:
            for token in ("alice-token", "bob-token"):
                response = await anonymous.request(
                    method, route, params={**params, "token": token}, content=body
                )
                assert 400 <= response.status_code < 500, (route, response.status_code)
            response = await anonymous.request(
                method, route, params=params, content=body, headers=ALICE
            )
            assert 400 <= response.status_code < 500, (route, response.status_code)
    for cid in ("0" * 32, conversation):
        url = f"{server.ws_api}conversations/{cid}/events/ws?after_id=nope&token=bob-token"
        with pytest.raises(HTTPClientError) as refused:
            await websocket_connect(url)
        assert refused.value.code in (400, 404)
    last = f"last-probe-{conversation[:8]}"
    async with server.async_client(ALICE) as alice:
        assert (await alice.get("conversations/search", params={last: "1"})).status_code == 400
    log_text = await logged(server, last)  # the server's log is copied by another thread
    assert marker in log_text, "the refused requests were logged (the check can see them)"
    for token in ("alice-token", "bob-token"):
        assert token not in log_text, [line for line in log_text.splitlines() if token in line]
    assert "token=[secret]" in log_text


async def logged(server: LiveServer, text: str, timeout: float = 30.0) -> str:
    """The server's log once ``text`` is in it (bounded; fails loudly)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in (log_text := server.log_text()):
        assert loop.time() < deadline, f"{text!r} never reached the server log"
        await asyncio.sleep(0.05)
    return log_text


# --- secrets in titles ---------------------------------------------------------------------

TITLE_SECRET = "pw-title-secret-7c1d9e0a"


async def test_no_title_write_path_stores_a_secret(server: LiveServer, llm: ScriptedLLM) -> None:
    """Given at creation, renamed, made from the first message, imported, replayed: every
    title is stored, searched, returned and announced with the user's secrets hidden."""
    llm.add_script([reply("title test")], match="title test")
    async with server.async_client(ALICE) as alice:
        saved = await alice.put("settings", json={"secrets": {"TITLE_PW": TITLE_SECRET}})
        saved.raise_for_status()
        given = await astart(alice, "title test given", title=f"given {TITLE_SECRET}")
        made = await astart(alice, f"title test {TITLE_SECRET} in the first message")
        watcher = await Subscriber.connect(server, given)
        renamed = await alice.patch(f"conversations/{given}", json={"title": f"x{TITLE_SECRET}"})
        assert renamed.status_code == 200, renamed.text
        announced = await watcher.until(lambda e: e["kind"] == "title")
        watcher.close()
        export = await alice.get(f"conversations/{made}/export")
        assert export.status_code == 200, export.text
        imported = await alice.post(
            "conversations/import",
            content=with_meta_title(export.content, f"imported {TITLE_SECRET}"),
            headers={"Content-Type": "application/zip"},
        )
        assert imported.status_code == 201, imported.text
        replay = await alice.post(
            "conversations/stream-start",
            json={"replay": {"source_conversation_id": imported.json()["id"]}},
        )
        assert replay.status_code == 200, replay.text
        shown = {
            "rename": renamed.text,
            "title event": json.dumps(announced),
            "import": imported.text,
            "replay": replay.text,
            "get": (await alice.get(f"conversations/{given}")).text,
            "search": (await alice.get("conversations/search")).text,
            "batch": (await alice.get("conversations", params={"ids": [given, made]})).text,
        }
        titles = [
            item["title"] for item in (await alice.get("conversations/search")).json()["items"]
        ]
        for cid in (given, made):
            (await alice.post(f"conversations/{cid}/stop")).raise_for_status()
    leaks = {name: text for name, text in shown.items() if TITLE_SECRET in text}
    assert not leaks, leaks
    assert renamed.json()["title"] == "x<secret-hidden>"
    assert announced["title"] == "x<secret-hidden>"
    assert {"x<secret-hidden>", "imported <secret-hidden>"} <= set(titles), titles
    assert any(t.startswith("title test <secret-hidden>") for t in titles), titles
    assert any(t.startswith("Replay of imported <secret-hidden>") for t in titles), titles
    for path in server.data_dir.glob("convo.db*"):  # SQLite, its WAL included
        assert TITLE_SECRET.encode() not in path.read_bytes(), path


def with_meta_title(export: bytes, title: str) -> bytes:
    """The export with another title in ``meta.json`` (and the manifest's hash to match)."""
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(export)) as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    meta = json.loads(members["meta.json"])
    meta["title"] = title
    members["meta.json"] = json.dumps(meta).encode()
    manifest = json.loads(members["manifest.json"])
    manifest["files"]["meta.json"] = {
        "sha256": hashlib.sha256(members["meta.json"]).hexdigest(),
        "size": len(members["meta.json"]),
    }
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- links out of the workspace ------------------------------------------------------------

LINK_SECRET = "pw-linked-secret-5e6f7a8b"


async def test_no_link_lets_a_data_dir_file_leave_through_the_workspace(
    server: LiveServer, llm: ScriptedLLM
) -> None:
    """Links to the data dir's secrets file and server secret in a workspace (hard links, a
    symlink, a FIFO): no file route, zip, export or skill serves them, whether the runtime
    runs or not. The jailed agent cannot make them (it does not see the data dir:
    tests/integration/test_confinement.py), but an agent that is not jailed can (no
    bubblewrap, ``--kernel``, a container with the data dir mounted), so the test makes
    them itself, as such an agent would, beside a file the agent wrote."""
    async with server.async_client(ALICE) as alice:
        saved = await alice.put("settings", json={"secrets": {"LINKED_PW": LINK_SECRET}})
        saved.raise_for_status()
    (secrets_file,) = [
        path
        for path in server.data_dir.glob("settings/*.secrets.json")
        if LINK_SECRET in path.read_text()  # alice's (stored in clear: its mode protects it)
    ]
    server_secret = server.data_dir / "server_secret"
    command = "echo fine > mine.txt && ls"
    llm.add_script([tool_call("terminal", {"command": command}), reply("linked")], match="links")
    async with server.async_client(ALICE) as alice:
        cid = await astart(alice, "links out of the workspace")
        watcher = await Subscriber.connect(server, cid)
        await watcher.until(state_is("awaiting_user_input", "error"))
        watcher.close()
        outputs = [e for e in watcher.events if e["kind"] == "command_output"]
        assert outputs and outputs[0]["exit_code"] == 0, outputs
        workspace = server.data_dir / "conversations" / cid / "workspace"
        os.link(secrets_file, workspace / "notes.txt")
        os.link(server_secret, workspace / "key.bin")
        os.link(secrets_file, workspace / "AGENTS.md")
        (workspace / "link.txt").symlink_to(secrets_file)
        os.mkfifo(workspace / "pipe")
        for state in ("running", "stopped"):
            if state == "stopped":
                (await alice.post(f"conversations/{cid}/stop")).raise_for_status()
            served = {}
            for name in ("notes.txt", "key.bin", "AGENTS.md", "link.txt", "pipe"):
                response = await alice.get(
                    f"conversations/{cid}/files/content", params={"path": name}
                )
                assert response.status_code in (400, 403), (state, name, response.text)
                served[f"{state} files/content {name}"] = response.content
            assert (
                await alice.get(f"conversations/{cid}/files/content", params={"path": "mine.txt"})
            ).json()["content"] == "fine\n"
            zipped = await alice.get(f"conversations/{cid}/workspace.zip")
            assert zipped.status_code == 200
            with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
                assert archive.namelist() == ["mine.txt"], (state, archive.namelist())
            served[f"{state} workspace.zip"] = zipped.content
            export = await alice.get(f"conversations/{cid}/export", params={"workspace": "true"})
            assert export.status_code == 200, export.text
            with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
                members = [n for n in archive.namelist() if n.startswith("workspace/")]
                manifest = json.loads(archive.read("manifest.json"))
            assert members == ["workspace/mine.txt"], (state, members)
            reasons = {item["path"]: item["reason"] for item in manifest["workspace"]["left_out"]}
            assert "hard links" in reasons["notes.txt"] and "hard links" in reasons["key.bin"]
            served[f"{state} export"] = export.content
            skills = await alice.get(f"conversations/{cid}/skills")
            assert skills.status_code == 200 and skills.json()["skills"] == [], skills.text
    secret_bytes = server_secret.read_bytes()
    for where, data in served.items():
        assert LINK_SECRET.encode() not in data, where
        assert secret_bytes not in data, where
        assert not scan_bytes(where, data)
