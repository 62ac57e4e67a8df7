"""Authentication and ownership: no route answers without credentials; users stay apart."""

from __future__ import annotations

import re
from typing import Any

import pytest
from server_harness import BOB, Api, state_is
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.routing import PathMatches, Rule, RuleRouter
from tornado.web import RequestHandler
from tornado.websocket import websocket_connect
from traitlets.config import Config

from jupyter_convo.server.handlers import SERVICES_KEY
from jupyter_convo.server.ws import EventsWebSocketHandler
from jupyter_convo.store.conversations import ConversationMetadata
from jupyter_convo.testing import ScriptedLLM, reply

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def convo_rules(router: RuleRouter) -> list[Rule]:
    """Every rule under ``api/convo`` in the application's routers."""
    found: list[Rule] = []
    for rule in router.rules:
        if isinstance(rule.target, RuleRouter):
            found += convo_rules(rule.target)
        elif isinstance(rule.matcher, PathMatches) and "api/convo/" in rule.matcher.regex.pattern:
            found.append(rule)
    return found


def concrete_path(pattern: str, base_url: str, conversation_id: str) -> str:
    """A request path for a route pattern: the id group filled in, regex escapes undone."""
    path = re.sub(r"\(\?P<conversation_id>[^)]*\)", conversation_id, pattern.rstrip("$"))
    path = path.replace("\\.", ".")
    assert "(" not in path, path
    assert path.startswith(base_url), (path, base_url)
    return path


def implemented(handler: type[RequestHandler]) -> list[str]:
    return [
        name for name in HTTP_METHODS if getattr(handler, name) is not getattr(RequestHandler, name)
    ]


async def test_every_route_refuses_requests_without_credentials(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, jp_http_port: int
) -> None:
    services = jp_serverapp.web_app.settings[SERVICES_KEY]
    meta = services.store.create(ConversationMetadata(user_id="alice", title="Guarded"))
    rules = convo_rules(jp_serverapp.web_app.default_router)
    assert len(rules) >= 23, [r.matcher.regex.pattern for r in rules]
    checked = 0
    for rule in rules:
        handler = rule.target
        path = concrete_path(rule.matcher.regex.pattern, jp_base_url, meta.id)
        if issubclass(handler, EventsWebSocketHandler):
            for headers in ({}, {"Authorization": "token wrong"}):
                request = HTTPRequest(f"ws://127.0.0.1:{jp_http_port}{path}", headers=headers)
                with pytest.raises(HTTPClientError) as refused:
                    await websocket_connect(request)
                assert refused.value.code == 403, path
                checked += 1
            continue
        methods = implemented(handler)
        assert methods, handler
        for method in methods:
            for headers in ({}, {"Authorization": "token wrong"}):
                body = b"{}" if method in ("post", "put", "patch") else None
                with pytest.raises(HTTPClientError) as refused:
                    await http_server_client.fetch(
                        path,
                        method=method.upper(),
                        body=body,
                        headers=headers,
                        allow_nonstandard_methods=True,
                    )
                assert refused.value.code == 403, (method, path, refused.value.code)
                checked += 1
    assert checked >= 2 * len(rules)
    assert services.store.get(meta.id).title == "Guarded", "nothing changed"


async def test_a_user_cannot_see_rename_stop_or_delete_another_users_conversation(
    alice: Api, bob: Api, open_socket: Any, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.add_script([reply("Hello alice, what next?")], match="private")
    task = await alice.start("private work of alice")
    cid = task["conversation_id"]
    socket = await open_socket(cid)
    await socket.until(state_is("awaiting_user_input"))

    for method, path, body in [
        ("GET", f"conversations/{cid}", None),
        ("DELETE", f"conversations/{cid}", None),
        ("POST", f"conversations/{cid}/stop", {}),
        ("POST", f"conversations/{cid}/start", {}),
        ("POST", f"conversations/{cid}/messages", {"text": "hi from bob"}),
        ("POST", f"conversations/{cid}/events", {"kind": "agent_state", "state": "paused"}),
        ("GET", f"conversations/{cid}/events/search", None),
        ("GET", f"conversations/{cid}/events/count", None),
        ("GET", f"conversations/{cid}/files", None),
        ("GET", f"conversations/{cid}/workspace.zip", None),
        ("GET", f"conversations/{cid}/skills", None),
        ("POST", f"conversations/{cid}/exp-config", {"config": {}}),
    ]:
        error = await bob.error(method, path, body=body)
        assert error.code == 404, (method, path, error)
    renamed = await bob.error("PATCH", f"conversations/{cid}", body={"title": "mine now"})
    assert renamed.code == 403 and "owner" in renamed.message
    assert await bob.get("conversations", ids=cid) == [None]
    assert (await bob.get("conversations/search"))["items"] == []
    assert (await bob.get("conversations/count"))["count"] == 0
    assert await bob.get("start-tasks", ids=task["id"]) == [None]
    assert await bob.get("runtimes") == []
    with pytest.raises(HTTPClientError) as hidden:
        await open_socket(cid, headers=BOB)
    assert hidden.value.code == 404

    # alice's conversation is untouched and still hers
    meta = await alice.get(f"conversations/{cid}")
    assert meta["status"] == "RUNNING" and meta["title"] == "private work of alice"
    assert [r["conversation_id"] for r in await alice.get("runtimes")] == [cid]
    assert not any(e.kind == "message" and "bob" in e.text for e in socket.events)  # type: ignore[union-attr]


class TestSingleUserServer:
    """With Jupyter's own token auth every token request is the one owner.

    Jupyter's identity provider names each token request without a cookie as a new
    random anonymous user; conversations must still belong to the server's owner.
    """

    @pytest.fixture
    def jp_server_config(self, convo_data_dir: Any, scripted_llm: ScriptedLLM) -> Config:
        return Config(
            {
                "ServerApp": {
                    "jpserver_extensions": {
                        "jupyter_convo": True,
                        "jupyter_server_terminals": False,
                    },
                    "allow_root": True,
                    "allow_unauthenticated_access": False,
                },
                "ConvoExtension": {
                    "data_dir": str(convo_data_dir),
                    "single_user_name": "owner",
                    "keep_runtimes_on_shutdown": False,
                },
            }
        )

    @pytest.fixture
    def jp_auth_header(self, jp_serverapp: Any) -> dict[str, str]:
        return {"Authorization": f"token {jp_serverapp.identity_provider.token}"}

    async def test_token_requests_share_one_owner(
        self, jp_fetch: Any, jp_serverapp: Any, jp_auth_header: dict[str, str]
    ) -> None:
        services = jp_serverapp.web_app.settings[SERVICES_KEY]
        meta = services.store.create(ConversationMetadata(user_id="owner", title="Mine"))
        owner = Api(jp_fetch, jp_auth_header)
        first = await owner.get(f"conversations/{meta.id}")
        second = await owner.call("PATCH", f"conversations/{meta.id}", body={"title": "Still mine"})
        assert first["user_id"] == second["user_id"] == "owner"
        stranger = Api(jp_fetch, {"Authorization": "token not-the-token"})
        error = await stranger.error("GET", f"conversations/{meta.id}")
        assert error.code == 403
