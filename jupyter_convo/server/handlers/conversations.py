"""Conversations: search, count, batch get, get, rename, delete, create, start, stop.

Creating returns the first start task at once (202) while the manager starts the runtime in
the background; ``stream-start`` instead streams every start-task update as one JSON list.
"""

from __future__ import annotations

import logging

from jupyter_server.auth.decorator import authorized
from pydantic import ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from ...agent.repository import RepositorySpec
from ...events.schema import TitleEvent
from ...manager.base import ConversationStartError
from ...runtime.models import InitialMessage
from ...store.conversations import (
    ConversationQuery,
    StartTask,
    StartTaskStatus,
)
from ...store.titles import clean_title
from ..models import (
    ConversationFilters,
    ConversationSearchParams,
    CreateConversationRequest,
    IdsParams,
    StartConversationRequest,
    UpdateConversationRequest,
)
from ..services import WorkspaceOutsideRoot, close_iterator
from .base import ConvoHandler, fail

log = logging.getLogger(__name__)

TERMINAL_TASK_STATUSES = frozenset({StartTaskStatus.READY, StartTaskStatus.ERROR})


def _initial_message(text: str | None, image_urls: list[str]) -> InitialMessage | None:
    if text is None:
        if image_urls:
            fail(400, "invalid request body: image_urls needs an initial_message")
        return None
    return InitialMessage(text=text, image_urls=image_urls)


class ConversationSearchHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(ConversationSearchParams)
        filters = params.model_dump(exclude={"page_id", "limit"}, exclude_none=True)
        query = ConversationQuery(user_id=self.user_id, **filters)
        try:
            page = self.services.store.search(query, page_id=params.page_id, limit=params.limit)
        except ValueError as exc:
            fail(400, str(exc))
        self.send_model(page)


class ConversationCountHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(ConversationFilters)
        query = ConversationQuery(user_id=self.user_id, **params.model_dump(exclude_none=True))
        self.send_json({"count": self.services.store.count(query)})


class ConversationCreator(ConvoHandler):
    """Shared by ``POST conversations`` and ``stream-start``: validate, then create.

    A base of its own so that neither route inherits the other's methods (``GET
    conversations/stream-start`` must not answer as the batch get).
    """

    async def create(self, request: CreateConversationRequest) -> StartTask:
        initial_message = _initial_message(request.initial_message, request.image_urls)
        workspace = None
        if request.workspace is not None:
            try:
                workspace = self.services.resolve_workspace(request.workspace)
            except WorkspaceOutsideRoot as exc:
                fail(400, f"invalid request body: workspace: {exc}")
        settings = self.services.agent_settings(self.user_id, request)
        try:
            agent = self.services.choose_agent(request.agent)
        except ValueError as exc:
            fail(400, f"invalid request body: agent: {exc}")
        settings = settings.model_copy(update={"agent": agent})
        if request.repository is not None:
            settings = settings.model_copy(update={"repository": self._repository(request)})
        elif request.branch is not None:
            fail(400, "invalid request body: branch: needs a repository")
        from ..share_handlers import replay_source  # share_handlers imports this package

        replay, replay_title = await replay_source(self, request.replay)
        try:
            task = await self.services.manager.create_conversation(
                user_id=self.user_id,
                settings=settings,
                initial_message=initial_message,
                title=request.title or replay_title,
                workspace=workspace,
                sandbox=request.sandbox or self.services.default_sandbox(self.user_id),
                trigger=request.trigger,
                replay=replay,
            )
            if request.repository is not None and task.conversation_id:
                # Kept in the metadata, so conversations/search?repository= finds it.
                self.services.store.update(task.conversation_id, repository=request.repository)
        except ValueError as exc:
            fail(400, str(exc))
        except ConversationStartError as exc:
            fail(500, f"could not start the conversation: {exc}")
        log.info(
            "Conversation %s of %s: start task %s", task.conversation_id, self.user_id, task.id
        )
        return task

    def _repository(self, request: CreateConversationRequest) -> RepositorySpec:
        """The clone to start from; a local path must lie inside the Jupyter root."""
        assert request.repository is not None
        try:
            spec = RepositorySpec(
                url=request.repository,
                branch=request.branch,
                token_secret=request.repository_token_secret,
            )
        except ValidationError as exc:
            reason = "; ".join(str(e["msg"]) for e in exc.errors())
            fail(400, f"invalid request body: repository: {reason}")
        if spec.url.startswith("file://"):
            fail(400, "invalid request body: repository: give a local repository as a path")
        if not spec.is_remote():
            try:
                local = self.services.resolve_workspace(spec.url)
            except WorkspaceOutsideRoot as exc:
                fail(400, f"invalid request body: repository: {exc}")
            spec = spec.model_copy(update={"url": local})
        return spec


class ConversationsHandler(ConversationCreator):
    """``GET conversations?ids=`` (batch) and ``POST conversations`` (create)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(IdsParams)
        self.send_models(self.services.store.get_many(params.ids, user_id=self.user_id))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.body(CreateConversationRequest)
        task = await self.create(request)
        self.send_model(task, status=202)


class StreamStartHandler(ConversationCreator):
    """``POST conversations/stream-start``: ``[`` task, update, ... ``]`` as they happen."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.body(CreateConversationRequest)
        task = await self.create(request)
        self.set_status(200)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # proxies: do not hold the stream back
        try:
            await self._stream(task)
        except StreamClosedError:
            log.info("Client left the start stream of task %s; the start goes on", task.id)

    async def _stream(self, task: StartTask) -> None:
        self.write("[\n" + task.model_dump_json())
        await self.flush()
        last = task
        if task.status not in TERMINAL_TASK_STATUSES:
            updates = self.services.manager.start_task_updates(task.id)
            try:
                async for update in updates:
                    if (update.status, update.detail) != (last.status, last.detail):
                        self.write(",\n" + update.model_dump_json())
                        await self.flush()
                        last = update
                    if update.status in TERMINAL_TASK_STATUSES:
                        break
            except StreamClosedError:
                raise
            except Exception:
                # The list is already open: end it with the task's stored state.
                log.exception("Following start task %s failed", task.id)
            finally:
                await close_iterator(updates)
        # Updates before we subscribed are in the store: never end on a stale state.
        final = self.services.store.get_start_task(task.id)
        if final is not None and (final.status, final.detail) != (last.status, last.detail):
            self.write(",\n" + final.model_dump_json())
        self.finish("\n]\n")


class ConversationHandler(ConvoHandler):
    """``GET|PATCH|DELETE conversations/{id}``."""

    @web.authenticated
    @authorized
    async def get(self, conversation_id: str) -> None:
        self.send_model(self.conversation(conversation_id))

    @web.authenticated
    @authorized
    async def patch(self, conversation_id: str) -> None:
        request = self.body(UpdateConversationRequest)
        # Stored, searched and sent to every watcher: secrets hidden, as on every write.
        title = clean_title(request.title, self.services.user_secrets(self.user_id))
        if title is None:
            fail(400, "invalid request body: title: must not be blank")
        existing = self.services.store.get(conversation_id)
        if existing is None:
            fail(404, f"conversation {conversation_id} not found")
        if existing.user_id != self.user_id:
            log.warning(
                "User %s tried to rename conversation %s of another user",
                self.user_id,
                conversation_id,
            )
            fail(403, f"only the owner of conversation {conversation_id} may rename it")
        updated = self.services.store.update(conversation_id, title=title)
        if updated is None:
            fail(404, f"conversation {conversation_id} not found")
        await self.services.manager.publish(conversation_id, TitleEvent(title=title))
        self.send_model(updated)

    @web.authenticated
    @authorized
    async def delete(self, conversation_id: str) -> None:
        self.conversation(conversation_id)
        self.services.forget_log(conversation_id)
        await self.services.manager.delete_conversation(conversation_id)
        log.info("Conversation %s deleted by %s", conversation_id, self.user_id)
        self.set_status(204)
        self.finish()


class StartHandler(ConvoHandler):
    """``POST conversations/{id}/start``: (re)start the runtime, continuing from the log."""

    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        request = self.body(StartConversationRequest)
        metadata = self.conversation(conversation_id)
        initial_message = _initial_message(request.initial_message, request.image_urls)
        settings = self.services.agent_settings(self.user_id, request, metadata)
        try:
            info = await self.services.manager.maybe_start_agent_loop(
                conversation_id,
                user_id=self.user_id,
                settings=settings,
                initial_message=initial_message,
            )
        except ConversationStartError as exc:
            fail(500, f"could not start conversation {conversation_id}: {exc}")
        self.send_model(info)


class StopHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def post(self, conversation_id: str) -> None:
        self.conversation(conversation_id)
        await self.services.manager.close_session(conversation_id)
        self.services.forget_log(conversation_id)  # its search cache: freed with the stop
        self.send_model(self.conversation(conversation_id))


class RuntimesHandler(ConvoHandler):
    """``GET runtimes``: the running agent loops of this user."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        infos = await self.services.manager.get_agent_loop_info(user_id=self.user_id)
        self.send_models(infos)


__all__ = [
    "ConversationCountHandler",
    "ConversationHandler",
    "ConversationSearchHandler",
    "ConversationsHandler",
    "RuntimesHandler",
    "StartHandler",
    "StopHandler",
    "StreamStartHandler",
]
