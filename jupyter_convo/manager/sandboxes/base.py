"""The Sandbox interface: where a runtime runs, and how it is started, watched and stopped.

The manager speaks only this interface, so a docker (or later a Kubernetes) sandbox drops in
beside the process one. A sandbox knows processes or containers; it knows nothing of events,
metadata or the runtime's REST API beyond ``/alive``.

Each kind is a ``LoggingConfigurable`` (its own ``c.<Class>.*`` traits) registered under the
``jupyter_convo.sandboxes`` entry-point group (``registry.py``), like jupyter_client's kernel
provisioners.
"""

from __future__ import annotations

import json
import logging
import os
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from traitlets import MetaHasTraits
from traitlets.config import LoggingConfigurable

from ...agent.confine import ConfinementSpec

log = logging.getLogger(__name__)

RUNTIME_RECORD_NAME = "runtime.json"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RuntimeHandle(BaseModel):
    """A started runtime: how to reach it and how to find it again (``runtime.json``)."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    kind: str
    host: str
    port: int
    runtime_id: str  # pid for processes, container id for containers
    started_at: datetime = Field(default_factory=_utcnow)
    server_instance_id: str = ""
    pid: int | None = None
    pgid: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def record(self) -> dict[str, object]:
        """The ``runtime.json`` form (the conversation id is the directory's name)."""
        return self.model_dump(mode="json", exclude={"conversation_id"})


class SandboxStartError(RuntimeError):
    """A runtime did not come up; the message says why (shown in the start task)."""


class _SandboxMeta(ABCMeta, MetaHasTraits):
    """Abstract methods on a configurable class (as jupyter_client's provisioners do)."""


class Sandbox(LoggingConfigurable, metaclass=_SandboxMeta):
    """Starts and stops runtimes of one kind and finds them again after a server restart.

    ``conversations_root``, ``server_instance_id`` and ``max_upload_bytes`` come from the
    manager; everything else a kind needs is its own traits (``c.<Class>.*``), read from
    the ``parent`` (the server extension) it is made with.
    """

    kind: ClassVar[str]
    # One line for the API's list of sandbox kinds and the panel's form.
    description: ClassVar[str] = ""
    # Whether a runtime keeps the environment it was created with across restarts (a
    # container does): then a warm-pool runtime must boot with its conversation's own key
    # rather than a throwaway one replaced at bind time.
    keeps_environment: ClassVar[bool] = False

    def __init__(
        self,
        conversations_root: Path,
        *,
        server_instance_id: str = "",
        max_upload_bytes: int | None = None,
        **traits: Any,
    ) -> None:
        super().__init__(**traits)
        self.conversations_root = conversations_root
        self.server_instance_id = server_instance_id
        self.max_upload_bytes = max_upload_bytes

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this kind cannot start runtimes on this machine (a missing optional
        dependency...), or None. Cheap: the API's list of kinds calls it."""
        return None

    def conversation_dir(self, conversation_id: str) -> Path:
        return self.conversations_root / conversation_id

    @abstractmethod
    async def start(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        *,
        timeout: float,
        owner: str | None = None,
        workspace: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RuntimeHandle:
        """Start a runtime for ``conversation_id`` with ``env`` added to its environment
        (the session key travels only there) and wait until it is ready. ``owner`` (the
        user, None for a warm-pool runtime) and ``workspace`` (the absolute workspace, when
        known) serve sandboxes that label or mount things. ``progress`` receives what the
        start is waiting for, in words (e.g. a pod's scheduling and image pull), for the
        start task's detail; sandboxes that start at once may ignore it.

        Raises ``SandboxStartError`` with a reason (and cleans up) when it does not come up
        within ``timeout`` seconds.
        """

    @abstractmethod
    async def is_alive(self, handle: RuntimeHandle) -> bool:
        """Whether the runtime's process or container still exists."""

    @abstractmethod
    async def wait_exit(self, handle: RuntimeHandle) -> int | None:
        """Wait until the runtime exits; its exit code when known."""

    @abstractmethod
    async def stop(self, handle: RuntimeHandle, *, grace: float) -> None:
        """Terminate the runtime (TERM, ``grace`` seconds, then KILL) and remove its record."""

    @abstractmethod
    async def kill(self, handle: RuntimeHandle) -> None:
        """Kill the runtime at once and remove its record."""

    @abstractmethod
    async def find_existing(self) -> list[RuntimeHandle]:
        """Runtimes left running by an earlier server; stale records are removed."""

    async def find_orphans(self, conversation_id: str | None = None) -> list[RuntimeHandle]:
        """Runtimes of this sandbox's conversations root that run without a record (e.g.
        ``runtime.json`` was removed): each holds its conversation's log lock, so the
        manager takes it over or stops it. Only those of ``conversation_id`` if given.
        Sandboxes whose engine is the record (containers) have none."""
        return []

    async def remove(self, conversation_id: str) -> None:
        """The conversation is deleted: drop whatever the sandbox keeps for it beyond its
        directory (a stopped container). The runtime is already stopped."""
        self.remove_record(conversation_id)

    def reaches(self, conversation_id: str, path: Path) -> bool:
        """Whether a runtime started for ``conversation_id`` can work in ``path`` (a
        container only sees what was mounted when it was created)."""
        return True

    async def aclose(self) -> None:
        """Release this sandbox's clients (an engine or API connection); the manager calls
        it last when it shuts down. Runtimes are not touched."""

    def confinement_spec(self) -> ConfinementSpec | None:
        """How a runtime of this sandbox isolates the agent's tool processes (sent with
        each conversation it binds); None: not at all."""
        return None

    # --- runtime.json -------------------------------------------------------------------

    def record_path(self, conversation_id: str) -> Path:
        return self.conversation_dir(conversation_id) / RUNTIME_RECORD_NAME

    def write_record(self, handle: RuntimeHandle) -> None:
        """Write ``runtime.json`` atomically (temp file + rename)."""
        path = self.record_path(handle.conversation_id)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(handle.record(), indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def read_record(self, conversation_id: str) -> RuntimeHandle | None:
        """The recorded handle, or None (and the bad file removed) when unreadable."""
        path = self.record_path(conversation_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return RuntimeHandle.model_validate({**data, "conversation_id": conversation_id})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ValidationError) as exc:
            log.warning("removing unreadable runtime record %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None

    def remove_record(self, conversation_id: str) -> None:
        self.record_path(conversation_id).unlink(missing_ok=True)

    def recorded_conversations(self) -> list[str]:
        """Ids of conversations that have a ``runtime.json`` of this sandbox's kind."""
        if not self.conversations_root.is_dir():
            return []
        ids = []
        for record in sorted(self.conversations_root.glob(f"*/{RUNTIME_RECORD_NAME}")):
            handle = self.read_record(record.parent.name)
            if handle is not None and handle.kind == self.kind:
                ids.append(handle.conversation_id)
        return ids
