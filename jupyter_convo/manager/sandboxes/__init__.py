"""Sandboxes: where runtimes run, behind one interface; the kinds are plug-ins.

Kinds are registered under the ``jupyter_convo.sandboxes`` entry points (``registry.py``);
``DockerSandbox`` and any other kind are imported only when chosen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import RuntimeHandle, Sandbox, SandboxStartError
from .registry import UnknownSandboxKind, load_sandbox_class, sandbox_kinds

if TYPE_CHECKING:
    from traitlets.config import Configurable

    from ..config import ManagerConfig

__all__ = [
    "RuntimeHandle",
    "Sandbox",
    "SandboxStartError",
    "UnknownSandboxKind",
    "make_sandbox",
    "sandbox_kinds",
]


def make_sandbox(
    config: ManagerConfig, *, parent: Configurable | None = None, **traits: Any
) -> Sandbox:
    """The sandbox ``config.sandbox`` names, configured from ``parent``'s config
    (``c.<SandboxClass>.*``); ``traits`` set some directly (tests, benches)."""
    cls = load_sandbox_class(config.sandbox)
    return cls(
        config.conversations_root,
        server_instance_id=config.server_instance_id,
        max_upload_bytes=config.upload_max_bytes,
        parent=parent,
        **traits,
    )
