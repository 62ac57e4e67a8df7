"""``WS conversations/{id}/events/ws?after_id=N``: a conversation's events, live.

The server relays through the manager (``subscribe``): stored events after ``after_id``,
then live ones, whether the runtime runs or not. Any number of clients may watch one
conversation; a client that reconnects with the last id it saw misses nothing.

Frames out: one JSON event per text frame, as stored (redacted). Frames in: ``UserInput``
JSON (``events.inputs``), forwarded to the runtime; as over REST, a message to a stopped
conversation restarts it. A frame that cannot be used is answered with an ``error`` event
frame that is not part of the log (``id`` -1) and code ``INVALID_INPUT``,
``CONVERSATION_NOT_RUNNING`` or ``CONVERSATION_START_FAILED``; the socket stays open.

Authentication follows jupyter_server's kernel WebSocket: ``ws_authenticated`` on ``get``
(403 before the upgrade without a user), then the authorizer for resource ``convo``
(``read`` to watch; ``write`` checked on the first input frame). A conversation that is
missing or not the user's is 404 before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from http.client import responses
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from pydantic import TypeAdapter, ValidationError
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..events.inputs import UserInput
from ..events.schema import ErrorEvent, event_to_json
from ..manager.base import ConversationNotFound, ConversationNotRunning, ConversationStartError
from .handlers.base import (
    AUTH_RESOURCE,
    SERVICES_KEY,
    ScrubbedLogMixin,
    describe_validation_error,
    error_message,
    parse_json,
)
from .models import WebSocketParams
from .services import ConvoServices, close_iterator

log = logging.getLogger(__name__)

USER_INPUT: TypeAdapter[UserInput] = TypeAdapter(UserInput)
INVALID_INPUT = "INVALID_INPUT"
CONVERSATION_NOT_RUNNING = "CONVERSATION_NOT_RUNNING"
START_FAILED = "CONVERSATION_START_FAILED"
# Close codes (4000-4999 are the application's).
CLOSE_NOT_FOUND = 4404


# Bytes a subscriber's socket may have waiting before the relay waits for it.
DIRECT_WRITE_BUFFER = 1024 * 1024


def _consume_error(future: asyncio.Future[None]) -> None:
    """A frame sent without waiting: a closed socket ends the relay at the next write."""
    if not future.cancelled():
        future.exception()


class EventsWebSocketHandler(ScrubbedLogMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    auth_resource = AUTH_RESOURCE

    conversation_id: str = ""
    after_id: int = -1
    _relay_task: asyncio.Task[None] | None = None
    _may_write: bool | None = None

    @property
    def services(self) -> ConvoServices:
        services: ConvoServices = self.settings[SERVICES_KEY]
        return services

    def set_default_headers(self) -> None:
        """No API headers (CSP and the like) on a WebSocket upgrade."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A refusal before the upgrade is JSON ``{message, reason}``, as on every route."""
        reply: dict[str, Any] = {"message": responses.get(status_code, "Unknown HTTP Error")}
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], web.HTTPError):
            reply["message"] = error_message(exc_info[1])
            reply["reason"] = exc_info[1].reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    async def pre_get(self) -> None:
        """Checks before the upgrade: authorized, valid query, a visible conversation."""
        authorized = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not authorized:
            raise web.HTTPError(403, "not authorized to read conversations")
        try:
            await self.services.ensure_started()
        except Exception as exc:
            log.warning("jupyter-convo could not start its conversation manager: %s", exc)
            raise web.HTTPError(503, f"jupyter-convo is not available: {exc}") from exc
        raw = self.get_query_argument("after_id", "-1")
        try:
            self.after_id = WebSocketParams.model_validate({"after_id": raw}).after_id
        except ValidationError as exc:
            raise web.HTTPError(400, describe_validation_error(exc, "query")) from exc
        user_id = self.services.user_id(self.identity_provider, self.current_user)
        try:
            self.services.manager.metadata(self.conversation_id, user_id)
        except ConversationNotFound:
            raise web.HTTPError(404, f"conversation {self.conversation_id} not found") from None

    @ws_authenticated
    async def get(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        await self.pre_get()
        await super().get(conversation_id)

    async def open(self, conversation_id: str) -> None:
        super().open()  # starts the keep-alive pings
        # Small frames go out at once (Nagle would hold each until the last is ACKed).
        self.set_nodelay(True)
        self._relay_task = asyncio.ensure_future(self._relay())

    async def _relay(self) -> None:
        """Copy the conversation's events into this socket until either side ends."""
        frames = self.services.manager.subscribe_frames(self.conversation_id, self.after_id)
        try:
            async for frame in frames:
                sent = self.write_message(frame)
                if self._write_buffer_bytes() > DIRECT_WRITE_BUFFER:
                    await sent  # a slow reader: wait for its socket (its mailbox fills up)
                else:
                    # The frame is on its way; waiting for each one would cost a loop turn
                    # per frame and subscriber (bench/bench_relay.py, 50 subscribers).
                    sent.add_done_callback(_consume_error)
        except WebSocketClosedError:
            return
        except ConversationNotFound:
            self.close(CLOSE_NOT_FOUND, "conversation deleted")
            return
        except Exception:
            log.exception("Relaying events of %s failed", self.conversation_id)
            self.close(1011, "event relay failed")
            return
        finally:
            await close_iterator(frames)
        self.close(1000, "end of the event stream")

    def _write_buffer_bytes(self) -> int:
        stream = getattr(self.ws_connection, "stream", None)
        buffered = getattr(stream, "_write_buffer_size", 0)
        return buffered if isinstance(buffered, int) else 0

    async def on_message(self, message: str | bytes) -> None:
        try:
            item = USER_INPUT.validate_python(parse_json(message))
        except ValidationError as exc:
            await self._send_error(INVALID_INPUT, describe_validation_error(exc, "user input"))
            return
        except ValueError as exc:  # not JSON, nested too deeply
            await self._send_error(INVALID_INPUT, f"user input is not valid JSON: {exc}")
            return
        if not await self._authorized_to_write():
            await self._send_error(INVALID_INPUT, "not authorized to write to conversations")
            return
        services = self.services
        user_id = services.user_id(self.identity_provider, self.current_user)
        try:
            metadata = services.manager.metadata(self.conversation_id, user_id)
            await services.deliver_input(user_id, metadata, item)
        except ConversationNotFound:
            await self._send_error(INVALID_INPUT, f"conversation {self.conversation_id} is gone")
        except ConversationNotRunning as exc:
            await self._send_error(
                CONVERSATION_NOT_RUNNING,
                f"conversation {self.conversation_id} is not running ({exc}); start it first",
            )
        except ConversationStartError as exc:
            await self._send_error(START_FAILED, f"could not restart the conversation: {exc}")
        except ValueError as exc:  # the runtime refused it, e.g. no action awaits an answer
            await self._send_error(INVALID_INPUT, f"invalid user input: {exc}")

    async def _authorized_to_write(self) -> bool:
        if self._may_write is None:
            self._may_write = bool(
                await ensure_async(
                    self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
                )
            )
        return self._may_write

    async def _send_error(self, code: str, message: str) -> None:
        frame = event_to_json(ErrorEvent(code=code, message=message))
        with contextlib.suppress(WebSocketClosedError):
            await self.write_message(frame)

    def on_close(self) -> None:
        task = self._relay_task
        if task is not None and not task.done():
            task.cancel()
