"""What every route handler shares: the manager, the stores and the server's defaults.

One ``ConvoServices`` lives in the tornado settings (``settings["convo"]``). The manager is
started lazily by the first request as well as by the server's start hook, because test
harnesses (pytest-jupyter) never run the start hook.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_server.auth.identity import (
    IdentityProvider,
    LegacyIdentityProvider,
    PasswordIdentityProvider,
    User,
)

from ..agent.settings import AgentSettings
from ..agent.workspace import WorkspaceError, check_path_length
from ..events.inputs import MessageInput, UserInput
from ..events.log import EventLog, EventPage
from ..events.redact import SecretRegistry
from ..manager.base import ConversationManager, ConversationNotRunning
from ..manager.config import ManagerConfig
from ..manager.owner import DataDirInUse
from ..runtime.agents import DEFAULT_AGENT, agent_names
from ..runtime.models import InitialMessage
from ..share.importer import ImportLimits
from ..store.conversations import ConversationMetadata, ConversationStore
from ..store.settings import SettingsStore, known_secrets
from .models import ConversationOptions
from .resolve import (
    SettingsLayer,
    environment_layer,
    options_layer,
    resolve_agent_settings,
    server_layer,
)

log = logging.getLogger(__name__)

# Read-only event logs kept open for events/search (each holds one file descriptor and a
# parse cache of at most SEARCH_CACHE_BYTES: 32 MiB in all).
MAX_OPEN_LOGS = 64
SEARCH_CACHE_BYTES = 512 * 1024
_BUILTIN_IDENTITY_PROVIDERS = (IdentityProvider, PasswordIdentityProvider, LegacyIdentityProvider)


async def close_iterator(iterator: AsyncIterator[object]) -> None:
    """Close an async generator we leave early, so its cleanup runs now, not at GC."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class WorkspaceOutsideRoot(ValueError):
    """A requested workspace that is not inside the Jupyter root directory."""


class ConvoServices:
    """The manager, stores and defaults behind the routes, with lazy start."""

    def __init__(
        self,
        *,
        manager: ConversationManager,
        store: ConversationStore,
        settings_store: SettingsStore,
        config: ManagerConfig,
        root_dir: Path,
        llm_model: str | None = None,
        llm_base_url: str | None = None,
        single_user: bool | None = None,
        single_user_name: str = "owner",
        environ: Mapping[str, str] | None = None,
        default_agent: str = DEFAULT_AGENT,
    ) -> None:
        self.manager = manager
        self.store = store
        self.settings_store = settings_store
        self.config = config
        self.root_dir = root_dir.resolve()
        self.llm_model = llm_model
        self.llm_base_url = llm_base_url
        self.default_agent = default_agent
        self.single_user = single_user
        self.single_user_name = single_user_name
        self._environ = os.environ if environ is None else environ
        self._start_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._logs: OrderedDict[str, EventLog] = OrderedDict()

    # --- lifecycle ------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start the manager once; concurrent callers wait for the same start.

        A failed start is reported to every waiting request and retried by the next one.
        """
        if self._stopped:
            raise RuntimeError("jupyter-convo is shutting down")
        task = self._start_task
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self.manager.start())
            self._start_task = task
        await asyncio.shield(task)

    async def shutdown(self) -> None:
        """Stop the manager (it keeps or stops runtimes as configured), close files."""
        self._stopped = True
        task = self._start_task
        if task is not None:
            try:
                await task
            except DataDirInUse:
                pass  # said when it was refused; it never touched the data dir
            except Exception:
                log.warning("jupyter-convo manager had failed to start", exc_info=True)
            try:
                await self.manager.shutdown()
            except Exception:
                log.exception("jupyter-convo manager failed to shut down cleanly")
        for event_log in self._logs.values():
            event_log.close()
        self._logs.clear()
        self.store.close()

    # --- who is asking -------------------------------------------------------------------

    def is_single_user(self, identity_provider: IdentityProvider) -> bool:
        """Whether every authenticated request is the server's one owner.

        Jupyter's built-in identity providers (a shared token or password) give each
        token request without a cookie a new random "Anonymous" user, so their usernames
        say nothing about who asks: there we use ``single_user_name`` for everyone. Any
        other identity provider (JupyterHub's, a custom one) names real users.
        """
        if self.single_user is not None:
            return self.single_user
        return type(identity_provider) in _BUILTIN_IDENTITY_PROVIDERS

    def user_id(self, identity_provider: IdentityProvider, user: User) -> str:
        if self.is_single_user(identity_provider):
            return self.single_user_name
        return str(user.username)

    # --- paths --------------------------------------------------------------------------------

    def conversation_dir(self, conversation_id: str) -> Path:
        return self.config.conversation_dir(conversation_id)

    def workspace_dir(self, metadata: ConversationMetadata) -> Path:
        if metadata.workspace:
            return Path(metadata.workspace)
        return self.conversation_dir(metadata.id) / "workspace"

    def resolve_workspace(self, requested: str) -> str:
        """An absolute workspace path for ``requested`` (relative to the Jupyter root, or
        absolute inside it); WorkspaceOutsideRoot otherwise."""
        if "\x00" in requested:
            raise WorkspaceOutsideRoot("workspace contains a NUL byte")
        try:
            check_path_length(requested)
        except WorkspaceError as exc:
            raise WorkspaceOutsideRoot(str(exc)) from None
        candidate = Path(requested).expanduser()
        if not candidate.is_absolute():
            candidate = self.root_dir / candidate
        resolved = candidate.resolve()
        if resolved != self.root_dir and self.root_dir not in resolved.parents:
            raise WorkspaceOutsideRoot(
                f"workspace {requested!r} is outside the Jupyter root directory"
            )
        return str(resolved)

    # --- event logs ---------------------------------------------------------------------------

    def event_log(self, conversation_id: str) -> EventLog:
        """The conversation's log, read-only and refreshed: valid whether or not a runtime
        is writing it."""
        event_log = self._logs.get(conversation_id)
        if event_log is None or event_log.closed:
            path = self.conversation_dir(conversation_id) / "events.jsonl"
            event_log = EventLog(path, read_only=True, cache_bytes=SEARCH_CACHE_BYTES)
            self._logs[conversation_id] = event_log
            while len(self._logs) > MAX_OPEN_LOGS:
                _, oldest = self._logs.popitem(last=False)
                oldest.close()
        else:
            self._logs.move_to_end(conversation_id)
            event_log.refresh()
        return event_log

    async def search_events(self, conversation_id: str, **query: Any) -> EventPage:
        """``events/search``: by the runtime while it runs, else from the log file (the
        one channel: the server reads a conversation's files only when its runtime is
        down). ValueError names a bad filter."""
        page = await self.manager.search_events(conversation_id, **query)
        if page is not None:
            return page
        return self.event_log(conversation_id).search(**query)

    async def count_events(self, conversation_id: str, **query: Any) -> int:
        count = await self.manager.count_events(conversation_id, **query)
        if count is not None:
            return count
        return self.event_log(conversation_id).count(**query)

    def forget_log(self, conversation_id: str) -> None:
        event_log = self._logs.pop(conversation_id, None)
        if event_log is not None:
            event_log.close()

    # --- inputs ---------------------------------------------------------------------------

    async def deliver_input(
        self, user_id: str, metadata: ConversationMetadata, item: UserInput
    ) -> str:
        """Forward a user input to the runtime: ``"sent"``. A message to a conversation that
        is not running restarts it from its log with that message: ``"started"``. Other
        inputs need a running runtime (ConversationNotRunning)."""
        try:
            await self.manager.send_event_to_conversation(metadata.id, item)
            return "sent"
        except ConversationNotRunning:
            if not isinstance(item, MessageInput):
                raise
        await self.manager.maybe_start_agent_loop(
            metadata.id,
            user_id=user_id,
            settings=self.agent_settings(user_id, None, metadata),
            initial_message=InitialMessage(text=item.text, image_urls=item.image_urls),
        )
        log.info("Conversation %s restarted by a message of %s", metadata.id, user_id)
        return "started"

    def import_limits(self) -> ImportLimits:
        """What an uploaded export may unpack to (``c.ConvoExtension.import_max_*``)."""
        return ImportLimits(
            max_total_bytes=self.config.import_max_unpacked_bytes,
            max_entries=self.config.import_max_files,
        )

    # --- settings -----------------------------------------------------------------------------

    def user_secrets(self, user_id: str) -> SecretRegistry:
        """Every secret known for ``user_id`` (API key, named secrets, credential-named
        environment variables): what a title or an export must not show."""
        return known_secrets(settings_store=self.settings_store, user_ids=[user_id])

    def user_layer(self, user_id: str) -> SettingsLayer:
        settings = self.settings_store.get(user_id)
        return SettingsLayer(
            "user",
            "user",
            model=settings.llm_model or None,
            base_url=settings.llm_base_url or None,
            api_key=self.settings_store.get_llm_api_key(user_id) or None,
            max_iterations=settings.max_iterations,
            max_budget_per_task=settings.max_budget_per_task,
            confirmation_mode=settings.confirmation_mode,
            secrets=self.settings_store.get_secrets(user_id) or None,
        )

    def choose_agent(self, requested: str | None) -> str:
        """The agent backend of a new conversation: the requested one, else the server's
        default; ValueError (a 400) names the registered ones when it is not one of them."""
        name = requested or self.default_agent
        known = agent_names()
        if name not in known:
            raise ValueError(
                f"unknown agent {name!r}: the agents installed here are {', '.join(known)}"
            )
        return name

    def default_sandbox(self, user_id: str) -> str | None:
        """The user's preferred sandbox kind, if they chose one."""
        return self.settings_store.get(user_id).sandbox or None

    def agent_settings(
        self,
        user_id: str,
        options: ConversationOptions | None = None,
        metadata: ConversationMetadata | None = None,
    ) -> AgentSettings:
        """Settings for a conversation of ``user_id``: options > user > server > env.

        For an existing conversation without a model in ``options``, its recorded model is
        kept, so a restart talks to the same model it started with.
        """
        layers = [options_layer(options)]
        if metadata is not None and metadata.model and not (options and options.model):
            layers.append(SettingsLayer("recorded", "user", model=metadata.model))
        layers += [
            self.user_layer(user_id),
            server_layer(self.llm_model, self.llm_base_url),
            environment_layer(self._environ),
        ]
        return resolve_agent_settings(layers)
