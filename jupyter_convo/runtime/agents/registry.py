"""Known external agents: how each is launched, which LLM API it speaks, how to install it.

Light on purpose (no ACP import): ``jupyter convo agents`` and the backends read it. An
agent's program is looked for in ``JUPYTER_CONVO_AGENTS_PATH`` (directories, ``:``-separated;
default ``/opt/convo-agents/node_modules/.bin``, where ``scripts/install-agents.sh`` puts
them), then on ``PATH``. Installs under a HOME are not seen inside the jail, which hides
HOME: install agents in a prefix outside it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

AGENTS_PATH_ENV = "JUPYTER_CONVO_AGENTS_PATH"
DEFAULT_AGENTS_PATH = "/opt/convo-agents/node_modules/.bin"


@dataclass(frozen=True)
class KnownAgent:
    name: str  # the backend's entry-point name
    title: str
    program: str  # the executable looked for
    args: tuple[str, ...]  # what starts its ACP server
    llm_api: str  # the LLM API it calls (the gateway serves Chat Completions)
    install: str  # how to install it

    def find(self) -> str | None:
        """The program's path, or None when it is not installed where we look."""
        return find_program(self.program)


KNOWN_AGENTS: dict[str, KnownAgent] = {
    agent.name: agent
    for agent in (
        KnownAgent(
            name="opencode",
            title="OpenCode",
            program="opencode",
            args=("acp",),
            llm_api="Chat Completions",
            install="npm install --prefix /opt/convo-agents opencode-ai",
        ),
        KnownAgent(
            name="qwen",
            title="Qwen Code",
            program="qwen",
            args=("--acp",),
            llm_api="Chat Completions",
            install="npm install --prefix /opt/convo-agents @qwen-code/qwen-code",
        ),
    )
}


def search_path() -> str:
    extra = os.environ.get(AGENTS_PATH_ENV, DEFAULT_AGENTS_PATH)
    return os.pathsep.join(p for p in (extra, os.environ.get("PATH", "")) if p)


def find_program(program: str) -> str | None:
    return shutil.which(program, path=search_path())


class AgentNotInstalled(RuntimeError):
    """A known agent whose program is not found; the message says how to install it."""

    def __init__(self, agent: KnownAgent) -> None:
        super().__init__(
            f"the {agent.title} agent is not installed: {agent.install} "
            f"(looked in {AGENTS_PATH_ENV} and PATH)"
        )
