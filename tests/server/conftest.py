"""A real Jupyter server with jupyter-convo (pytest-jupyter), two users, real runtimes.

- The server runs with ``allow_unauthenticated_access=False``, as root allowed, the
  extension enabled, its data in a temp dir, and the scripted LLM as the default LLM
  (``c.ConvoExtension.llm_base_url``; the key comes from ``JUPYTER_CONVO_LLM_API_KEY``).
- ``TwoUsersIdentityProvider`` maps ``Authorization: token alice-token`` to user ``alice``
  and ``bob-token`` to ``bob``; ``jp_fetch`` speaks as alice unless given other headers.
- pytest-jupyter drives its server on the loop of its ``jp_asyncio_loop`` fixture; the
  override below hands it pytest-asyncio's loop, so the test body, async fixtures and the
  server all share one loop.

Helpers: ``Api`` (JSON calls, errors as ``ApiError``), ``EventSocket`` (WebSocket frames
as events, waits with bounded timeouts that fail loudly).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tornado.websocket
from jupyter_server.auth.identity import IdentityProvider, User
from pytest_jupyter.jupyter_server import *  # noqa: F403  (the jp_* fixtures)
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

from jupyter_convo.events.schema import AgentStateEvent, Event, event_from_json
from jupyter_convo.server.resolve import ENV_API_KEY
from jupyter_convo.testing import TEST_API_KEY, ScriptedLLM

USERS = {"alice-token": "alice", "bob-token": "bob"}
ALICE = {"Authorization": "token alice-token"}
BOB = {"Authorization": "token bob-token"}
WAIT = 60.0  # seconds: bounded waits on events; a miss fails loudly


class TwoUsersIdentityProvider(IdentityProvider):
    """Token -> user, for tests that need two identities on one server."""

    async def get_user_token(self, handler: Any) -> User | None:  # type: ignore[override]
        name = USERS.get(self.get_token(handler) or "")
        return User(username=name, name=name) if name else None


@pytest.fixture(autouse=True)
async def jp_asyncio_loop() -> asyncio.AbstractEventLoop:
    """pytest-jupyter's server loop = the loop pytest-asyncio runs the test on."""
    return asyncio.get_running_loop()


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, TEST_API_KEY)


@pytest.fixture
def convo_data_dir(tmp_path: Path) -> Iterator[Path]:
    """The extension's data dir; afterwards, any runtime still recorded there is killed
    (a failing test must not leave processes behind)."""
    data_dir = tmp_path / "convo-data"
    yield data_dir
    for record in data_dir.glob("conversations/*/runtime.json"):
        try:
            handle = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        group = handle.get("pgid") or handle.get("pid")
        if isinstance(group, int):
            kill_process_group(group)


@pytest.fixture
def convo_config() -> dict[str, Any]:
    """``c.ConvoExtension`` values a test file may override (merged over the defaults)."""
    return {}


@pytest.fixture
def jp_server_config(
    convo_data_dir: Path, scripted_llm: ScriptedLLM, convo_config: dict[str, Any]
) -> Config:
    extension: dict[str, Any] = {
        "data_dir": str(convo_data_dir),
        "llm_model": scripted_llm.models[0],
        "llm_base_url": scripted_llm.base_url,
        "keep_runtimes_on_shutdown": False,  # tests leave no process behind
        "upload_max_bytes": 64 * 1024,
    }
    extension.update(convo_config)
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_convo": True, "jupyter_server_terminals": False},
                "allow_root": True,
                "allow_unauthenticated_access": False,
                "identity_provider_class": TwoUsersIdentityProvider,
            },
            "ConvoExtension": extension,
        }
    )


@pytest.fixture
def jp_auth_header() -> dict[str, str]:
    return dict(ALICE)


class ApiError(Exception):
    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {body}")
        self.code = code
        self.message = str(body.get("message", ""))


class Api:
    """JSON calls to ``api/convo/...`` as one user."""

    def __init__(self, fetch: Callable[..., Any], headers: dict[str, str]) -> None:
        self._fetch = fetch
        self.headers = headers

    async def raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw_body: bytes | None = None,
    ) -> Any:
        data = raw_body if raw_body is not None else None
        if body is not None:
            data = json.dumps(body).encode()
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = b""
        # Repeated parameters (ids=a&ids=b) as pairs: jp_fetch urlencodes without doseq.
        pairs = [
            (name, item)
            for name, value in (params or {}).items()
            for item in (value if isinstance(value, list) else [value])
        ]
        try:
            return await self._fetch(
                "api/convo/" + path,
                method=method,
                body=data,
                params=pairs,
                headers={**self.headers, **(headers or {})},
                allow_nonstandard_methods=True,
                request_timeout=WAIT,
            )
        except HTTPClientError as exc:
            response = exc.response
            text = response.body.decode() if response is not None and response.body else "{}"
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {"message": text}
            raise ApiError(exc.code, parsed) from None

    async def call(self, method: str, path: str, **options: Any) -> Any:
        response = await self.raw(method, path, **options)
        if not response.body:
            return None
        return json.loads(response.body)

    async def get(self, route: str, /, **params: Any) -> Any:
        return await self.call("GET", route, params=params)

    async def post(self, route: str, body: Any = None) -> Any:
        return await self.call("POST", route, body=body if body is not None else {})

    async def error(self, method: str, path: str, **options: Any) -> ApiError:
        """The error a call answers; fails if it succeeds."""
        try:
            await self.raw(method, path, **options)
        except ApiError as exc:
            return exc
        raise AssertionError(f"{method} {path} succeeded; an error was expected")

    async def start(self, message: str, **options: Any) -> dict[str, Any]:
        """Start a conversation through stream-start; returns the READY start task."""
        updates = await self.call(
            "POST", "conversations/stream-start", body={"initial_message": message, **options}
        )
        final = updates[-1]
        assert final["status"] == "READY", updates
        return dict(final)


@pytest.fixture
def alice(jp_fetch: Callable[..., Any]) -> Api:
    return Api(jp_fetch, ALICE)


@pytest.fixture
def bob(jp_fetch: Callable[..., Any]) -> Api:
    return Api(jp_fetch, BOB)


class EventSocket:
    """``events/ws`` frames as events, with bounded waits."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.connection = connection
        self.events: list[Event] = []
        self.closed = False

    async def next_event(self, timeout: float = WAIT) -> Event | None:
        message = await asyncio.wait_for(self.connection.read_message(), timeout)
        if message is None:
            self.closed = True
            return None
        event = event_from_json(message)
        self.events.append(event)
        return event

    async def until(self, predicate: Callable[[Event], bool], timeout: float = WAIT) -> Event:
        """Read until an event matches; fail loudly on close or after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                event = await self.next_event(remaining)
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"no matching event in {timeout} s; got {self.kinds()}"
                ) from None
            if event is None:
                raise AssertionError(f"socket closed before a matching event: {self.kinds()}")
            if predicate(event):
                return event

    async def until_closed(self, timeout: float = WAIT) -> None:
        """Read until the server closes the socket; fail loudly after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while await self.next_event(max(deadline - loop.time(), 0.001)) is not None:
                pass
        except asyncio.TimeoutError:
            raise AssertionError(f"socket still open after {timeout} s") from None

    async def send(self, data: dict[str, Any] | str) -> None:
        await self.connection.write_message(data if isinstance(data, str) else json.dumps(data))

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
async def open_socket(
    jp_ws_fetch: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """``await open_socket(cid, after_id=-1, headers=ALICE)`` -> a connected EventSocket."""
    sockets: list[EventSocket] = []

    async def connect(
        conversation_id: str, after_id: int = -1, headers: dict[str, str] | None = None
    ) -> EventSocket:
        connection = await jp_ws_fetch(
            "api",
            "convo",
            "conversations",
            conversation_id,
            "events",
            "ws",
            params={"after_id": after_id},
            headers=dict(headers or ALICE),
        )
        socket = EventSocket(connection)
        sockets.append(socket)
        return socket

    yield connect
    for socket in sockets:
        socket.close()


def state_is(*states: str) -> Callable[[Event], bool]:
    return lambda event: isinstance(event, AgentStateEvent) and event.state.value in states


def kill_process_group(pid: int) -> None:
    """SIGKILL a runtime and everything it started (its own process group)."""
    if pid == os.getpgrp():
        raise AssertionError("refusing to kill the test's own process group")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
