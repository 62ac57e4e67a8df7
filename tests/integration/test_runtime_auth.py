"""The runtime's session key, start-up refusals, binding rules and secret hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import tornado.httpclient

from jupyter_convo.agent.settings import LLMConfig

if TYPE_CHECKING:
    from runtime_harness import StartRuntime

pytestmark = pytest.mark.integration

CID = "auth-test"
ROUTES: list[tuple[str, str]] = [
    ("GET", "/health"),
    ("POST", "/api/conversations"),
    ("GET", f"/api/conversations/{CID}"),
    ("POST", f"/api/conversations/{CID}/events"),
    ("GET", f"/api/conversations/{CID}/events/search"),
    ("GET", f"/api/conversations/{CID}/events/count"),
    ("GET", f"/api/conversations/{CID}/events/ws"),
    ("GET", f"/api/conversations/{CID}/list-files"),
    ("GET", f"/api/conversations/{CID}/select-file?file=a.txt"),
    ("POST", f"/api/conversations/{CID}/upload-files"),
    ("GET", f"/api/conversations/{CID}/workspace.zip"),
    ("GET", "/no/such/route"),
    ("POST", f"/api/conversations/{CID}/stop"),  # last: with the key, the runtime exits
]


async def test_every_route_but_alive_needs_the_key(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    runtime = await start_runtime()
    await runtime.create(CID, scripted_llm_config)
    async with httpx.AsyncClient(base_url=runtime.base_url, timeout=30) as client:
        alive = await client.get("/alive")
        assert alive.status_code == 200
        assert alive.json() == {"status": "ok"}
        for method, path in ROUTES:
            for headers in ({}, runtime.headers("x" * 43), runtime.headers(runtime.key[:-1])):
                response = await client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers, response.text)
                body = response.json()
                assert body["status"] == 401
                assert "X-Session-API-Key" in body["error"]
        # The same routes answer with the key (whatever their answer, it is not 401).
        for method, path in ROUTES:
            response = await client.request(method, path, headers=runtime.headers())
            assert response.status_code != 401, (method, path, response.text)


async def test_websocket_upgrade_needs_the_key(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    runtime = await start_runtime()
    await runtime.create(CID, scripted_llm_config)
    for key in ("", "wrong-key-wrong-key-wrong"):
        with pytest.raises(tornado.httpclient.HTTPClientError) as info:
            await runtime.connect(CID, key=key)
        assert info.value.code == 401
    stream = await runtime.connect(CID)
    first = await stream.next_event()
    assert first is not None and first.id == 0
    stream.close()


def test_runtime_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_CONVO_SESSION_KEY"}
    for extra in ({}, {"JUPYTER_CONVO_SESSION_KEY": "short"}):
        result = subprocess.run(
            [sys.executable, "-m", "jupyter_convo.runtime", "--conversations-root", str(tmp_path)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result
        assert "JUPYTER_CONVO_SESSION_KEY" in result.stderr
        assert "JUPYTER_CONVO_RUNTIME_READY" not in result.stdout


def test_runtime_never_imports_jupyter_server() -> None:
    code = (
        "import sys\n"
        "import jupyter_convo.runtime.app, jupyter_convo.runtime.handlers\n"
        "import jupyter_convo.runtime.session, jupyter_convo.runtime.__main__\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'jupyter_server')\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_ready_file_matches_ready_line(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime()
    assert json.loads(runtime.ready_file.read_text()) == runtime.ready
    assert runtime.ready["pid"] == runtime.proc.pid
    async with runtime.client() as client:
        health = (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["conversation_id"] is None
    assert health["pid"] == runtime.proc.pid
    assert health["uptime"] >= 0


async def test_binding_rules_and_key_rotation(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    runtime = await start_runtime()
    async with runtime.client() as client:
        bad = await client.post("/api/conversations", json={"conversation_id": "../up"})
        assert bad.status_code == 400
        assert "conversation_id" in bad.json()["error"]
        bad = await client.post(
            "/api/conversations",
            json={"conversation_id": CID, "settings": {"max_iterations": 0}},
        )
        assert bad.status_code == 400
        assert "settings.max_iterations" in bad.json()["error"]
        replay = await client.post(
            "/api/conversations", json={"conversation_id": CID, "replay": {"events": []}}
        )
        assert replay.status_code == 400
        assert "replay" in replay.json()["error"]
        not_json = await client.post("/api/conversations", content=b"{oops")
        assert not_json.status_code == 400
        assert not_json.json()["status"] == 400

        new_key = "rotated-" + runtime.key
        body = runtime.create_body(CID, scripted_llm_config)
        body["session_api_key"] = new_key
        created = await client.post("/api/conversations", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["conversation_id"] == CID

        old = await client.get(f"/api/conversations/{CID}")
        assert old.status_code == 401
        client.headers["X-Session-API-Key"] = new_key
        info = await client.get(f"/api/conversations/{CID}")
        assert info.status_code == 200
        assert info.json()["status"] == "RUNNING"

        body.pop("session_api_key")
        again = await client.post("/api/conversations", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["conversation_id"] == CID
        other = await client.post("/api/conversations", json={**body, "conversation_id": "other"})
        assert other.status_code == 409
        assert CID in other.json()["error"]
        missing = await client.get("/api/conversations/other")
        assert missing.status_code == 404
        health = (await client.get("/health")).json()
        assert health["conversation_id"] == CID


async def test_secrets_stay_out_of_log_and_runtime_log(
    start_runtime: StartRuntime, scripted_llm_config: LLMConfig
) -> None:
    user_token = "tok-" + "s3cr3t" * 4
    runtime = await start_runtime("--log-level", "DEBUG")
    await runtime.create(CID, scripted_llm_config, secrets={"GITHUB_TOKEN": user_token})
    api_key = scripted_llm_config.api_key
    assert api_key is not None
    async with runtime.client() as client:
        response = await client.post(
            f"/api/conversations/{CID}/events",
            json={"kind": "message", "text": f"use {user_token} and {api_key.get_secret_value()}"},
        )
        assert response.status_code == 200, response.text
        event = response.json()
        assert event["kind"] == "message"
        assert user_token not in event["text"]
        assert "<secret-hidden>" in event["text"]
        stopped = await client.post(f"/api/conversations/{CID}/stop")
        assert stopped.json() == {"status": "STOPPED"}
    assert runtime.wait_exit() == 0
    events_text = (runtime.conversation_dir(CID) / "events.jsonl").read_text()
    log_text = runtime.log_text()
    assert "<secret-hidden>" in events_text
    for secret in (user_token, api_key.get_secret_value(), runtime.key):
        assert secret not in events_text
        assert secret not in log_text
