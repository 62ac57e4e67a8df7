"""The ``terminal`` tool: bash commands in one persistent shell rooted in the workspace.

The shell is not confined to the workspace by path checks (a shell can ``cd /``); the
isolation boundary is the ``Confiner``'s jail (process sandbox) or the runtime's container.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ...events.schema import ActionBase, CommandEvent, CommandOutputEvent
from ..confine import Confiner
from ..settings import AgentSettings
from ..workspace import Workspace
from .args import (
    SECURITY_RISK_PROPERTY,
    function_spec,
    optional_timeout,
    required_str,
    security_risk,
    timeout_property,
)
from .base import Tool
from .env import agent_environment
from .shell_session import BashSession, ShellError, ShellResult
from .text import clean_terminal_output, join_cut, truncate_middle

log = logging.getLogger(__name__)

# Quiet, non-interactive defaults: no pagers waiting for a key, no colour codes, and
# matplotlib scripts that save figures instead of opening windows.
SHELL_DEFAULTS = {
    "TERM": "dumb",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "MANPAGER": "cat",
    "NO_COLOR": "1",
    "MPLBACKEND": "Agg",
    "PIP_NO_INPUT": "1",
    "DEBIAN_FRONTEND": "noninteractive",
}
# Startup hooks that would run our shell's init differently from what we set up.
SHELL_UNSET = ("BASH_ENV", "ENV", "PROMPT_COMMAND", "PS1", "PS2", "PS0", "HISTFILE")

DESCRIPTION = """\
Run a bash command in a persistent shell that starts in the workspace, the folder shared \
with the user's Jupyter notebook. The shell keeps its state between calls: the working \
directory, exported variables, activated virtual environments and shell functions stay, \
so `cd data` then `ls` works as in a terminal. Use it to look around (ls, head, wc -l, \
du -sh), fetch data, install packages (pip install ...), run scripts, and use git. For \
interactive analysis prefer the python tool, whose variables persist.
Commands get no input: anything that reads stdin sees end-of-file, so pass flags such as \
-y or --no-input. Output is stdout and stderr together; very long output is cut in the \
middle, so narrow it yourself (head, tail, grep, wc). Each command has a time limit \
({timeout:g} s unless you set `timeout`); when it runs out the command is interrupted \
with Ctrl-C and you get its output so far. Start servers or other long jobs in the \
background with their output in a file (`nohup cmd > job.log 2>&1 &`) and check on them \
later.\
"""


def shell_environment(
    settings: AgentSettings, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The shell's environment: ``base`` (default: ours) minus private variables, plus the
    user's secrets."""
    env = agent_environment(settings, base)
    for name in SHELL_UNSET:
        env.pop(name, None)
    env.update(SHELL_DEFAULTS)
    return env


class TerminalTool(Tool):
    """Runs ``command`` actions in a lazily started ``BashSession``."""

    name = "terminal"

    def __init__(
        self, workspace: Workspace, settings: AgentSettings, confiner: Confiner | None = None
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.confiner = confiner
        self._session: BashSession | None = None

    def spec(self) -> dict[str, Any]:
        return function_spec(
            self.name,
            DESCRIPTION.format(timeout=self.settings.command_timeout),
            {
                "command": {
                    "type": "string",
                    "description": (
                        "The bash command(s) to run. Several lines, pipes, && chains and "
                        "here-documents are fine."
                    ),
                },
                "timeout": timeout_property(self.settings.command_timeout, "command"),
                "security_risk": SECURITY_RISK_PROPERTY,
            },
            ["command", "security_risk"],
        )

    def parse(self, arguments: dict[str, Any], *, tool_call_id: str | None) -> CommandEvent:
        return CommandEvent(
            command=required_str(arguments, "command"),
            timeout=optional_timeout(arguments),
            security_risk=security_risk(arguments),
            tool_call_id=tool_call_id,
        )

    async def execute(self, action: ActionBase) -> CommandOutputEvent:
        if not isinstance(action, CommandEvent):
            raise TypeError(f"terminal cannot execute a {action.kind!r} action")
        timeout = action.timeout or self.settings.command_timeout
        if self._session is None:
            base = self.confiner.environment(os.environ) if self.confiner else None
            env = shell_environment(self.settings, base)
            self._session = BashSession(
                self.workspace.root,
                env,
                keep_bytes=8 * self.settings.max_output_chars,
                confiner=self.confiner,
            )
        try:
            result = await self._session.run(action.command, timeout)
        except ShellError as exc:
            log.warning("terminal: %s", exc)
            return CommandOutputEvent(
                command=action.command,
                output=f"[the shell could not be started: {exc}]",
                tool_call_id=action.tool_call_id,
            )
        output, truncated = self._format(result)
        return CommandOutputEvent(
            command=action.command,
            exit_code=result.exit_code,
            output=output,
            truncated=truncated,
            timed_out=result.timed_out,
            cwd=result.cwd,
            tool_call_id=action.tool_call_id,
        )

    def _format(self, result: ShellResult) -> tuple[str, bool]:
        limit = self.settings.max_output_chars
        head = clean_terminal_output(result.head)
        if result.dropped:
            tail = clean_terminal_output(result.tail)
            text, truncated = join_cut(head, tail, limit, dropped=result.dropped), True
        else:
            text, truncated = truncate_middle(head, limit)
        if result.notes:
            separator = "" if not text or text.endswith("\n") else "\n"
            text = text + separator + "\n".join(result.notes)
        return text, truncated

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
