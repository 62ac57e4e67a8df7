"""Helpers for the server tests (fixtures live in conftest): ``Api`` (JSON calls, errors as
``ApiError``), ``EventSocket`` (WebSocket frames as events, bounded waits that fail loudly),
the two test users and their headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable
from typing import Any

import tornado.websocket
from jupyter_server.auth.identity import IdentityProvider, User
from tornado.httpclient import HTTPClientError

from jupyter_convo.events.schema import AgentStateEvent, Event, event_from_json

USERS = {"alice-token": "alice", "bob-token": "bob"}


ALICE = {"Authorization": "token alice-token"}


BOB = {"Authorization": "token bob-token"}


WAIT = 60.0  # seconds: bounded waits on events; a miss fails loudly


class TwoUsersIdentityProvider(IdentityProvider):
    """Token -> user, for tests that need two identities on one server."""

    async def get_user_token(self, handler: Any) -> User | None:  # type: ignore[override]
        name = USERS.get(self.get_token(handler) or "")
        return User(username=name, name=name) if name else None


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


def state_is(*states: str) -> Callable[[Event], bool]:
    return lambda event: isinstance(event, AgentStateEvent) and event.state.value in states


def kill_process_group(pid: int) -> None:
    """SIGKILL a runtime and everything it started (its own process group)."""
    if pid == os.getpgrp():
        raise AssertionError("refusing to kill the test's own process group")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
