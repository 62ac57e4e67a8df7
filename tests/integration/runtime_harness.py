"""Real runtime subprocesses for the integration tests: the helpers (fixtures in conftest).

``start_runtime()`` launches ``python -m jupyter_convo.runtime`` the way a process sandbox
does (own process group, key in the environment, ``--log-file``), waits for its ready line on
stdout and hands back a ``RuntimeProcess`` with HTTP and WebSocket helpers. Every process it
started is stopped (and its process group killed) after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest  # pytest.fail: a runtime that never gets ready fails the test, with its log
import tornado.httpclient
import tornado.websocket

from jupyter_convo.agent.settings import AgentSettings, LLMConfig
from jupyter_convo.events.schema import Event, event_from_json

READY_PREFIX = "JUPYTER_CONVO_RUNTIME_READY "
KEY_HEADER = "X-Session-API-Key"
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 20.0
EVENT_TIMEOUT = 30.0


def read_ready_line(
    proc: subprocess.Popen[bytes], timeout: float, log_file: Path
) -> dict[str, int]:
    """Block until the runtime prints its ready line; fail loudly if it dies or stays silent."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"runtime not ready after {timeout} s; log:\n{_tail(log_file)}")
            if not selector.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                code = proc.wait(timeout=EXIT_TIMEOUT)
                pytest.fail(
                    f"runtime exited ({code}) before its ready line; output: {buffer!r}; "
                    f"log:\n{_tail(log_file)}"
                )
            buffer += chunk
            complete = buffer[: buffer.rfind(b"\n") + 1]
            for line in complete.decode(errors="replace").splitlines():
                if line.startswith(READY_PREFIX):
                    return dict(json.loads(line[len(READY_PREFIX) :]))


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log file)"


@dataclass
class RuntimeProcess:
    """One runtime subprocess and how to talk to it."""

    proc: subprocess.Popen[bytes]
    port: int
    key: str
    root: Path
    log_file: Path
    ready_file: Path
    ready: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {KEY_HEADER: self.key if key is None else key}

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers(key), timeout=30.0, **options
        )

    def conversation_dir(self, conversation_id: str) -> Path:
        return self.root / conversation_id

    def log_text(self) -> str:
        return _tail(self.log_file, 100_000)

    def create_body(
        self,
        conversation_id: str,
        llm: LLMConfig,
        initial_message: str | None = None,
        **settings_options: Any,
    ) -> dict[str, Any]:
        """A ``POST /api/conversations`` body for a conversation on ``llm``."""
        body: dict[str, Any] = {
            "conversation_id": conversation_id,
            "settings": agent_settings(llm, **settings_options).to_wire(),
        }
        if initial_message is not None:
            body["initial_message"] = {"text": initial_message}
        return body

    async def create(
        self,
        conversation_id: str,
        llm: LLMConfig,
        initial_message: str | None = None,
        **settings_options: Any,
    ) -> dict[str, Any]:
        """Bind ``conversation_id``; ``settings_options`` go into its ``AgentSettings``."""
        body = self.create_body(conversation_id, llm, initial_message, **settings_options)
        async with self.client() as client:
            response = await client.post("/api/conversations", json=body)
        assert response.status_code in (200, 201), (response.status_code, response.text)
        return dict(response.json())

    async def connect(
        self, conversation_id: str, after_id: int = -1, key: str | None = None
    ) -> EventStream:
        request = tornado.httpclient.HTTPRequest(
            f"ws://127.0.0.1:{self.port}/api/conversations/{conversation_id}/events/ws"
            f"?after_id={after_id}",
            headers=self.headers(key),
        )
        connection = await tornado.websocket.websocket_connect(request)
        return EventStream(connection)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def kill_group(self) -> None:
        """SIGKILL the runtime's whole process group (its shell and kernel too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=EXIT_TIMEOUT)


class EventStream:
    """A WebSocket client of ``events/ws`` that hands back parsed events."""

    def __init__(self, connection: tornado.websocket.WebSocketClientConnection) -> None:
        self.connection = connection
        self.events: list[Event] = []
        self.errors: list[dict[str, Any]] = []
        self.closed = False

    async def next_frame(self, timeout: float = EVENT_TIMEOUT) -> str | None:
        message = await asyncio.wait_for(self.connection.read_message(), timeout)
        if message is None:
            self.closed = True
            return None
        return message if isinstance(message, str) else message.decode()

    async def next_event(self, timeout: float = EVENT_TIMEOUT) -> Event | None:
        """The next event frame (error frames are collected in ``errors``); None at close."""
        while True:
            frame = await self.next_frame(timeout)
            if frame is None:
                return None
            data = json.loads(frame)
            if "error" in data and "kind" not in data:
                self.errors.append(data)
                continue
            event = event_from_json(frame)
            self.events.append(event)
            return event

    async def until(
        self, predicate: Callable[[Event], bool], timeout: float = EVENT_TIMEOUT
    ) -> Event:
        """Read events until one matches ``predicate``; fail loudly on close or timeout."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no matching event in {timeout} s; got {self.kinds()}")
            try:
                event = await self.next_event(remaining)
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"no matching event in {timeout} s; got {self.kinds()}"
                ) from None
            if event is None:
                raise AssertionError(f"stream closed before a matching event; got {self.kinds()}")
            if predicate(event):
                return event

    async def next_error(self, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next error frame; event frames before it are collected in ``events``."""
        while True:
            frame = await self.next_frame(timeout)
            if frame is None:
                raise AssertionError("stream closed before an error frame")
            data = json.loads(frame)
            if "error" in data and "kind" not in data:
                self.errors.append(data)
                return dict(data)
            self.events.append(event_from_json(frame))

    async def send(self, data: dict[str, Any] | str) -> None:
        await self.connection.write_message(data if isinstance(data, str) else json.dumps(data))

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def close(self) -> None:
        self.connection.close()


def agent_settings(llm: LLMConfig, **options: Any) -> AgentSettings:
    """Settings for a test conversation: the scripted LLM, short timeouts."""
    values: dict[str, Any] = {"llm": llm, "command_timeout": 30.0, "python_timeout": 60.0}
    values.update(options)
    return AgentSettings(**values)


def launch_runtime(
    tmp_path: Path, name: str, extra_args: list[str], env: dict[str, str]
) -> RuntimeProcess:
    """Start a runtime as a process sandbox does and wait for its ready line."""
    root = tmp_path / "conversations"
    log_file = tmp_path / f"{name}.log"
    ready_file = tmp_path / f"{name}.ready.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_convo.runtime",
            "--conversations-root",
            str(root),
            "--port",
            "0",
            "--ready-file",
            str(ready_file),
            "--log-file",
            str(log_file),
            *extra_args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        ready = read_ready_line(proc, READY_TIMEOUT, log_file)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=EXIT_TIMEOUT)
        raise
    assert proc.stdout is not None
    proc.stdout.close()  # as the manager does: the runtime must not need its parent
    return RuntimeProcess(
        proc=proc,
        port=ready["port"],
        key=env["JUPYTER_CONVO_SESSION_KEY"],
        root=root,
        log_file=log_file,
        ready_file=ready_file,
        ready=ready,
    )


StartRuntime = Callable[..., Awaitable[RuntimeProcess]]
