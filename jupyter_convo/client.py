"""Clients for the server API (`{base_url}api/convo/`), async and sync, with server discovery.

The kernel side (magics, widgets) and the CLI talk to the server only through this module,
over HTTP and WebSocket; they never import server code. Discovery order: the
``JUPYTER_CONVO_URL`` / ``JUPYTER_CONVO_TOKEN`` environment variables, else the running
Jupyter servers of this user (``jupyter_server.serverapp.list_running_servers``) that answer
on the convo routes, else a ``ServerNotFound`` error that says what to do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

API_PREFIX = "api/convo/"
URL_ENV = "JUPYTER_CONVO_URL"
TOKEN_ENV = "JUPYTER_CONVO_TOKEN"
# Agent states in which the agent does nothing until someone acts (answers, confirms,
# resumes, restarts): ``events(..., until_idle=True)`` ends on the first of them.
RESTING_STATES = frozenset(
    {
        "awaiting_user_input",
        "awaiting_user_confirmation",
        "finished",
        "error",
        "stopped",
        "paused",
        "rate_limited",
    }
)
# Resting states that mean the task did not get done.
FAILED_STATES = frozenset({"error", "rate_limited"})


def ends_activity(event: dict[str, Any]) -> bool:
    """Whether the agent rests after ``event``: a resting agent state, or the runtime gone
    (an ``error`` event whose code starts with ``RUNTIME``, e.g. ``RUNTIME_DIED``)."""
    if event.get("kind") == "agent_state":
        return event.get("state") in RESTING_STATES
    return event.get("kind") == "error" and str(event.get("code", "")).startswith("RUNTIME")


def sandbox_problem(capabilities: dict[str, Any], kind: str) -> str | None:
    """Why a new conversation cannot run in sandbox ``kind`` on the server that answered
    ``capabilities``, naming what it offers; None when it can."""
    kinds = {info["kind"]: info for info in capabilities.get("sandboxes", [])}
    info = kinds.get(kind)
    if info is not None and info.get("available"):
        return None
    offered = ", ".join(
        name if item.get("available") else f"{name} (unavailable: {item.get('reason')})"
        for name, item in sorted(kinds.items())
    )
    if info is None:
        return f"unknown sandbox {kind!r}; the server offers: {offered or 'none'}"
    return f"sandbox {kind!r} is not available: {info.get('reason')}; the server offers: {offered}"


class ConvoClientError(Exception):
    """A request the server refused; ``status`` is the HTTP status, ``message`` its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ServerNotFound(ConvoClientError):
    """No Jupyter server with jupyter-convo could be found or reached."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


NO_SERVER_HELP = (
    "No Jupyter server with jupyter-convo was found. Start one with `jupyter lab` "
    "(the extension is enabled on install; check `jupyter server extension list`), "
    f"or point to a server with {URL_ENV}=http://host:port/ and {TOKEN_ENV}=<token>."
)


@dataclass(frozen=True)
class ServerInfo:
    """Where a server lives: ``url`` ends with the server's base_url and a slash."""

    url: str
    token: str = ""

    @property
    def api_url(self) -> str:
        return self.url.rstrip("/") + "/" + API_PREFIX

    @property
    def ws_api_url(self) -> str:
        parts = urlsplit(self.api_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"} if self.token else {}


def _candidate_servers() -> list[ServerInfo]:
    url = os.environ.get(URL_ENV)
    if url:
        return [
            ServerInfo(
                url=url if url.endswith("/") else url + "/", token=os.environ.get(TOKEN_ENV, "")
            )
        ]
    return [
        ServerInfo(url=info["url"], token=info.get("token", ""))
        for info in _running_servers()
        if info.get("url")
    ]


def _running_servers() -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` records of live servers, newest first.

    What ``jupyter_server.serverapp.list_running_servers`` reads, without importing the
    server (seconds of imports in a kernel that only wants to talk to it). Records of dead
    servers are skipped, not deleted: they belong to the server that wrote them.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    records: list[tuple[float, dict[str, Any]]] = []
    runtime_dir = jupyter_runtime_dir()
    try:
        names = os.listdir(runtime_dir)
    except OSError:
        return []
    for name in names:
        if not (name.startswith("jpserver-") and name.endswith(".json")):
            continue
        path = os.path.join(runtime_dir, name)
        try:
            with open(path, encoding="utf-8") as file:
                info = json.load(file)
            modified = os.path.getmtime(path)
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and _pid_alive(info.get("pid")):
            records.append((modified, info))
    return [info for _, info in sorted(records, key=lambda item: item[0], reverse=True)]


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def server_problem(server: ServerInfo, timeout: float = 5.0) -> str | None:
    """Why ``server`` cannot serve jupyter-convo, in a few words; None when it can."""
    try:
        response = httpx.get(
            server.api_url + "conversations/count", headers=server.headers(), timeout=timeout
        )
    except httpx.HTTPError as exc:
        return f"unreachable ({exc.__class__.__name__})"
    if response.status_code == 200:
        return None
    if response.status_code == 404:
        return "the jupyter-convo server extension is not enabled"
    if response.status_code in (401, 403):
        return f"refused the credentials (set {TOKEN_ENV})"
    return f"answered {response.status_code}"


def discover_server(
    timeout: float = 5.0, candidates: Sequence[ServerInfo] | None = None
) -> ServerInfo:
    """The first server that answers on the convo routes, else ``ServerNotFound``.

    ``candidates`` (default: the environment, then the running servers) are tried in order.
    """
    if candidates is None:
        candidates = _candidate_servers()
    if not candidates:
        raise ServerNotFound(NO_SERVER_HELP)
    problems: list[str] = []
    for server in candidates:
        problem = server_problem(server, timeout)
        if problem is None:
            return server
        problems.append(f"{server.url}: {problem}")
    raise ServerNotFound(NO_SERVER_HELP + " Tried: " + "; ".join(problems))


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body.get("error") or body)
    return str(body)


def _query(params: dict[str, Any]) -> dict[str, Any]:
    """Drop unset parameters; booleans as the server reads them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class _Routes:
    """Paths and payloads of the server API, shared by both clients."""

    @staticmethod
    def conversation(conversation_id: str, suffix: str = "") -> str:
        return f"conversations/{conversation_id}" + (f"/{suffix}" if suffix else "")


class AsyncConvoClient:
    """Async client: one method per server route, plus an event stream over WebSocket."""

    def __init__(self, server: ServerInfo | None = None, *, timeout: float = 30.0) -> None:
        self.server = server or discover_server()
        self._http = httpx.AsyncClient(
            base_url=self.server.api_url, headers=self.server.headers(), timeout=timeout
        )

    async def __aenter__(self) -> AsyncConvoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        files: Any = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, params=_query(params or {}), json=json_body, files=files
            )
        except httpx.HTTPError as exc:
            raise ServerNotFound(
                f"The Jupyter server at {self.server.url} is unreachable: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise ConvoClientError(response.status_code, _error_message(response))
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    # conversations
    async def search(self, **filters: Any) -> dict[str, Any]:
        return await self.request("GET", "conversations/search", params=filters)

    async def count(self, **filters: Any) -> int:
        return int((await self.request("GET", "conversations/count", params=filters))["count"])

    async def get(self, conversation_id: str) -> dict[str, Any]:
        return await self.request("GET", _Routes.conversation(conversation_id))

    async def get_many(self, ids: list[str]) -> list[dict[str, Any] | None]:
        return await self.request("GET", "conversations", params={"ids": ids})

    async def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        return await self.request(
            "PATCH", _Routes.conversation(conversation_id), json_body={"title": title}
        )

    async def delete(self, conversation_id: str) -> None:
        await self.request("DELETE", _Routes.conversation(conversation_id))

    async def create(self, **options: Any) -> dict[str, Any]:
        """Start a conversation; returns the first start task (the rest runs on the server)."""
        return await self.request("POST", "conversations", json_body=options)

    async def start_task(self, task_id: str) -> dict[str, Any] | None:
        tasks = await self.request("GET", "start-tasks", params={"ids": [task_id]})
        return tasks[0] if tasks else None

    async def stream_start(self, **options: Any) -> AsyncIterator[dict[str, Any]]:
        """Start a conversation and yield each start-task update until READY or ERROR."""
        async with self._http.stream(
            "POST", "conversations/stream-start", json=options
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ConvoClientError(response.status_code, _error_message(response))
            decoder = _JsonListDecoder()
            async for chunk in response.aiter_text():
                for item in decoder.feed(chunk):
                    yield item

    async def start(self, conversation_id: str) -> dict[str, Any]:
        return await self.request(
            "POST", _Routes.conversation(conversation_id, "start"), json_body={}
        )

    async def stop(self, conversation_id: str) -> dict[str, Any]:
        return await self.request(
            "POST", _Routes.conversation(conversation_id, "stop"), json_body={}
        )

    async def send_message(
        self, conversation_id: str, text: str, image_urls: list[str] | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "POST",
            _Routes.conversation(conversation_id, "messages"),
            json_body={"text": text, "image_urls": image_urls or []},
        )

    async def send_input(self, conversation_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """A user input (confirmation answer, pause/resume) as in ``events.inputs``."""
        return await self.request(
            "POST", _Routes.conversation(conversation_id, "events"), json_body=data
        )

    async def confirm(
        self, conversation_id: str, action_id: int, confirmed: bool, reason: str = ""
    ) -> dict[str, Any]:
        return await self.send_input(
            conversation_id,
            {
                "kind": "confirmation",
                "action_id": action_id,
                "confirmed": confirmed,
                "reason": reason,
            },
        )

    async def search_events(self, conversation_id: str, **filters: Any) -> dict[str, Any]:
        return await self.request(
            "GET", _Routes.conversation(conversation_id, "events/search"), params=filters
        )

    async def count_events(self, conversation_id: str, **filters: Any) -> int:
        body = await self.request(
            "GET", _Routes.conversation(conversation_id, "events/count"), params=filters
        )
        return int(body["count"])

    async def all_events(self, conversation_id: str, after_id: int = -1) -> list[dict[str, Any]]:
        """Every stored event after ``after_id``, following pages."""
        events: list[dict[str, Any]] = []
        page_id: str | None = None
        while True:
            page = await self.search_events(
                conversation_id, after_id=after_id, limit=1000, page_id=page_id
            )
            events.extend(page["items"])
            page_id = page.get("next_page_id")
            if not page_id:
                return events

    async def events(
        self, conversation_id: str, after_id: int = -1, *, until_idle: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Stored events after ``after_id``, then live ones, over the server's WebSocket.

        Without ``until_idle`` it follows the conversation until the stream closes (the
        conversation stops or is deleted). With it, it also ends after the first event
        after ``after_id`` that leaves the agent resting (``ends_activity``): waiting for
        the user, finished, stopped or failed.
        """
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = self.server.ws_api_url + _Routes.conversation(conversation_id, "events/ws")
        url += "?" + urlencode({"after_id": after_id})
        connection = await websocket_connect(HTTPRequest(url, headers=self.server.headers()))
        try:
            while True:
                frame = await connection.read_message()
                if frame is None:
                    return
                event = json.loads(frame)
                yield event
                if until_idle and ends_activity(event):
                    return
        finally:
            connection.close()

    # workspace
    async def list_files(self, conversation_id: str, path: str | None = None) -> list[str]:
        return await self.request(
            "GET", _Routes.conversation(conversation_id, "files"), params={"path": path}
        )

    async def read_file(self, conversation_id: str, path: str) -> dict[str, Any]:
        return await self.request(
            "GET", _Routes.conversation(conversation_id, "files/content"), params={"path": path}
        )

    async def upload(self, conversation_id: str, files: dict[str, bytes]) -> dict[str, Any]:
        return await self.request(
            "POST",
            _Routes.conversation(conversation_id, "files"),
            files=[("files", (name, data)) for name, data in files.items()],
        )

    async def workspace_zip(self, conversation_id: str) -> bytes:
        return await self.request("GET", _Routes.conversation(conversation_id, "workspace.zip"))

    # settings and runtimes
    async def get_settings(self) -> dict[str, Any]:
        return await self.request("GET", "settings")

    async def update_settings(self, **changes: Any) -> dict[str, Any]:
        return await self.request("PUT", "settings", json_body=changes)

    async def runtimes(self) -> list[dict[str, Any]]:
        return await self.request("GET", "runtimes")

    async def capabilities(self) -> dict[str, Any]:
        """The sandbox kinds and agent backends the server offers (``GET capabilities``)."""
        return await self.request("GET", "capabilities")


class _JsonListDecoder:
    """Incrementally decodes a streamed JSON list (``[`` item ``,`` item ... ``]``)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        self._buffer += chunk
        items: list[dict[str, Any]] = []
        while True:
            text = self._buffer.lstrip().lstrip("[,").lstrip()
            if not text or text.startswith("]"):
                self._buffer = text
                return items
            try:
                item, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._buffer = text
                return items
            items.append(item)
            self._buffer = text[end:]


class ConvoClient:
    """Blocking client for scripts, the CLI and notebook code.

    Each call runs the async client on a private event loop in a helper thread, so it is
    safe inside a Jupyter kernel (whose own loop is already running).
    """

    def __init__(self, server: ServerInfo | None = None, *, timeout: float = 30.0) -> None:
        self.server = server or discover_server()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="convo-client", daemon=True
        )
        self._thread.start()
        self._async = self._call(self._make_async(timeout))

    async def _make_async(self, timeout: float) -> AsyncConvoClient:
        return AsyncConvoClient(self.server, timeout=timeout)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    @property
    def aio(self) -> AsyncConvoClient:
        """The async client behind this one, for coroutines run with ``submit``."""
        client: AsyncConvoClient = self._async
        return client

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run ``coroutine`` on this client's loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` in this client's loop thread."""
        self._loop.call_soon_threadsafe(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` in this client's loop thread after ``delay`` seconds."""
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, callback, *args)

    @property
    def in_loop_thread(self) -> bool:
        """True in this client's own thread, where blocking calls would deadlock."""
        return threading.current_thread() is self._thread

    def close(self) -> None:
        if self._loop.is_running():
            self._call(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> ConvoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        """Blocking twins of every ``AsyncConvoClient`` coroutine method."""
        method = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(method):
            raise AttributeError(name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._call(method(*args, **kwargs))

        return blocking

    def stream_start(self, **options: Any) -> Iterator[dict[str, Any]]:
        return self._iterate(self._async.stream_start(**options))

    def events(
        self, conversation_id: str, after_id: int = -1, *, until_idle: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Stored then live events; stop iterating (or close the generator) to disconnect.
        ``until_idle=True`` ends once the agent rests (see ``AsyncConvoClient.events``)."""
        return self._iterate(self._async.events(conversation_id, after_id, until_idle=until_idle))

    def _iterate(self, source: AsyncIterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            try:
                async for item in source:
                    items.put(("item", item))
            except Exception as exc:  # handed to the consuming thread
                items.put(("error", exc))
            finally:
                items.put(("end", None))

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                tag, value = items.get()
                if tag == "end":
                    return
                if tag == "error":
                    raise value
                yield value
        finally:
            future.cancel()
