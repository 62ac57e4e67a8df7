"""HTTP and WebSocket handlers of the runtime API.

Every route but ``/alive`` checks the session key first. Errors are always JSON
(``{"error": ..., "status": N}``), never an HTML page, and pass through the redactor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tornado.web
import tornado.websocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from tornado import httputil

from .._version import __version__
from ..events.inputs import UserInput
from ..events.log import EventLogError
from ..events.schema import EVENT_KINDS, Event, event_to_json
from .app import RuntimeState
from .auth import SESSION_KEY_HEADER
from .models import CreateConversationRequest
from .workspace import WorkspaceFileError, list_entries, read_text, save_uploads, write_zip

if TYPE_CHECKING:
    # The agent stack (openai SDK, jupyter_client) is imported when a conversation binds,
    # so the runtime is ready sooner; ``__main__`` preloads it right after the ready line.
    from .session import ConversationSession

log = logging.getLogger(__name__)

USER_INPUT: TypeAdapter[UserInput] = TypeAdapter(UserInput)
M = TypeVar("M", bound=BaseModel)
ZIP_CHUNK_BYTES = 256 * 1024
# Events read per batch when a WebSocket client catches up on stored events.
WS_BATCH = 500
# Bytes a live stream may have waiting in its write buffer and still write directly.
DIRECT_WRITE_BUFFER = 1024 * 1024
# Bytes of a refused upload read (and dropped) before answering; beyond, the answer comes
# at once and the connection is closed.
REFUSED_BODY_CEILING = 1024 * 1024


class ApiError(tornado.web.HTTPError):
    """An HTTP error whose message is shown to the client as is."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, reason=None)
        self.message = message

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.message}"


def describe_validation_error(exc: ValidationError, what: str) -> str:
    """A one-line message naming each bad field (never echoing the input: it may be secret)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(item) for item in error["loc"]) or what
        parts.append(f"{where}: {error['msg']}")
    return f"invalid {what}: " + "; ".join(parts)


def state_of(handler: tornado.web.RequestHandler) -> RuntimeState:
    return cast(RuntimeState, handler.application.settings["runtime_state"])


def check_key(handler: tornado.web.RequestHandler) -> None:
    presented = handler.request.headers.get(SESSION_KEY_HEADER)
    if not state_of(handler).session_key.check(presented):
        reason = "missing" if not presented else "wrong"
        log.info(
            "refused %s %s: %s session key",
            handler.request.method,
            handler.request.path,
            reason,
        )
        raise ApiError(401, f"{reason} {SESSION_KEY_HEADER} header")


def bound_session(handler: tornado.web.RequestHandler, conversation_id: str) -> ConversationSession:
    session = state_of(handler).session
    if session is None or session.conversation_id != conversation_id:
        raise ApiError(404, f"conversation {conversation_id!r} is not hosted by this runtime")
    return session


class RuntimeHandler(tornado.web.RequestHandler):
    """JSON in, JSON out, session key required (unless ``requires_key`` is False)."""

    requires_key = True

    @property
    def runtime(self) -> RuntimeState:
        return state_of(self)

    def prepare(self) -> None:
        if self.requires_key:
            check_key(self)

    def write_json(self, data: Any, status: int = 200) -> Awaitable[None]:
        """Answer ``data`` as JSON; await the result to know it was sent."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        return self.finish(json.dumps(data))

    def write_model(self, model: BaseModel, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(model.model_dump_json())

    def parse_body(self, model: type[M]) -> M:
        try:
            return model.model_validate_json(self.request.body or b"")
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, "request body")) from exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            message = exc.message
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        message = self.runtime.secrets.redact(message)
        self.clear_header("Content-Disposition")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": message, "status": status_code}))


class NotFoundHandler(RuntimeHandler):
    def prepare(self) -> None:
        super().prepare()
        raise ApiError(404, f"no route {self.request.path}")


# --- liveness ------------------------------------------------------------------------------


class AliveHandler(RuntimeHandler):
    requires_key = False

    def get(self) -> None:
        self.write_json({"status": "ok"})


class HealthHandler(RuntimeHandler):
    async def get(self) -> None:
        # ``?wait=preload``: answer once the agent modules are imported, so a warm pool
        # counts this runtime as idle only when a bind will not wait for them.
        if self.get_argument("wait", None) == "preload":
            await self.runtime.wait_preloaded()
        session = self.runtime.session
        preload = self.runtime.preload
        self.write_json(
            {
                "status": "ok",
                "uptime": round(self.runtime.uptime, 3),
                "conversation_id": session.conversation_id if session else None,
                "runtime_status": session.runtime_status.value if session else None,
                "pid": os.getpid(),
                "version": __version__,
                "preloaded": preload is None or preload.done(),
            }
        )


# --- conversation ----------------------------------------------------------------------------


class CreateConversationHandler(RuntimeHandler):
    async def post(self) -> None:
        await self.runtime.wait_preloaded()
        from .session import ConversationSession, SessionStartError

        request = self.parse_body(CreateConversationRequest)
        state = self.runtime
        async with state.bind_lock:
            session = state.session
            if session is not None:
                if session.conversation_id != request.conversation_id:
                    raise ApiError(
                        409,
                        f"this runtime hosts conversation {session.conversation_id!r}; "
                        f"it cannot also host {request.conversation_id!r}",
                    )
                if session.closed.is_set():
                    raise ApiError(409, f"conversation {session.conversation_id!r} is stopped")
                if request.session_api_key:
                    self._rotate(request.session_api_key)
                self.write_model(session.info())
                return
            try:
                session = ConversationSession(
                    request,
                    conversations_root=state.settings.conversations_root,
                    secrets=state.secrets,
                )
            except EventLogError as exc:
                raise ApiError(409, f"cannot open the conversation's log: {exc}") from exc
            except (OSError, ValueError) as exc:
                raise ApiError(400, f"cannot open the conversation: {exc}") from exc
            if request.session_api_key:
                self._rotate(request.session_api_key)
            state.session = session
            try:
                await session.start()
            except SessionStartError as exc:
                state.session = None
                raise ApiError(500, f"conversation could not start: {exc}") from exc
        self.write_model(session.info(), status=201)

    def _rotate(self, key: str) -> None:
        try:
            self.runtime.session_key.rotate(key)
        except ValueError as exc:
            raise ApiError(400, f"invalid session_api_key: {exc}") from exc
        self.runtime.secrets.add(key)
        log.info("session key rotated")


class ConversationHandler(RuntimeHandler):
    def get(self, conversation_id: str) -> None:
        self.write_model(bound_session(self, conversation_id).info())


class EventsHandler(RuntimeHandler):
    async def post(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        try:
            item = USER_INPUT.validate_json(self.request.body or b"")
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, "user input")) from exc
        event = await deliver_input(session, item)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(event_to_json(event))


async def deliver_input(session: ConversationSession, item: UserInput) -> Event:
    """Hand ``item`` to the controller, turning its refusals into API errors."""
    from .session import SessionBusy, SessionClosed, SessionStartError

    try:
        return await session.handle_input(item)
    except (SessionClosed, SessionBusy) as exc:
        raise ApiError(409, str(exc)) from exc
    except SessionStartError as exc:
        raise ApiError(409, f"conversation did not start: {exc}") from exc
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc


class EventQuery(BaseModel):
    """Query parameters of ``events/search`` and ``events/count``."""

    model_config = ConfigDict(extra="forbid")

    after_id: int | None = Field(default=None, ge=-1)
    before_id: int | None = Field(default=None, ge=0)
    kind: list[str] | None = None
    source: str | None = Field(default=None, pattern=r"^(agent|user|environment)$")
    text: str | None = None
    reverse: bool = False
    limit: int = Field(default=100, ge=1, le=1000)
    page_id: str | None = None

    @field_validator("kind")
    @classmethod
    def _known_kinds(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        kinds = [part for item in value for part in item.split(",") if part]
        unknown = sorted(set(kinds) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(f"unknown event kind(s) {', '.join(unknown)}")
        return kinds or None


class EventQueryMixin(RuntimeHandler):
    def event_query(self, *, paged: bool) -> EventQuery:
        raw: dict[str, Any] = {}
        for name, values in self.request.query_arguments.items():
            decoded = [value.decode("utf-8", "replace") for value in values]
            raw[name] = decoded if name == "kind" else decoded[-1]
        if not paged:
            for name in ("reverse", "limit", "page_id"):
                if name in raw:
                    raise ApiError(400, f"invalid query: {name}: not accepted by count")
        try:
            return EventQuery.model_validate(raw)
        except ValidationError as exc:
            raise ApiError(400, describe_validation_error(exc, "query")) from exc


class EventSearchHandler(EventQueryMixin):
    def get(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        query = self.event_query(paged=True)
        try:
            page = session.log.search(
                after_id=query.after_id,
                before_id=query.before_id,
                kind=query.kind,
                source=query.source,
                text=query.text,
                reverse=query.reverse,
                limit=query.limit,
                page_id=query.page_id,
            )
        except ValueError as exc:
            raise ApiError(400, f"invalid query: {exc}") from exc
        items = ",".join(event_to_json(event) for event in page.items)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(f'{{"items": [{items}], "next_page_id": {json.dumps(page.next_page_id)}}}')


class EventCountHandler(EventQueryMixin):
    def get(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        query = self.event_query(paged=False)
        try:
            count = session.log.count(
                after_id=query.after_id,
                before_id=query.before_id,
                kind=query.kind,
                source=query.source,
                text=query.text,
            )
        except ValueError as exc:
            raise ApiError(400, f"invalid query: {exc}") from exc
        self.write_json({"count": count})


class StopHandler(RuntimeHandler):
    async def post(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        await session.stop()
        await self.write_json({"status": "STOPPED"})
        self.runtime.notify_stopped()


# --- workspace -------------------------------------------------------------------------------


class WorkspaceHandler(RuntimeHandler):
    def workspace_error(self, exc: WorkspaceFileError) -> ApiError:
        return ApiError(exc.status, str(exc))


class ListFilesHandler(WorkspaceHandler):
    async def get(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        path = self.get_query_argument("path", None)
        try:
            entries = await asyncio.to_thread(list_entries, session.workspace, path)
        except WorkspaceFileError as exc:
            raise self.workspace_error(exc) from exc
        self.write_json(entries)


class SelectFileHandler(WorkspaceHandler):
    async def get(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        file = self.get_query_argument("file", None)
        if file is None:
            raise ApiError(400, "invalid query: file: Field required")
        try:
            content = await asyncio.to_thread(read_text, session.workspace, file)
        except WorkspaceFileError as exc:
            raise self.workspace_error(exc) from exc
        self.write_json({"file": file, "content": content})


@tornado.web.stream_request_body
class UploadFilesHandler(WorkspaceHandler):
    """Multipart uploads, limited per request.

    Refusals (no key, unknown conversation, a body over the limit) are answered after the
    body was read and thrown away: answering first would close the connection on unread
    data, which can reset it before the client reads the answer. Only bodies past a
    ceiling are cut short.
    """

    def prepare(self) -> None:
        self._limit = self.runtime.settings.max_upload_bytes
        self._chunks: list[bytes] = []
        self._received = 0
        self._deferred: ApiError | None = None
        try:
            check_key(self)
            bound_session(self, self.path_kwargs["conversation_id"])
        except ApiError as exc:
            if self.request.method != "POST":
                raise
            self._deferred = exc
        if self._deferred is not None:
            ceiling = REFUSED_BODY_CEILING
        else:
            ceiling = 2 * self._limit + REFUSED_BODY_CEILING
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(ceiling)
        length = self.request.headers.get("Content-Length")
        size = int(length) if length is not None and length.isdigit() else 0
        if size > ceiling:
            raise self._deferred or self._too_large_error(size)
        self._too_large = size > self._limit

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._received > self._limit:
            self._too_large = True
            self._chunks.clear()
        if not self._too_large and self._deferred is None:
            self._chunks.append(chunk)

    def _too_large_error(self, size: int) -> ApiError:
        return ApiError(
            413,
            f"upload of {size} bytes is over the limit of {self._limit} bytes per request "
            "(--max-upload-bytes); send fewer or smaller files per request",
        )

    async def post(self, conversation_id: str) -> None:
        if self._deferred is not None:
            raise self._deferred
        session = bound_session(self, conversation_id)
        if self._too_large:
            raise self._too_large_error(self._received)
        content_type = self.request.headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, "upload-files expects a multipart/form-data body")
        arguments: dict[str, list[bytes]] = {}
        files: dict[str, list[httputil.HTTPFile]] = {}
        body = b"".join(self._chunks)
        self._chunks = []
        try:
            httputil.parse_body_arguments(content_type, body, arguments, files)
        except httputil.HTTPInputError as exc:
            raise ApiError(400, f"invalid multipart body: {exc}") from exc
        items = [(upload.filename, upload.body) for parts in files.values() for upload in parts]
        if not items:
            raise ApiError(400, "the request holds no files (multipart parts with a filename)")
        result = await asyncio.to_thread(save_uploads, session.workspace, items)
        self.write_json({"uploaded": result.uploaded, "skipped": result.skipped})


class WorkspaceZipHandler(WorkspaceHandler):
    async def get(self, conversation_id: str) -> None:
        session = bound_session(self, conversation_id)
        with tempfile.TemporaryFile(prefix="workspace-", suffix=".zip") as tmp:
            await asyncio.to_thread(write_zip, session.workspace, tmp)
            size = tmp.tell()
            tmp.seek(0)
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Length", str(size))
            self.set_header(
                "Content-Disposition", f'attachment; filename="{conversation_id}-workspace.zip"'
            )
            while chunk := tmp.read(ZIP_CHUNK_BYTES):
                self.write(chunk)
                await self.flush()
        self.finish()


# --- event stream ----------------------------------------------------------------------------


class EventStreamHandler(tornado.websocket.WebSocketHandler):
    """Stored events after ``after_id``, then live ones; accepts ``UserInput`` frames.

    Live events are written from the log's subscriber callback, in the append itself, when
    that happens on the event loop's thread and the socket keeps up: the frame leaves at
    once, not when the agent next gives the loop a turn (found by bench/bench_relay.py:
    ~8 ms per event in the runtime before). Otherwise (a catch-up, an append from another
    thread, a slow reader with a full write buffer) the pump task reads the log and awaits
    each write, as a reader of the log would.
    """

    def initialize(self) -> None:
        self._pump: asyncio.Task[None] | None = None
        self._session: ConversationSession | None = None
        self._after_id = -1
        self._direct = False
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._unsubscribe: Callable[[], None] | None = None

    def prepare(self) -> None:
        check_key(self)
        self._session = bound_session(self, self.path_kwargs["conversation_id"])
        raw = self.get_query_argument("after_id", "-1")
        try:
            self._after_id = int(raw)
        except ValueError as exc:
            raise ApiError(400, f"invalid query: after_id: {raw!r} is not an integer") from exc
        if self._after_id < -1:
            raise ApiError(400, "invalid query: after_id: must be -1 or more")
        if self._session.closed.is_set():
            raise ApiError(409, f"conversation {self._session.conversation_id!r} is stopped")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Only reached before the upgrade (afterwards errors close the stream).
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.message if isinstance(exc, ApiError) else self._reason
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"error": message, "status": status_code}))

    def open(self, *args: str, **kwargs: str) -> None:
        assert self._session is not None
        # Small frames go out at once (Nagle would hold each until the last is ACKed).
        self.set_nodelay(True)
        self._unsubscribe = self._session.log.subscribe(self._on_logged)
        self._pump = asyncio.create_task(self._send_events(self._session))

    def _on_logged(self, event: Event) -> None:
        """The log's subscriber (called in the appending thread, under the log's lock)."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop and self._direct and event.id == self._after_id + 1 and self._keeps_up():
            try:
                sent = self.write_message(event_to_json(event))
            except tornado.websocket.WebSocketClosedError:
                self._direct = False
                return
            sent.add_done_callback(_consume_error)
            self._after_id = event.id
            return
        self._direct = False
        if on_loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _keeps_up(self) -> bool:
        connection = self.ws_connection
        stream = getattr(connection, "stream", None)
        buffered = getattr(stream, "_write_buffer_size", 0)
        return isinstance(buffered, int) and buffered < DIRECT_WRITE_BUFFER

    async def _send_events(self, session: ConversationSession) -> None:
        try:
            with session.subscriber():
                while True:
                    self._wake.clear()
                    batch = session.log.read(after_id=self._after_id, limit=WS_BATCH)
                    for event in batch:
                        await self.write_message(event_to_json(event))
                        self._after_id = event.id
                    if batch:
                        continue
                    if session.closing.is_set():
                        break
                    # Caught up: live events go out from the log's callback from now on.
                    self._direct = True
                    await _first_of(self._wake.wait(), session.closing.wait())
                    self._direct = False
        except tornado.websocket.WebSocketClosedError:
            return
        except Exception:
            log.exception("event stream of %s failed", session.conversation_id)
            self.close(1011, "event stream failed")
            return
        finally:
            self._direct = False
            if self._unsubscribe is not None:
                self._unsubscribe()
        self.close(1001, "conversation stopped")

    async def on_message(self, message: str | bytes) -> None:
        session = self._session
        assert session is not None
        try:
            item = USER_INPUT.validate_json(message)
        except ValidationError as exc:
            await self._send_error(400, describe_validation_error(exc, "user input"))
            return
        try:
            await deliver_input(session, item)
        except ApiError as exc:
            await self._send_error(exc.status_code, exc.message)
        except Exception as exc:
            log.exception("user input over the WebSocket failed")
            await self._send_error(500, str(exc))

    async def _send_error(self, status: int, message: str) -> None:
        text = state_of(self).secrets.redact(message)
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            await self.write_message(json.dumps({"error": text, "status": status}))

    def on_close(self) -> None:
        self._direct = False
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()


def _consume_error(future: asyncio.Future[None]) -> None:
    """A frame written without waiting: a closed socket is noticed by the pump."""
    if not future.cancelled():
        future.exception()


async def _first_of(*awaitables: Any) -> None:
    """Wait until any of ``awaitables`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
