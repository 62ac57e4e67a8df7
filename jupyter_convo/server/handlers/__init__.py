"""The REST routes of the server API, under ``{base_url}api/convo/``.

``routes()`` lists them (the WebSocket route included) for ``ConvoExtension``; specific
paths come before the ``conversations/{id}`` pattern they would otherwise match.
"""

from __future__ import annotations

from typing import Any

from .base import AUTH_RESOURCE, SERVICES_KEY, ConvoHandler, UnknownRouteHandler
from .conversations import (
    ConversationCountHandler,
    ConversationHandler,
    ConversationSearchHandler,
    ConversationsHandler,
    RuntimesHandler,
    StartHandler,
    StopHandler,
    StreamStartHandler,
)
from .events import (
    EventCountHandler,
    EventSearchHandler,
    MessagesHandler,
    RememberPromptHandler,
    UserInputHandler,
)
from .extras import ExpConfigHandler, SkillsHandler
from .files import FileContentHandler, FilesHandler, WorkspaceZipHandler
from .settings import CapabilitiesHandler, SettingsHandler
from .start_tasks import StartTaskCountHandler, StartTaskSearchHandler, StartTasksHandler

API_PREFIX = "api/convo"
CONVERSATION_ID = r"(?P<conversation_id>[A-Za-z0-9_-]{1,64})"

__all__ = ["API_PREFIX", "AUTH_RESOURCE", "SERVICES_KEY", "ConvoHandler", "routes"]


def routes() -> list[tuple[str, Any]]:
    """(pattern relative to base_url, handler class) for every route of the API."""
    from ..share_handlers import share_routes
    from ..ws import EventsWebSocketHandler

    one = f"{API_PREFIX}/conversations/{CONVERSATION_ID}"
    return [
        *share_routes(API_PREFIX, CONVERSATION_ID),
        (f"{API_PREFIX}/conversations/search", ConversationSearchHandler),
        (f"{API_PREFIX}/conversations/count", ConversationCountHandler),
        (f"{API_PREFIX}/conversations/stream-start", StreamStartHandler),
        (f"{API_PREFIX}/conversations", ConversationsHandler),
        (f"{one}/start", StartHandler),
        (f"{one}/stop", StopHandler),
        (f"{one}/messages", MessagesHandler),
        (f"{one}/events", UserInputHandler),
        (f"{one}/events/search", EventSearchHandler),
        (f"{one}/events/count", EventCountHandler),
        (f"{one}/events/ws", EventsWebSocketHandler),
        (f"{one}/files", FilesHandler),
        (f"{one}/files/content", FileContentHandler),
        (f"{one}/workspace\\.zip", WorkspaceZipHandler),
        (f"{one}/skills", SkillsHandler),
        (f"{one}/remember-prompt", RememberPromptHandler),
        (f"{one}/exp-config", ExpConfigHandler),
        (one, ConversationHandler),
        (f"{API_PREFIX}/start-tasks/search", StartTaskSearchHandler),
        (f"{API_PREFIX}/start-tasks/count", StartTaskCountHandler),
        (f"{API_PREFIX}/start-tasks", StartTasksHandler),
        (f"{API_PREFIX}/settings", SettingsHandler),
        (f"{API_PREFIX}/runtimes", RuntimesHandler),
        (f"{API_PREFIX}/capabilities", CapabilitiesHandler),
        # Last: anything else under the prefix (a bad id, an unknown route) answers JSON.
        (f"{API_PREFIX}(?P<rest>/.*)?", UnknownRouteHandler),
    ]
