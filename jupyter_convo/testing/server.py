"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from scripts.

It is the project's only test double, at the LLM boundary: our code reaches it through the
real ``openai`` SDK. The server runs ``http.server`` in a thread of its own, so it works the
same from pytest, from asyncio code and inside a Jupyter kernel (no event loop involved).

Routes: ``POST /v1/chat/completions`` (JSON, or SSE when ``stream`` is true, with a usage
chunk when ``stream_options.include_usage``) and ``GET /v1/models``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .script import (
    Routed,
    Script,
    ScriptBook,
    ScriptedError,
    ScriptedResponse,
    ScriptFile,
    ScriptItem,
    first_user_text,
    load_script_file,
    no_script_message,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "scripted-model"
# How long a held answer (delay/gate) waits between checks that the server is stopping.
_HOLD_POLL = 0.05


class ScriptedLLM:
    """Scripts, the requests received, and the server that serves them.

    ``llm.start()`` returns the running ``ScriptedServer`` (``await llm.start()`` works too);
    ``with llm.serve() as server:`` starts and stops around a block.
    """

    def __init__(
        self,
        *,
        models: Sequence[str] = (DEFAULT_MODEL,),
        require_api_key: str | None = None,
        stream_chunk_chars: int = 8,
        send_usage: bool = True,
        accept_stream_options: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if stream_chunk_chars < 1:
            raise ValueError("stream_chunk_chars must be at least 1")
        self.models = list(models) or [DEFAULT_MODEL]
        # When set, requests without "Authorization: Bearer <key>" get a 401.
        self.require_api_key = require_api_key
        self.stream_chunk_chars = stream_chunk_chars
        # Emulate endpoints that report no usage, or that reject ``stream_options`` (400).
        self.send_usage = send_usage
        self.accept_stream_options = accept_stream_options
        self.host = host
        self.port = port
        self.book = ScriptBook()
        self._requests: list[dict[str, Any]] = []
        self._requests_changed = threading.Condition()
        self._gates: dict[str, threading.Event] = {}
        self._gates_lock = threading.Lock()
        self._response_counter = 0
        self._server: ScriptedServer | None = None

    # ------------------------------------------------------------ scripts

    def add_script(self, steps: Iterable[ScriptItem], match: str | None = None) -> None:
        """Add a script for conversations whose first user message contains ``match``.

        ``match=None`` is the default script. Adding a script with the same ``match``
        again replaces it (handy when a notebook cell is re-run).
        """
        self.book.add(Script(match=match, steps=list(steps)))

    def clear_scripts(self) -> None:
        self.book.clear()

    def load(self, script_file: ScriptFile) -> None:
        """Add every script of a script file and take its model list."""
        for script in script_file.scripts:
            self.book.add(script)
        self.models = list(script_file.models) or [DEFAULT_MODEL]

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> ScriptedLLM:
        llm = cls(**options)
        llm.load(load_script_file(path))
        return llm

    def to_script_file(self) -> ScriptFile:
        return ScriptFile(scripts=self.book.scripts, models=self.models)

    def save(self, path: str | Path) -> None:
        """Write the scripts as a JSON script file (for ``python -m jupyter_convo.testing``)."""
        Path(path).write_text(self.to_script_file().model_dump_json(indent=2), encoding="utf-8")

    # ------------------------------------------------------------ requests received

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every chat-completion request body received, in arrival order (a copy)."""
        with self._requests_changed:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` requests arrived; ``TimeoutError`` otherwise."""
        with self._requests_changed:
            arrived = self._requests_changed.wait_for(
                lambda: len(self._requests) >= count, timeout=timeout
            )
            if not arrived:
                raise TimeoutError(
                    f"ScriptedLLM received {len(self._requests)} request(s), "
                    f"expected {count} within {timeout}s"
                )
            return list(self._requests)

    def _record(self, body: dict[str, Any]) -> None:
        with self._requests_changed:
            self._requests.append(body)
            self._requests_changed.notify_all()

    # ------------------------------------------------------------ gates

    def open_gate(self, name: str) -> None:
        """Let answers held by ``gate=name`` go (now and from now on)."""
        self._gate(name).set()

    def _gate(self, name: str) -> threading.Event:
        with self._gates_lock:
            return self._gates.setdefault(name, threading.Event())

    # ------------------------------------------------------------ lifecycle

    @property
    def server(self) -> ScriptedServer:
        if self._server is None:
            raise RuntimeError("ScriptedLLM is not started: call llm.start() first")
        return self._server

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what an OpenAI client takes as ``base_url``."""
        return self.server.base_url

    def start(self) -> ScriptedServer:
        """Bind the port and serve in a background thread (idempotent)."""
        if self._server is None:
            self._server = ScriptedServer(self, self.host, self.port)
        return self._server

    def stop(self) -> None:
        """Stop serving and drop open connections (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    @contextmanager
    def serve(self) -> Generator[ScriptedServer, None, None]:
        server = self.start()
        try:
            yield server
        finally:
            self.stop()

    def __enter__(self) -> ScriptedLLM:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ScriptedLLM:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self._server.base_url if self._server else "stopped"
        return f"<ScriptedLLM {where} scripts={len(self.book.scripts)}>"

    # ------------------------------------------------------------ answering (server threads)

    def _next_response_id(self) -> str:
        with self._gates_lock:
            self._response_counter += 1
            return f"chatcmpl-scripted-{self._response_counter}"

    def _hold(self, item: ScriptedResponse, stopping: threading.Event) -> bool:
        """Wait out the item's delay and gate; False when the server stopped meanwhile."""
        deadline = time.monotonic() + item.delay
        while (remaining := deadline - time.monotonic()) > 0:
            if stopping.wait(min(remaining, _HOLD_POLL)):
                return False
        if item.gate is not None:
            gate = self._gate(item.gate)
            while not gate.wait(_HOLD_POLL):
                if stopping.is_set():
                    return False
        return not stopping.is_set()


class ScriptedServer:
    """One running server: ``port``, ``base_url``; awaitable so ``await llm.start()`` works."""

    def __init__(self, llm: ScriptedLLM, host: str, port: int) -> None:
        self.stopping = threading.Event()
        self.httpd = _HTTPServer((host, port), llm, self.stopping)
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"scripted-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("Scripted LLM serving at %s", self.base_url)

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.close_connections()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        log.info("Scripted LLM at %s stopped", self.base_url)

    def __await__(self) -> Generator[Any, None, ScriptedServer]:
        return self._ready().__await__()

    async def _ready(self) -> ScriptedServer:
        return self

    def __repr__(self) -> str:
        return f"<ScriptedServer {self.base_url}>"


class _HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that can drop its keep-alive connections when stopped."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], llm: ScriptedLLM, stopping: threading.Event
    ) -> None:
        self.llm = llm
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY the body waits for
    # the client's delayed ACK (~40 ms per answer on Linux).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("scripted LLM: %s", format % args)

    # ------------------------------------------------------------ routes

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "jupyter-convo-testing"}
                for m in self.server.llm.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_error(404, f"No route GET {path}", "invalid_request_error", "not_found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_json_body()
        if body is None:
            return
        if path != "/v1/chat/completions":
            self._send_error(404, f"No route POST {path}", "invalid_request_error", "not_found")
            return
        self._chat_completion(body)

    # ------------------------------------------------------------ chat completions

    def _chat_completion(self, body: dict[str, Any]) -> None:
        llm = self.server.llm
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._send_error(400, "'messages' must be a non-empty list", "invalid_request_error")
            return
        llm._record(body)
        if not self._authorized():
            return
        if "stream_options" in body and not llm.accept_stream_options:
            self._send_error(
                400,
                "Unrecognized request argument supplied: stream_options",
                "invalid_request_error",
            )
            return
        routed = llm.book.route(messages)
        if routed is None:
            # 400, not 5xx: asking again cannot help, so the agent fails at once and says why.
            self._send_error(
                400,
                no_script_message(first_user_text(messages), llm.book.scripts),
                "invalid_request_error",
                "no_script",
            )
            return
        item = routed.item
        if isinstance(item, ScriptedError):
            headers = {}
            if item.retry_after is not None:
                headers["Retry-After"] = _format_seconds(item.retry_after)
            self._send_json(item.status, item.body(), headers)
            return
        if item is None:
            self._send_exhausted(routed)
            return
        if not llm._hold(item, self.server.stopping):
            self.close_connection = True
            return
        response_id = llm._next_response_id()
        model = str(body.get("model") or llm.models[0])
        usage = _usage(item, body) if llm.send_usage else None
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            chunks = completion_chunks(
                item,
                response_id=response_id,
                model=model,
                usage=usage if include_usage else None,
                chunk_chars=llm.stream_chunk_chars,
                step=routed.step,
            )
            self._send_sse(chunks)
        else:
            self._send_json(
                200,
                completion(
                    item, response_id=response_id, model=model, usage=usage, step=routed.step
                ),
            )

    def _authorized(self) -> bool:
        expected = self.server.llm.require_api_key
        if expected is None:
            return True
        if self.headers.get("Authorization", "") == f"Bearer {expected}":
            return True
        self._send_error(
            401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
        )
        return False

    def _send_exhausted(self, routed: Routed) -> None:
        self._send_error(
            500,
            f"ScriptedLLM: the {routed.script_name} script ran out of steps: the request is at "
            f"step {routed.step} (it holds {routed.step} assistant messages) but the script "
            f"has only {routed.total_steps} response(s). Add steps to the script.",
            "server_error",
            "script_exhausted",
        )

    # ------------------------------------------------------------ wire helpers

    def _read_json_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            self._send_error(400, f"Request body is not valid JSON: {exc}", "invalid_request_error")
            return None
        if not isinstance(body, dict):
            self._send_error(400, "Request body must be a JSON object", "invalid_request_error")
            return None
        return body

    def _send_error(
        self, status: int, message: str, error_type: str, code: str | None = None
    ) -> None:
        body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        self._send_json(status, body)

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            log.debug("scripted LLM: client went away: %s", exc)
            self.close_connection = True

    def _send_sse(self, chunks: Iterable[dict[str, Any]]) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in chunks:
                self._write_chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError as exc:
            log.debug("scripted LLM: client went away mid-stream: %s", exc)
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


# ---------------------------------------------------------------- OpenAI payloads


def completion(
    item: ScriptedResponse,
    *,
    response_id: str,
    model: str,
    usage: dict[str, int] | None,
    step: int = 0,
) -> dict[str, Any]:
    """A ``chat.completion`` object for one scripted turn (usage omitted when None)."""
    message: dict[str, Any] = {"role": "assistant", "content": item.content}
    if item.tool_calls:
        message["tool_calls"] = [
            {
                "id": _tool_call_id(call.id, step, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for index, call in enumerate(item.tool_calls)
        ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": item.resolved_finish_reason(),
                "logprobs": None,
            }
        ],
        **({"usage": usage} if usage is not None else {}),
    }


def completion_chunks(
    item: ScriptedResponse,
    *,
    response_id: str,
    model: str,
    usage: dict[str, int] | None,
    chunk_chars: int = 8,
    step: int = 0,
) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one streamed turn, content and arguments split."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
        }
        if usage is not None:
            data["usage"] = None
        return data

    yield chunk({"role": "assistant", "content": "" if item.content is not None else None})
    for piece in _split(item.content or "", chunk_chars):
        yield chunk({"content": piece})
    for index, call in enumerate(item.tool_calls):
        head = {
            "index": index,
            "id": _tool_call_id(call.id, step, index),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        for piece in _split(call.arguments_json(), chunk_chars):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, item.resolved_finish_reason())
    if usage is not None:
        yield {
            "id": response_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }


def _usage(item: ScriptedResponse, body: dict[str, Any]) -> dict[str, int]:
    """Token counts: the script's, else about one token per four characters (deterministic)."""
    prompt_text = json.dumps([body.get("messages"), body.get("tools")], sort_keys=True)
    completion_chars = len(item.content or "") + sum(
        len(c.name) + len(c.arguments_json()) for c in item.tool_calls
    )
    prompt = item.prompt_tokens
    if prompt is None:
        prompt = max(1, math.ceil(len(prompt_text) / 4))
    completion_tokens = item.completion_tokens
    if completion_tokens is None:
        completion_tokens = max(1, math.ceil(completion_chars / 4))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def _tool_call_id(given: str | None, step: int, index: int) -> str:
    return given or f"call_{step}_{index}"


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
