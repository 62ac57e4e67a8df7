"""What this server offers new conversations: sandbox kinds and agent backends.

Both come from entry points (``jupyter_convo.sandboxes``, ``jupyter_convo.agents``), so the
API, the panel's form, the magics and the CLI list what is installed rather than a list
written into each of them. Agent backends are only named here (their classes are the
runtime's business and are not imported by the server).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from pydantic import BaseModel, Field

from ..manager.sandboxes.registry import describe_sandboxes

AGENTS_GROUP = "jupyter_convo.agents"


class SandboxKindInfo(BaseModel):
    """One sandbox kind this installation has."""

    kind: str
    description: str = ""
    # Whether a conversation can be started in it now (a kind other than the server's
    # c.ConvoExtension.sandbox, or one missing a dependency, cannot).
    available: bool
    reason: str | None = Field(default=None, description="why it is not available")


class AgentBackendInfo(BaseModel):
    """One agent backend registered under ``jupyter_convo.agents``."""

    name: str


class Capabilities(BaseModel):
    """``GET capabilities``."""

    sandboxes: list[SandboxKindInfo]
    default_sandbox: str
    agents: list[AgentBackendInfo]


def agent_backend_names() -> list[str]:
    """The names under ``jupyter_convo.agents``, sorted; empty when none is registered."""
    return sorted({entry.name for entry in entry_points(group=AGENTS_GROUP)})


def server_capabilities(server_sandbox: str) -> Capabilities:
    """The installed kinds and backends; only ``server_sandbox`` (the kind this server's
    manager runs) can be available, as one manager runs one kind."""
    sandboxes = []
    for info in describe_sandboxes():
        available, reason = info.available, info.reason
        if available and info.kind != server_sandbox:
            available = False
            reason = f"this server runs {server_sandbox!r} runtimes (c.ConvoExtension.sandbox)"
        sandboxes.append(
            SandboxKindInfo(
                kind=info.kind, description=info.description, available=available, reason=reason
            )
        )
    return Capabilities(
        sandboxes=sandboxes,
        default_sandbox=server_sandbox,
        agents=[AgentBackendInfo(name=name) for name in agent_backend_names()],
    )
