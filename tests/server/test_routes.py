"""Every conversation route of the server API over real HTTP, WebSocket and runtimes.

The only double is the scripted LLM. Conversations that need no agent (search, files,
skills) are recorded straight into the extension's real store and workspace.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from server_harness import Api, EventSocket, state_is

from jupyter_convo.events.log import EventLog
from jupyter_convo.events.schema import (
    CommandEvent,
    CommandOutputEvent,
    ConversationStatus,
    MessageEvent,
    ThinkEvent,
)
from jupyter_convo.server.handlers import SERVICES_KEY
from jupyter_convo.server.remember import USER_REQUEST
from jupyter_convo.server.services import ConvoServices
from jupyter_convo.store.conversations import ConversationMetadata, StartTask
from jupyter_convo.testing import ScriptedLLM, reply, tool_call

REPO = Path(__file__).resolve().parents[2]


def services_of(serverapp: Any) -> ConvoServices:
    services: ConvoServices = serverapp.web_app.settings[SERVICES_KEY]
    return services


def record(services: ConvoServices, user_id: str, **fields: Any) -> ConversationMetadata:
    """A conversation in the real store (no runtime), with its workspace directory."""
    meta = services.store.create(ConversationMetadata(user_id=user_id, **fields))
    services.workspace_dir(meta).mkdir(parents=True, exist_ok=True)
    return meta


def files_containing(root: Path, text: str) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes())


def multipart(files: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, data in files.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_conversation_lifecycle_over_rest_and_ws(
    alice: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script(
        [
            tool_call("terminal", {"command": "echo hi > hello.txt", "security_risk": "low"}),
            reply("Written hello.txt. Anything else?"),
            tool_call("finish", {"message": "bye"}),
        ],
        match="lifecycle",
    )
    response = await alice.raw(
        "POST", "conversations", body={"initial_message": "lifecycle: write hello"}
    )
    assert response.code == 202
    task = json.loads(response.body)
    cid = task["conversation_id"]
    assert task["user_id"] == "alice"

    socket: EventSocket = await open_socket(cid)
    await socket.until(state_is("awaiting_user_input"))
    [stored_task] = await alice.get("start-tasks", ids=task["id"])
    assert stored_task["status"] == "READY"
    assert stored_task["request"]["agent"] == "builtin"  # the server's default backend
    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "RUNNING"
    assert meta["title"] == "lifecycle: write hello"
    assert meta["model"] == scripted_llm.models[0]

    # events, served from the log
    commands = await alice.get(f"conversations/{cid}/events/search", kind="command")
    assert [e["command"] for e in commands["items"]] == ["echo hi > hello.txt"]
    count = (await alice.get(f"conversations/{cid}/events/count"))["count"]
    assert count >= len(socket.events)
    page = await alice.get(f"conversations/{cid}/events/search", reverse="true", limit=2)
    assert len(page["items"]) == 2 and page["next_page_id"]
    assert page["items"][0]["id"] > page["items"][1]["id"]
    after = await alice.get(
        f"conversations/{cid}/events/search",
        reverse="true",
        limit=2,
        page_id=page["next_page_id"],
    )
    assert after["items"][0]["id"] == page["items"][1]["id"] - 1

    # the workspace, through the running runtime
    assert "hello.txt" in await alice.get(f"conversations/{cid}/files")
    content = await alice.get(f"conversations/{cid}/files/content", path="hello.txt")
    assert content == {"path": "hello.txt", "content": "hi\n"}
    archive = await alice.raw("GET", f"conversations/{cid}/workspace.zip")
    assert archive.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.body)) as zipped:
        assert zipped.read("hello.txt") == b"hi\n"

    # rename: subscribers see a title event
    renamed = await alice.call("PATCH", f"conversations/{cid}", body={"title": "  Hello  "})
    assert renamed["title"] == "Hello"
    title = await socket.until(lambda e: e.kind == "title")
    assert title.title == "Hello"  # type: ignore[union-attr]

    # a message moves the agent on
    sent = await alice.post(f"conversations/{cid}/messages", {"text": "please finish"})
    assert sent["status"] == "sent"
    await socket.until(state_is("finished"))
    runtimes = await alice.get("runtimes")
    assert [r["conversation_id"] for r in runtimes] == [cid]

    # stop: the log still answers
    stopped = await alice.post(f"conversations/{cid}/stop")
    assert stopped["status"] == "STOPPED"
    assert await alice.get("runtimes") == []
    finished = await alice.get(f"conversations/{cid}/events/search", kind="finish")
    assert [e["message"] for e in finished["items"]] == ["bye"]

    # restart from the log
    info = await alice.post(f"conversations/{cid}/start")
    assert info["conversation_id"] == cid and info["status"] == "RUNNING"
    assert [r["conversation_id"] for r in await alice.get("runtimes")] == [cid]

    # delete: gone everywhere
    deleted = await alice.raw("DELETE", f"conversations/{cid}")
    assert deleted.code == 204
    missing = await alice.error("GET", f"conversations/{cid}")
    assert missing.code == 404 and cid in missing.message
    assert await alice.get("runtimes") == []
    assert await alice.get("conversations", ids=cid) == [None]


async def test_stream_start_streams_every_start_task_update(
    alice: Api, jp_fetch: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([tool_call("finish", {"message": "ok"})])
    response = await jp_fetch(
        "api/convo/conversations/stream-start",
        method="POST",
        body=json.dumps({"initial_message": "stream me", "title": "Streamed"}),
    )
    text = response.body.decode()
    assert text.startswith("[") and text.rstrip().endswith("]")
    updates = json.loads(text)
    statuses = [u["status"] for u in updates]
    assert statuses[-1] == "READY", updates
    assert len(set(statuses)) == len(statuses), "no update is repeated"
    assert len({u["id"] for u in updates}) == 1
    cid = updates[-1]["conversation_id"]
    meta = await alice.get(f"conversations/{cid}")
    assert meta["title"] == "Streamed"
    assert meta["status"] == "RUNNING"
    tasks = await alice.get("start-tasks/search", conversation_id=cid)
    assert [t["id"] for t in tasks["items"]] == [updates[0]["id"]]
    assert (await alice.get("start-tasks/count", status="READY"))["count"] == 1


async def test_search_count_and_batch_get(alice: Api, bob: Api, jp_serverapp: Any) -> None:
    services = services_of(jp_serverapp)
    now = datetime.now(timezone.utc)
    mine = [
        record(
            services,
            "alice",
            title=title,
            status=status,
            trigger=trigger,
            created_at=now - timedelta(hours=10 - i),
            updated_at=now - timedelta(minutes=10 - i),
        )
        for i, (title, status, trigger) in enumerate(
            [
                ("Sales report", ConversationStatus.STOPPED, "gui"),
                ("Weather plot", ConversationStatus.STOPPED, "cli"),
                ("sales forecast", ConversationStatus.ERROR, "gui"),
                ("Cleanup", ConversationStatus.STOPPED, "notebook"),
                ("More SALES", ConversationStatus.STOPPED, "gui"),
            ]
        )
    ]
    theirs = record(services, "bob", title="Sales of bob")
    newest_first = [m.id for m in reversed(mine)]

    seen: list[str] = []
    page_id = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if page_id:
            params["page_id"] = page_id
        page = await alice.get("conversations/search", **params)
        seen += [item["id"] for item in page["items"]]
        page_id = page["next_page_id"]
        if not page_id:
            break
    assert seen == newest_first

    sales = await alice.get("conversations/search", title__contains="sales")
    assert [item["title"] for item in sales["items"]] == [
        "More SALES",
        "sales forecast",
        "Sales report",
    ]
    assert (await alice.get("conversations/count", title__contains="sales"))["count"] == 3
    assert (await alice.get("conversations/count", status="ERROR"))["count"] == 1
    assert (await alice.get("conversations/count", trigger="gui"))["count"] == 3
    recent = await alice.get(
        "conversations/search", created_at__gte=(now - timedelta(hours=7)).isoformat()
    )
    assert [item["id"] for item in recent["items"]] == newest_first[:2]
    assert (await alice.get("conversations/count"))["count"] == 5
    assert (await bob.get("conversations/count"))["count"] == 1

    batch = await alice.get("conversations", ids=[mine[0].id, theirs.id, "missing"])
    assert batch[0]["id"] == mine[0].id and batch[1:] == [None, None]

    task = services.store.create_start_task(StartTask(user_id="alice", conversation_id=mine[0].id))
    assert [t["id"] for t in (await alice.get("start-tasks/search"))["items"]] == [task.id]
    assert await bob.get("start-tasks", ids=task.id) == [None]
    assert (await bob.get("start-tasks/count"))["count"] == 0


async def test_files_upload_skills_and_exp_config(alice: Api, jp_serverapp: Any) -> None:
    services = services_of(jp_serverapp)
    meta = record(services, "alice", title="Files")
    cid = meta.id
    skill = b"---\ntriggers: [pandas, dataframe]\n---\nUse pandas idioms.\n"
    body, headers = multipart(
        {
            "AGENTS.md": b"# Rules\nRun tests with -q.\n",
            ".convo/skills/pandas.md": skill,
            "data/sales.csv": b"month,revenue\n1,10\n",
        }
    )
    uploaded = await alice.call(
        "POST", f"conversations/{cid}/files", raw_body=body, headers=headers
    )
    assert sorted(uploaded["uploaded"]) == [
        ".convo/skills/pandas.md",
        "AGENTS.md",
        "data/sales.csv",
    ]
    workspace = services.workspace_dir(meta)
    assert (workspace / "data" / "sales.csv").read_bytes() == b"month,revenue\n1,10\n"

    listed = await alice.get(f"conversations/{cid}/files")
    assert "AGENTS.md" in listed
    csv = await alice.get(f"conversations/{cid}/files/content", path="data/./sales.csv")
    assert csv["content"] == "month,revenue\n1,10\n"

    skills = (await alice.get(f"conversations/{cid}/skills"))["skills"]
    assert [(s["name"], s["type"], s["triggers"]) for s in skills] == [
        ("AGENTS", "repo", []),
        ("pandas", "knowledge", ["pandas", "dataframe"]),
    ]
    assert skills[1]["content"] == "Use pandas idioms.\n"

    config = {"config": {"variant": "b", "temperature": 0.2}}
    created = await alice.raw("POST", f"conversations/{cid}/exp-config", body=config)
    assert created.code == 201
    again = await alice.error(
        "POST", f"conversations/{cid}/exp-config", body={"config": {"variant": "c"}}
    )
    assert again.code == 409 and "already set" in again.message
    assert await alice.get(f"conversations/{cid}/exp-config") == config


async def test_settings_are_layered_and_secrets_write_only(
    alice: Api, bob: Api, scripted_llm: ScriptedLLM, convo_data_dir: Path
) -> None:
    shown = await alice.get("settings")
    assert shown["llm_api_key_set"] is False and shown["llm_model"] is None
    secret = "sk-user-secret-0123456789"
    response = await alice.raw(
        "PUT", "settings", body={"llm_model": "alice-model", "llm_api_key": secret}
    )
    assert secret not in response.body.decode()
    updated = json.loads(response.body)
    assert updated["llm_api_key_set"] is True and "llm_api_key" not in updated
    assert secret not in json.dumps(await alice.get("settings"))
    assert (await bob.get("settings"))["llm_model"] is None
    bad = await alice.error("PUT", "settings", body={"llm_base_url": "ftp://example"})
    assert bad.code == 400 and "llm_base_url" in bad.message

    # user settings > server config; per-conversation options > user settings
    task = await alice.post("conversations", {})
    assert (await alice.get(f"conversations/{task['conversation_id']}"))["model"] == "alice-model"
    task = await alice.post("conversations", {"model": "conversation-model"})
    meta = await alice.get(f"conversations/{task['conversation_id']}")
    assert meta["model"] == "conversation-model"
    task = await bob.post("conversations", {})
    assert (await bob.get(f"conversations/{task['conversation_id']}"))["model"] == "scripted-model"
    assert files_containing(convo_data_dir, secret) == [
        convo_data_dir / "settings" / "alice.secrets.json"
    ]


def secrets_files(data_dir: Path) -> list[Path]:
    return list(data_dir.glob("settings/*.secrets.json"))


async def test_secrets_too_short_to_hide_are_refused(alice: Api, convo_data_dir: Path) -> None:
    """The redactor leaves values under 6 characters alone (they would hide ordinary
    words), so such a secret would show in clear: refused wherever one is registered."""
    for body, field in [
        ({"secrets": {"DB_PW": "abc12"}}, "secret DB_PW has 5 characters"),
        ({"llm_api_key": "EMPTY"}, "llm_api_key has 5 characters"),
    ]:
        refused = await alice.error("PUT", "settings", body=body)
        assert refused.code == 400 and field in refused.message, refused
        assert "at least 6" in refused.message
    for route in ("conversations", "conversations/stream-start"):
        refused = await alice.error("POST", route, body={"api_key": "k"})
        assert refused.code == 400 and "api_key has 1 characters" in refused.message, refused
    assert not secrets_files(convo_data_dir), "nothing was stored"
    # six characters are hidden; "" still removes a secret
    await alice.call("PUT", "settings", body={"secrets": {"DB_PW": "abc123"}})
    await alice.call("PUT", "settings", body={"secrets": {"DB_PW": ""}})
    assert (await alice.get("settings"))["secret_names"] == []


async def test_capabilities_list_the_installed_sandboxes_and_agents(
    alice: Api, jp_serverapp: Any
) -> None:
    offered = await alice.get("capabilities")
    kinds = {info["kind"]: info for info in offered["sandboxes"]}
    assert offered["default_sandbox"] == "process"
    assert kinds["process"]["available"] and kinds["process"]["description"]
    # Registered, but one manager runs one kind: the others say why they cannot be used.
    assert not kinds["docker"]["available"]
    assert "runs 'process' runtimes" in kinds["docker"]["reason"]
    assert isinstance(offered["agents"], list)
    refused = await alice.error("POST", "conversations", body={"sandbox": "docker"})
    assert refused.code == 400 and "docker" in refused.message


async def test_remember_prompt_asks_the_conversation_llm(
    alice: Api, jp_serverapp: Any, scripted_llm: ScriptedLLM
) -> None:
    services = services_of(jp_serverapp)
    meta = record(services, "alice", title="Remember", model=scripted_llm.models[0])
    log = EventLog(services.conversation_dir(meta.id) / "events.jsonl")
    try:
        log.append(MessageEvent(source="user", text="count the rows of sales.csv"))
        log.append(ThinkEvent(thought="use wc"))
        action = log.append(CommandEvent(command="wc -l sales.csv"))
        log.append(CommandOutputEvent(cause=action.id, output="3 sales.csv", exit_code=0))
        log.append(MessageEvent(source="agent", text="It has 2 data rows."))
    finally:
        log.close()
    scripted_llm.add_script(
        [reply("<update_prompt>Count data rows without the header.</update_prompt>")],
        match=USER_REQUEST,
    )
    answer = await alice.get(f"conversations/{meta.id}/remember-prompt", event_id=action.id)
    assert answer["prompt"] == "Count data rows without the header."
    system = scripted_llm.requests[-1]["messages"][0]["content"]
    assert f">>> [{action.id}]" in system and "wc -l sales.csv" in system
    missing = await alice.error(
        "GET", f"conversations/{meta.id}/remember-prompt", params={"event_id": 99}
    )
    assert missing.code == 404 and "event 99" in missing.message


async def test_not_found_and_bad_input(alice: Api, jp_serverapp: Any) -> None:
    services = services_of(jp_serverapp)
    meta = record(services, "alice", title="Inputs")
    cid = meta.id
    for method, path in [
        ("GET", "conversations/nope"),
        ("PATCH", "conversations/nope"),
        ("DELETE", "conversations/nope"),
        ("POST", "conversations/nope/stop"),
        ("POST", "conversations/nope/messages"),
        ("GET", "conversations/nope/events/search"),
        ("GET", "conversations/nope/files"),
        ("GET", "conversations/nope/skills"),
    ]:
        body = {"title": "x"} if method == "PATCH" else {"text": "x"} if method == "POST" else None
        error = await alice.error(method, path, body=body)
        assert error.code == 404, (method, path, error)
        assert "conversation nope not found" in error.message

    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PATCH", f"conversations/{cid}", {"body": {"title": ""}}, "title"),
        ("PATCH", f"conversations/{cid}", {"body": {"title": "   "}}, "title"),
        ("PATCH", f"conversations/{cid}", {"body": {"titel": "x"}}, "titel"),
        ("PATCH", f"conversations/{cid}", {"raw_body": b"{not json"}, "not valid JSON"),
        ("POST", "conversations", {"body": {"max_iterations": 0}}, "max_iterations"),
        ("POST", "conversations", {"body": {"sandbox": "vm"}}, "sandbox"),
        ("POST", "conversations", {"body": {"sandbox": "no/such"}}, "sandbox"),
        ("POST", "conversations", {"body": {"agent": "nope"}}, "unknown agent 'nope'"),
        ("POST", "conversations", {"body": {"agent": "../x"}}, "agent"),
        ("POST", "conversations", {"body": {"workspace": "/etc"}}, "workspace"),
        ("POST", "conversations", {"body": {"image_urls": ["x"]}}, "image_urls"),
        ("POST", f"conversations/{cid}/messages", {"body": {"text": ""}}, "text"),
        ("POST", f"conversations/{cid}/events", {"body": {"kind": "confirmation"}}, "action_id"),
        ("POST", f"conversations/{cid}/events", {"body": {"kind": "dance"}}, "kind"),
        ("GET", "conversations", {}, "ids"),
        ("GET", "conversations/search", {"params": {"status": "BOGUS"}}, "status"),
        ("GET", "conversations/search", {"params": {"sort": "title"}}, "sort"),
        ("GET", "conversations/search", {"params": {"page_id": "garbage"}}, "page_id"),
        ("GET", f"conversations/{cid}/events/search", {"params": {"kind": "dance"}}, "dance"),
        ("GET", f"conversations/{cid}/events/count", {"params": {"after_id": "x"}}, "after_id"),
        ("GET", f"conversations/{cid}/files/content", {}, "path"),
        ("GET", f"conversations/{cid}/remember-prompt", {}, "event_id"),
        ("POST", f"conversations/{cid}/exp-config", {"body": {"cfg": 1}}, "cfg"),
    ]
    for method, path, options, named in cases:
        error = await alice.error(method, path, **options)
        assert error.code == 400, (method, path, options, error)
        assert named in error.message, (named, error.message)

    # routes answer only their own methods
    for method, path in [("GET", "conversations/stream-start"), ("PUT", "conversations")]:
        error = await alice.error(method, path, body={} if method == "PUT" else None)
        assert error.code == 405, (method, path, error)

    # a confirmation for a conversation that is not running cannot be delivered
    stopped = await alice.error(
        "POST",
        f"conversations/{cid}/events",
        body={"kind": "confirmation", "action_id": 1, "confirmed": True},
    )
    assert stopped.code == 409 and "not running" in stopped.message


async def test_paths_never_leave_the_workspace(alice: Api, jp_serverapp: Any) -> None:
    services = services_of(jp_serverapp)
    meta = record(services, "alice", title="Paths")
    cid = meta.id
    outside = services.conversation_dir(cid) / "outside.txt"
    outside.write_text("secret")
    for route, path in [
        ("files", "../outside.txt"),
        ("files", "a/../../outside.txt"),
        ("files/content", "../outside.txt"),
        ("files/content", "/etc/passwd"),
        ("files/content", "x\x00y"),
    ]:
        error = await alice.error("GET", f"conversations/{cid}/{route}", params={"path": path})
        assert error.code == 400, (route, path, error)
        assert "path" in error.message

    body, headers = multipart({"fine.txt": b"ok", "../evil.txt": b"evil"})
    error = await alice.error("POST", f"conversations/{cid}/files", raw_body=body, headers=headers)
    assert error.code == 400 and "leaves the workspace" in error.message
    workspace = services.workspace_dir(meta)
    assert not (workspace / "fine.txt").exists(), "a refused upload writes nothing"
    assert not (workspace.parent / "evil.txt").exists()


def test_extension_is_listed_ok(tmp_path: Path) -> None:
    """``jupyter server extension list`` with our shipped config file: enabled and OK.

    The config dir holds a copy of ``jupyter-config/server-config/jupyter_convo.json``, as
    a wheel install puts it in ``etc/jupyter/jupyter_server_config.d`` (an editable install
    made before that file existed does not have it in the prefix).
    """
    config_dir = tmp_path / "config"
    (config_dir / "jupyter_server_config.d").mkdir(parents=True)
    shutil.copy(
        REPO / "jupyter-config" / "server-config" / "jupyter_convo.json",
        config_dir / "jupyter_server_config.d" / "jupyter_convo.json",
    )
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "jupyter_convo" in line]
    assert any("enabled" in line for line in lines), output
    assert any("OK" in line for line in lines), output


def test_shipped_config_enables_the_extension() -> None:
    path = REPO / "jupyter-config" / "server-config" / "jupyter_convo.json"
    data = json.loads(path.read_text())
    assert data == {"ServerApp": {"jpserver_extensions": {"jupyter_convo": True}}}


async def test_query_parameters_are_checked_but_lab_cache_busters_pass(alice: Api) -> None:
    error = await alice.error("GET", "conversations/search", params={"titel": "x"})
    assert error.code == 400 and "unknown query parameter 'titel'" in error.message
    # JupyterLab's ServerConnection adds a bare timestamp to GET requests.
    page = await alice.get("conversations/search", **{"1732190000000": ""})
    assert page["items"] == []
    error = await alice.error("GET", "conversations/search", params={"1732190000000": "x"})
    assert error.code == 400
