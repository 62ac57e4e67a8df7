"""Agent backends, found by name in the ``jupyter_convo.agents`` entry-point group.

Adding a backend: one module with an ``AgentBackend`` subclass, and one line under
``[project.entry-points."jupyter_convo.agents"]`` in its package's ``pyproject.toml``.
Listing names reads the package metadata only; a backend's module is imported when a
conversation chooses it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import AgentBackend

ENTRY_POINT_GROUP = "jupyter_convo.agents"
DEFAULT_AGENT = "builtin"


class UnknownAgent(ValueError):
    """No backend is registered under the name a conversation asked for."""


def agent_names() -> list[str]:
    """The registered backends' names, sorted (no backend module is imported)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_backend(name: str) -> type[AgentBackend]:
    """The backend class registered as ``name``; ``UnknownAgent`` names the known ones."""
    from .base import AgentBackend

    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = ", ".join(agent_names()) or "none"
        raise UnknownAgent(f"unknown agent {name!r}: the agents installed here are {known}")
    backend = next(iter(found)).load()
    if not (isinstance(backend, type) and issubclass(backend, AgentBackend)):
        raise UnknownAgent(f"agent {name!r} is registered as {backend!r}, not an AgentBackend")
    return backend
