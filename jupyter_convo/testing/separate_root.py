"""A process sandbox whose runtimes keep their conversations under another root than the
server's: the server's view of a conversation's folder and the runtime's are different
directories, as with a runtime on another machine or in a container without a shared
mount. It proves the one-channel rule (``tests/server/test_one_channel.py``): while a
runtime runs, everything the server shows of it came over the runtime's HTTP API.

Choose it with ``c.ConvoExtension.manager_class = SeparateRootManager`` and
``c.SeparateRootSandbox.runtime_root = "/some/where"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Unicode

from ..manager.config import ManagerConfig
from ..manager.nested import NestedConversationManager
from ..manager.sandboxes.base import RuntimeHandle, Sandbox
from ..manager.sandboxes.process import ProcessSandbox


class SeparateRootSandbox(ProcessSandbox):
    """``ProcessSandbox`` with the runtime's ``--conversations-root`` set to
    ``runtime_root``; its ready file and log stay in the server's folder (the sandbox's
    own bookkeeping, as a container engine keeps its logs)."""

    runtime_root = Unicode(
        config=True, help="Where the runtimes keep their conversations. Default: required."
    )

    def command(self, conversation_id: str) -> list[str]:
        command = super().command(conversation_id)
        command[command.index("--conversations-root") + 1] = self.runtime_root
        return command

    async def start(
        self, conversation_id: str, env: Any, *, timeout: float, **options: Any
    ) -> RuntimeHandle:
        # What a remote sandbox prepares on its side: the default workspace.
        (Path(self.runtime_root) / conversation_id / "workspace").mkdir(parents=True, exist_ok=True)
        return await super().start(conversation_id, env, timeout=timeout, **options)


class SeparateRootManager(NestedConversationManager):
    """The nested manager over a ``SeparateRootSandbox`` configured like the sandbox the
    server would have made (same parent, same settings)."""

    def __init__(self, config: ManagerConfig, *, sandbox: Sandbox | None = None, **kw: Any):
        separate = SeparateRootSandbox(
            config.conversations_root,
            server_instance_id=config.server_instance_id,
            max_upload_bytes=config.upload_max_bytes,
            parent=sandbox.parent if sandbox is not None else None,
        )
        super().__init__(config, sandbox=separate, **kw)
