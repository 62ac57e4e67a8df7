"""The runtime's tornado application: its settings, shared state and route table.

Nothing here may import ``jupyter_server``: the runtime runs in containers with a small
install (a test checks it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tornado.web

from ..events.redact import SecretRegistry
from .auth import SessionKey

if TYPE_CHECKING:
    from .session import ConversationSession

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Bodies of the JSON routes (messages may carry base64 images).
DEFAULT_MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
ID_PATTERN = r"(?P<conversation_id>[A-Za-z0-9_-]{1,64})"


@dataclass
class RuntimeSettings:
    """What the command line decides."""

    conversations_root: Path
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_json_body_bytes: int = DEFAULT_MAX_JSON_BODY_BYTES


@dataclass
class RuntimeState:
    """Everything the handlers share: the key, the secrets and the bound conversation."""

    settings: RuntimeSettings
    session_key: SessionKey
    secrets: SecretRegistry = field(default_factory=SecretRegistry)
    session: ConversationSession | None = None
    started_at: float = field(default_factory=time.monotonic)
    # Serializes binding so two concurrent POSTs cannot both bind.
    bind_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Called once the conversation is stopped; the process entry point exits on it.
    on_stopped: Callable[[], None] | None = None
    # The background import of the agent stack (see ``__main__``); binding waits for it
    # rather than importing the same modules concurrently from the event loop.
    preload: asyncio.Future[None] | None = None

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    async def wait_preloaded(self) -> None:
        if self.preload is not None:
            await asyncio.shield(self.preload)

    def notify_stopped(self) -> None:
        if self.on_stopped is not None:
            self.on_stopped()


def make_app(state: RuntimeState, **tornado_settings: Any) -> tornado.web.Application:
    """The route table; every handler finds ``state`` in ``application.settings``."""
    from . import handlers as h

    base = rf"/api/conversations/{ID_PATTERN}"
    routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        (r"/alive", h.AliveHandler),
        (r"/health", h.HealthHandler),
        (r"/api/conversations", h.CreateConversationHandler),
        (rf"{base}", h.ConversationHandler),
        (rf"{base}/events", h.EventsHandler),
        (rf"{base}/events/search", h.EventSearchHandler),
        (rf"{base}/events/count", h.EventCountHandler),
        (rf"{base}/events/ws", h.EventStreamHandler),
        (rf"{base}/stop", h.StopHandler),
        (rf"{base}/list-files", h.ListFilesHandler),
        (rf"{base}/select-file", h.SelectFileHandler),
        (rf"{base}/upload-files", h.UploadFilesHandler),
        (rf"{base}/workspace.zip", h.WorkspaceZipHandler),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=h.NotFoundHandler,
        runtime_state=state,
        websocket_ping_interval=30,
        **tornado_settings,
    )
