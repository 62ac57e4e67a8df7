"""``terminal/*`` for an ACP agent: commands it asks us to run, in the conversation's jail.

Each terminal is a process group started through the ``Confiner`` (the same jail as the
agent and our own shell) and the default-signals launcher, in a directory inside the
workspace; its output (stdout and stderr together) is kept up to the agent's byte limit,
dropping the oldest bytes first, as the protocol asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ....agent.confine import Confiner
from ....agent.workspace import Workspace
from ....spawn import with_default_signals

DEFAULT_OUTPUT_LIMIT = 1_000_000
KILL_GRACE = 5.0


@dataclass
class Terminal:
    process: asyncio.subprocess.Process
    limit: int
    output: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(65536):
            self.output += chunk
            if len(self.output) > self.limit:
                del self.output[: len(self.output) - self.limit]
                self.truncated = True

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def exit_status(self) -> tuple[int | None, str | None] | None:
        code = self.process.returncode
        if code is None:
            return None
        if code < 0:
            return None, signal.Signals(-code).name
        return code, None

    async def wait(self) -> tuple[int | None, str | None]:
        await self.process.wait()
        if self.reader is not None:
            await self.reader
        status = self.exit_status()
        assert status is not None
        return status

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Terminals:
    """The terminals one ACP session opened; ``close`` kills whatever still runs."""

    def __init__(self, confiner: Confiner, workspace: Workspace, env: Mapping[str, str]) -> None:
        self.confiner = confiner
        self.workspace = workspace
        self.env = dict(env)
        self._terminals: dict[str, Terminal] = {}
        # Output of released terminals: a tool call's last update may name one after the
        # agent released it; the mapper takes it (``take_output``) once the call ends.
        self._released: dict[str, str] = {}

    async def create(
        self,
        command: str,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        output_byte_limit: int | None,
    ) -> str:
        directory = self.workspace.resolve(cwd) if cwd else self.workspace.root
        argv = self.confiner.command([command, *args], cwd=directory)
        process_env = {**self.env, **env}
        process = await asyncio.create_subprocess_exec(
            *with_default_signals(argv, process_env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=directory,
            env=process_env,
            start_new_session=True,
        )
        terminal = Terminal(process, output_byte_limit or DEFAULT_OUTPUT_LIMIT)
        terminal.reader = asyncio.create_task(terminal.read())
        terminal_id = f"term-{uuid.uuid4().hex[:12]}"
        self._terminals[terminal_id] = terminal
        return terminal_id

    def get(self, terminal_id: str) -> Terminal:
        try:
            return self._terminals[terminal_id]
        except KeyError:
            raise KeyError(f"no terminal {terminal_id!r}") from None

    def take_output(self, terminal_id: str) -> str:
        """The terminal's output so far (a released one's, once)."""
        terminal = self._terminals.get(terminal_id)
        if terminal is not None:
            return terminal.text()
        return self._released.pop(terminal_id, "")

    async def release(self, terminal_id: str) -> None:
        terminal = self._terminals.pop(terminal_id, None)
        if terminal is not None:
            await self._end(terminal)
            self._released[terminal_id] = terminal.text()

    async def _end(self, terminal: Terminal) -> None:
        terminal.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(terminal.wait(), KILL_GRACE)

    async def close(self) -> None:
        terminals = list(self._terminals.values())
        self._terminals.clear()
        for terminal in terminals:
            await self._end(terminal)
