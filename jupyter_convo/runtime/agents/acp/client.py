"""The runtime as an ACP client: what an ACP agent may ask of us, confined to the workspace.

``session/update`` goes to the ``TurnMapper``; ``session/request_permission`` to the
backend's confirmation flow; ``fs/*`` reads and writes workspace files only (the same
checks as our file editor: no path, link or hard link out of the workspace); ``terminal/*``
runs commands in the conversation's jail (``Terminals``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from acp import RequestError
from acp import schema as acp

from ....agent.workspace import Workspace, WorkspaceError
from .mapping import TurnMapper
from .terminals import Terminals

log = logging.getLogger(__name__)

PermissionHandler = Callable[
    [acp.ToolCallUpdate, list[acp.PermissionOption]], Awaitable[acp.RequestPermissionResponse]
]


def _invalid(message: str) -> RequestError:
    return RequestError.invalid_params({"message": message})


class ConvoAcpClient:
    """Implements the SDK's ``acp.Client`` protocol for one conversation's session."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        mapper: TurnMapper,
        terminals: Terminals,
        on_permission: PermissionHandler,
    ) -> None:
        self.workspace = workspace
        self.mapper = mapper
        self.terminals = terminals
        self.on_permission = on_permission

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    # --- updates and permissions ------------------------------------------------------------

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        self.mapper.update(update)

    async def request_permission(
        self,
        session_id: str,
        tool_call: acp.ToolCallUpdate,
        options: list[acp.PermissionOption],
        **kwargs: Any,
    ) -> acp.RequestPermissionResponse:
        return await self.on_permission(tool_call, options)

    # --- fs/* ---------------------------------------------------------------------------

    def _path(self, path: str) -> Any:
        try:
            return self.workspace.resolve(path)
        except WorkspaceError as exc:
            raise _invalid(f"{path}: {exc}") from None

    async def read_text_file(
        self,
        session_id: str,
        path: str,
        line: int | None = None,
        limit: int | None = None,
        **kwargs: Any,
    ) -> acp.ReadTextFileResponse:
        def read() -> str:
            with self.workspace.open_confined(self._path(path)) as handle:
                return handle.read().decode("utf-8", errors="replace")

        try:
            text = await asyncio.to_thread(read)
        except FileNotFoundError:
            raise RequestError.resource_not_found(path) from None
        except (WorkspaceError, OSError) as exc:
            raise _invalid(f"{path}: {exc}") from None
        if line is not None or limit is not None:
            lines = text.splitlines(keepends=True)
            start = max((line or 1) - 1, 0)
            text = "".join(lines[start : start + limit if limit is not None else None])
        return acp.ReadTextFileResponse(content=text)

    async def write_text_file(
        self, session_id: str, path: str, content: str, **kwargs: Any
    ) -> acp.WriteTextFileResponse:
        def write() -> None:
            resolved = self._path(path)
            self.workspace.make_dirs(resolved.parent)
            fd = self.workspace.open_file(resolved, os.O_WRONLY | os.O_CREAT, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.truncate(0)
                handle.write(content.encode("utf-8"))

        try:
            await asyncio.to_thread(write)
        except (WorkspaceError, OSError) as exc:
            raise _invalid(f"{path}: {exc}") from None
        return acp.WriteTextFileResponse()

    # --- terminal/* ---------------------------------------------------------------------

    async def create_terminal(
        self,
        session_id: str,
        command: str,
        args: list[str] | None = None,
        env: list[acp.EnvVariable] | None = None,
        cwd: str | None = None,
        output_byte_limit: int | None = None,
        **kwargs: Any,
    ) -> acp.CreateTerminalResponse:
        variables = {item.name: item.value for item in env or ()}
        try:
            terminal_id = await self.terminals.create(
                command, args or [], variables, cwd, output_byte_limit
            )
        except (WorkspaceError, OSError) as exc:
            raise _invalid(f"cannot run {command!r}: {exc}") from None
        return acp.CreateTerminalResponse(terminal_id=terminal_id)

    def _terminal(self, terminal_id: str) -> Any:
        try:
            return self.terminals.get(terminal_id)
        except KeyError as exc:
            raise _invalid(str(exc)) from None

    async def terminal_output(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> acp.TerminalOutputResponse:
        terminal = self._terminal(terminal_id)
        status = terminal.exit_status()
        exit_status = (
            acp.TerminalExitStatus(exit_code=status[0], signal=status[1]) if status else None
        )
        return acp.TerminalOutputResponse(
            output=terminal.text(), truncated=terminal.truncated, exit_status=exit_status
        )

    async def wait_for_terminal_exit(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> acp.WaitForTerminalExitResponse:
        code, signal_name = await self._terminal(terminal_id).wait()
        return acp.WaitForTerminalExitResponse(exit_code=code, signal=signal_name)

    async def kill_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> acp.KillTerminalResponse:
        self._terminal(terminal_id).kill()
        return acp.KillTerminalResponse()

    async def release_terminal(
        self, session_id: str, terminal_id: str, **kwargs: Any
    ) -> acp.ReleaseTerminalResponse:
        await self.terminals.release(terminal_id)
        return acp.ReleaseTerminalResponse()

    # --- what we do not offer -------------------------------------------------------------

    async def create_elicitation(
        self, message: str, mode: Any, **kwargs: Any
    ) -> acp.CreateElicitationResponse:
        raise RequestError.method_not_found("elicitation/create")

    async def complete_elicitation(self, elicitation_id: str, **kwargs: Any) -> None:
        return None

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        log.info("ACP agent called the extension method %s: not supported", method)
        raise RequestError.method_not_found(method)

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        log.info("ACP agent sent the extension notification %s: ignored", method)
