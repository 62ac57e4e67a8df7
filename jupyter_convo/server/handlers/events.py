"""A conversation's events: user inputs in, stored events out (search, count, remember).

Reads go to the runtime's own routes while it runs, and to the log file (read-only,
refreshed per request) when it does not, so they answer the same whether the runtime is
running, stopped or dead, and wherever the runtime keeps its files. Inputs go to the
running runtime; a message to a conversation that is not running restarts it with it.
"""

from __future__ import annotations

import logging
from typing import Any

from jupyter_server.auth.decorator import authorized
from pydantic import TypeAdapter, ValidationError
from tornado import web

from ...agent.llm import LLMError
from ...events.inputs import MessageInput, UserInput
from ...events.log import EventPage
from ...manager.base import ConversationNotRunning, ConversationStartError
from ..models import EventFilters, EventSearchParams, RememberPromptParams, SendMessageRequest
from ..remember import build_messages, contextual_events, extract_prompt
from .base import ConvoHandler, describe_validation_error, fail, parse_json

log = logging.getLogger(__name__)

USER_INPUT: TypeAdapter[UserInput] = TypeAdapter(UserInput)


class InputHandler(ConvoHandler):
    """Shared: deliver a user input, restarting a stopped conversation for a message."""

    async def deliver(self, conversation_id: str, item: UserInput) -> str:
        metadata = self.conversation(conversation_id)
        try:
            return await self.services.deliver_input(self.user_id, metadata, item)
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        except ConversationStartError as exc:
            fail(500, f"could not restart conversation {conversation_id}: {exc}")
        except ValueError as exc:  # the runtime refused it, e.g. no action awaits an answer
            fail(400, f"invalid user input: {exc}")


class MessagesHandler(InputHandler):
    """``POST conversations/{id}/messages`` {text, image_urls}."""

    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        request = self.body(SendMessageRequest)
        item = MessageInput(text=request.text, image_urls=request.image_urls)
        status = await self.deliver(conversation_id, item)
        self.send_json({"conversation_id": conversation_id, "status": status}, status=202)


class UserInputHandler(InputHandler):
    """``POST conversations/{id}/events``: a message, confirmation answer or state change."""

    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        raw = self.request.body or b"{}"
        try:
            item = USER_INPUT.validate_python(parse_json(raw))
        except ValidationError as exc:
            fail(400, describe_validation_error(exc, "user input"))
        except ValueError as exc:  # not JSON, nested too deeply
            fail(400, f"request body is not valid JSON: {exc}")
        status = await self.deliver(conversation_id, item)
        self.send_json({"conversation_id": conversation_id, "status": status}, status=202)


class EventSearchHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(EventSearchParams)
        self.conversation(conversation_id)
        try:
            page = await self.services.search_events(conversation_id, **params.model_dump())
        except ValueError as exc:
            fail(400, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.send_model(page)


class EventCountHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(EventFilters)
        self.conversation(conversation_id)
        try:
            count = await self.services.count_events(conversation_id, **params.model_dump())
        except ValueError as exc:
            fail(400, str(exc))
        except ConversationNotRunning as exc:
            self.not_running(conversation_id, exc)
        self.send_json({"count": count})


class RememberPromptHandler(ConvoHandler):
    """``GET conversations/{id}/remember-prompt?event_id=N``: an AGENTS.md update prompt."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        params = self.query(RememberPromptParams)
        metadata = self.conversation(conversation_id)

        async def search(**query: Any) -> EventPage:
            return await self.services.search_events(conversation_id, **query)

        marked = await search(after_id=params.event_id - 1, before_id=params.event_id + 1)
        if not marked.items:
            fail(404, f"event {params.event_id} not found in conversation {conversation_id}")
        events = await contextual_events(search, params.event_id)
        settings = self.services.agent_settings(self.user_id, None, metadata)
        try:
            answer = await self.services.manager.request_llm_completion(
                conversation_id, settings.llm, build_messages(events, params.event_id)
            )
        except LLMError as exc:
            fail(502, f"the LLM could not write the prompt: {exc}")
        prompt = extract_prompt(answer)
        if not prompt:
            fail(502, "the LLM answered with an empty prompt")
        self.send_json({"conversation_id": conversation_id, "prompt": prompt})
