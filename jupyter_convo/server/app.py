"""``ConvoExtension``: the Jupyter server extension that serves the conversation API.

Enabled on install (``jupyter-config/server-config/jupyter_convo.json``); configured with
``c.ConvoExtension.*``. It builds the stores and the conversation manager, registers the
routes under ``{base_url}api/convo/``, starts the manager when the server starts (or on the
first request, whichever comes first) and shuts it down with the server.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from pydantic import ValidationError
from traitlets import Bool, Float, Int, TraitError, Type, Unicode, default
from traitlets.config import Configurable

from ..manager.base import ConversationManager
from ..manager.config import MIB, ManagerConfig
from ..manager.owner import DataDirInUse
from ..manager.sandboxes.confinement import Confinement
from ..manager.sandboxes.registry import UnknownSandboxKind, load_sandbox_class, sandbox_classes
from ..store.conversations import ConversationStore
from ..store.settings import SettingsStore
from .handlers import SERVICES_KEY, routes
from .services import ConvoServices


def _default_user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (some containers)
        return "owner"


# Old names of the docker sandbox's settings (before sandboxes were plug-ins): still read,
# with a deprecation warning, into c.DockerSandbox.<new name>.
DEPRECATED_DOCKER_TRAITS = {
    "docker_image": "image",
    "docker_host": "docker_host",
    "docker_cpus": "cpus",
    "docker_memory": "memory",
}


def build_manager(
    manager_class: type[ConversationManager],
    config: ManagerConfig,
    store: ConversationStore,
    settings_store: SettingsStore | None = None,
    parent: Configurable | None = None,
) -> ConversationManager:
    """A ``manager_class`` for ``config`` over the sandbox ``config.sandbox`` names;
    ``parent`` (the extension) configures the sandbox (``c.<SandboxClass>.*``)."""
    from ..manager.sandboxes import make_sandbox

    sandbox = make_sandbox(config, parent=parent)
    return manager_class(config, store=store, settings_store=settings_store, sandbox=sandbox)


class ConvoExtension(ExtensionApp):
    """Run, watch, steer and share AI agent conversations from Jupyter."""

    name = "jupyter_convo"
    description = __doc__
    load_other_extensions = True
    # Listed so that --help-all and --generate-config show c.Confinement.* and every
    # registered sandbox's c.<SandboxClass>.* too (added in __init__: they are plug-ins).
    classes = [*ExtensionApp.classes, Confinement]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes = [*type(self).classes, *sandbox_classes()]

    manager_class = Type(
        default_value="jupyter_convo.manager.nested.NestedConversationManager",
        klass="jupyter_convo.manager.base.ConversationManager",
        config=True,
        help=(
            "The conversation manager class, built as manager_class(config, store=..., "
            "settings_store=..., sandbox=...). "
            "Default: jupyter_convo.manager.nested.NestedConversationManager."
        ),
    )

    data_dir = Unicode(
        config=True,
        help=(
            "Where conversations live: convo.db, the server secret, users' settings and one "
            "folder per conversation (event log, cassette, runtime log, workspace). "
            "Default: <jupyter data dir>/convo."
        ),
    )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "convo")

    sandbox = Unicode(
        "process",
        config=True,
        help=(
            "Where runtimes run: a sandbox kind registered under the jupyter_convo.sandboxes "
            "entry points (built in: 'process', a local subprocess; 'docker', a container; "
            "'kubernetes', a pod per runtime, docs/kubernetes.md). "
            "Each kind has its own settings, c.<SandboxClass>.*; GET api/convo/capabilities "
            "lists the installed kinds. Default: process."
        ),
    )
    max_concurrent_conversations = Int(
        5,
        config=True,
        help=(
            "Running conversations per user; starting one more stops that user's oldest "
            "(it gets an AGENT_ERROR$TOO_MANY_CONVERSATIONS error event). Default: 5."
        ),
    )
    warm_pool_size = Int(
        0,
        config=True,
        help="Idle runtimes started ahead and bound to the next conversation. Default: 0.",
    )
    runtime_start_timeout = Float(
        60.0,
        config=True,
        help="Seconds from spawning a runtime to its ready signal before it fails. Default: 60.",
    )
    docker_image = Unicode(
        config=True, help="Deprecated: use c.DockerSandbox.image (read into it, with a warning)."
    )
    docker_host = Unicode(
        config=True,
        help="Deprecated: use c.DockerSandbox.docker_host (read into it, with a warning).",
    )
    docker_cpus = Float(
        None,
        allow_none=True,
        config=True,
        help="Deprecated: use c.DockerSandbox.cpus (read into it, with a warning).",
    )
    docker_memory = Unicode(
        config=True, help="Deprecated: use c.DockerSandbox.memory (read into it, with a warning)."
    )
    llm_model = Unicode(
        "",
        config=True,
        help=(
            "Default LLM model, below the user's settings and per-conversation options, above "
            "JUPYTER_CONVO_LLM_MODEL. Default: '' (unset)."
        ),
    )
    default_agent = Unicode(
        "builtin",
        config=True,
        help=(
            "The agent backend of a conversation created without `agent` (a name in the "
            "jupyter_convo.agents entry-point group; `jupyter convo agents` lists them). "
            "Default: 'builtin' (jupyter-convo's own agent)."
        ),
    )
    llm_base_url = Unicode(
        "",
        config=True,
        help=(
            "Default OpenAI-compatible base URL, below the user's settings and per-conversation "
            "options, above JUPYTER_CONVO_LLM_BASE_URL / OPENAI_BASE_URL. Default: '' (unset)."
        ),
    )
    conversation_max_age_seconds = Float(
        None,
        allow_none=True,
        config=True,
        help=(
            "Stopped conversations not updated for this many seconds are deleted when the "
            "server starts. Default: None (kept forever)."
        ),
    )
    upload_max_bytes = Int(
        50 * MIB,
        config=True,
        help="Largest upload into a workspace, in bytes (413 above). Default: 52428800 (50 MiB).",
    )
    import_max_unpacked_bytes = Int(
        1024 * MIB,
        config=True,
        help=(
            "The most bytes an imported export may unpack to; an import also may not unpack "
            "to more than 200 times its own size (413 above either). "
            "Default: 1073741824 (1 GiB)."
        ),
    )
    import_max_files = Int(
        10_000,
        config=True,
        help="The most files (zip entries) an imported export may hold (413 above). "
        "Default: 10000.",
    )
    keep_runtimes_on_shutdown = Bool(
        True,
        config=True,
        help=(
            "On server shutdown, leave runtimes running (found again on the next start) "
            "rather than stopping them. False stops every runtime, with the agents' shells "
            "and kernels, before the server exits (scripts/lab.sh sets False: Ctrl-C stops "
            "all it started). Default: True."
        ),
    )
    single_user = Bool(
        None,
        allow_none=True,
        config=True,
        help=(
            "Whether every authenticated request belongs to one owner. Default: None = yes "
            "with Jupyter's own token/password identity providers (which name token requests "
            "randomly), no with other identity providers (e.g. JupyterHub), whose usernames "
            "own conversations."
        ),
    )
    single_user_name = Unicode(
        config=True,
        help="The owner's user id in single-user mode. Default: the OS user name.",
    )

    @default("single_user_name")
    def _default_single_user_name(self) -> str:
        return _default_user_name()

    services: ConvoServices | None = None

    def manager_config(self) -> ManagerConfig:
        """The manager's settings from our traitlets; a bad value names its trait."""
        values: dict[str, Any] = {
            "data_dir": Path(self.data_dir).expanduser(),
            "sandbox": self.sandbox,
            "max_concurrent_conversations": self.max_concurrent_conversations,
            "warm_pool_size": self.warm_pool_size,
            "runtime_start_timeout": self.runtime_start_timeout,
            "keep_runtimes_on_shutdown": self.keep_runtimes_on_shutdown,
            "upload_max_bytes": self.upload_max_bytes,
            "import_max_unpacked_bytes": self.import_max_unpacked_bytes,
            "import_max_files": self.import_max_files,
            "conversation_max_age_seconds": self.conversation_max_age_seconds,
        }
        try:
            load_sandbox_class(self.sandbox)
        except UnknownSandboxKind as exc:
            raise TraitError(
                f"invalid jupyter-convo configuration: c.ConvoExtension.sandbox: {exc}"
            ) from None
        try:
            return ManagerConfig(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"c.ConvoExtension.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise TraitError(f"invalid jupyter-convo configuration: {problems}") from None

    def _forward_deprecated_traits(self) -> None:
        """Old ``c.ConvoExtension.docker_*`` settings still work: they become
        ``c.DockerSandbox.*`` (unless that is set too), with a warning."""
        given = self.config.ConvoExtension
        target = self.config.DockerSandbox
        for old, new in DEPRECATED_DOCKER_TRAITS.items():
            if old not in given:
                continue
            self.log.warning("c.ConvoExtension.%s is deprecated: use c.DockerSandbox.%s", old, new)
            if new not in target:
                target[new] = given[old]

    def initialize_settings(self) -> None:
        self._forward_deprecated_traits()
        config = self.manager_config()
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = ConversationStore(config.db_path)
        settings_store = SettingsStore(config.data_dir)
        assert self.serverapp is not None
        self.services = ConvoServices(
            manager=build_manager(self.manager_class, config, store, settings_store, parent=self),
            store=store,
            settings_store=settings_store,
            config=config,
            root_dir=Path(self.serverapp.root_dir),
            llm_model=self.llm_model or None,
            llm_base_url=self.llm_base_url or None,
            default_agent=self.default_agent,
            single_user=self.single_user,
            single_user_name=self.single_user_name,
        )
        self.settings[SERVICES_KEY] = self.services
        self._describe_owner()
        self.log.info("jupyter-convo: data in %s, sandbox %s", config.data_dir, config.sandbox)

    def _describe_owner(self) -> None:
        """Who owns the data dir, for a second server that is refused it (never a token)."""
        if self.services is not None and self.serverapp is not None:
            self.services.manager.owner_details = {
                "pid": os.getpid(),
                "url": self.serverapp.connection_url,
            }

    def initialize_handlers(self) -> None:
        self.handlers.extend(routes())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the manager once the server's loop runs: finds surviving runtimes."""
        if self.services is not None:
            self._describe_owner()  # the port is known now
            try:
                await self.services.ensure_started()
            except DataDirInUse as exc:
                self.log.warning("jupyter-convo is not available on this server: %s", exc)
            except Exception:
                self.log.exception("jupyter-convo: the conversation manager failed to start")

    async def stop_extension(self) -> None:
        if self.services is not None:
            await self.services.shutdown()
            self.services = None
