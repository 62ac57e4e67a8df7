"""Helpers shared by the reliability tests: starting conversations, watching event streams.

Every wait is bounded and fails loudly (``AssertionError`` naming what was missing).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from live_server import ALICE, LiveServer
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

WAIT = 90.0
Event = dict[str, Any]


def start(client: httpx.Client, text: str, **options: Any) -> str:
    """Create a conversation through stream-start; its id once READY."""
    updates = client.post("conversations/stream-start", json={"initial_message": text, **options})
    assert updates.status_code == 200, updates.text
    final = updates.json()[-1]
    assert final["status"] == "READY", updates.json()
    return str(final["conversation_id"])


async def astart(client: httpx.AsyncClient, text: str, **options: Any) -> str:
    updates = await client.post(
        "conversations/stream-start", json={"initial_message": text, **options}
    )
    assert updates.status_code == 200, updates.text
    final = updates.json()[-1]
    assert final["status"] == "READY", updates.json()
    return str(final["conversation_id"])


def stored_events(data_dir: Path, cid: str) -> list[Event]:
    """The conversation's log as written on disk (complete lines only)."""
    path = data_dir / "conversations" / cid / "events.jsonl"
    events = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a torn last line: never acknowledged
    return events


class Subscriber:
    """One ``events/ws`` client: frames as dicts, with bounded waits."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self.connection = connection
        self.events: list[Event] = []
        self.closed = False

    @classmethod
    async def connect(
        cls,
        server: LiveServer,
        cid: str,
        after_id: int = -1,
        headers: dict[str, str] | None = None,
    ) -> Subscriber:
        url = f"{server.ws_api}conversations/{cid}/events/ws?{urlencode({'after_id': after_id})}"
        chosen = ALICE if headers is None else headers
        request = HTTPRequest(url, headers=dict(chosen), request_timeout=WAIT)
        connection = await websocket_connect(request, max_message_size=64 * 1024 * 1024)
        return cls(connection)

    async def next(self, timeout: float = WAIT) -> Event | None:
        frame = await asyncio.wait_for(self.connection.read_message(), timeout)
        if frame is None:
            self.closed = True
            return None
        event: Event = json.loads(frame)
        self.events.append(event)
        return event

    async def until(self, predicate: Callable[[Event], bool], timeout: float = WAIT) -> Event:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                event = await self.next(remaining)
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"no matching event in {timeout} s; last: {self.events[-3:]}"
                ) from None
            if event is None:
                raise AssertionError(f"stream closed before a matching event: {self.events[-3:]}")
            if predicate(event):
                return event

    def logged(self) -> list[Event]:
        """The frames that are log events (server notices have id -1)."""
        return [event for event in self.events if event["id"] >= 0]

    def close(self) -> None:
        self.connection.close()


def state_is(*states: str) -> Callable[[Event], bool]:
    return lambda event: event["kind"] == "agent_state" and event["state"] in states
