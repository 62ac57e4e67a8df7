"""Sandboxes: where runtimes run (``process`` now; ``docker`` behind the same interface)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import RuntimeHandle, Sandbox, SandboxStartError
from .process import ProcessSandbox

if TYPE_CHECKING:
    from ..config import ManagerConfig

__all__ = ["ProcessSandbox", "RuntimeHandle", "Sandbox", "SandboxStartError", "make_sandbox"]


def make_sandbox(config: ManagerConfig) -> Sandbox:
    """The sandbox ``config.sandbox`` names."""
    if config.sandbox == "process":
        return ProcessSandbox(
            config.conversations_root,
            python_executable=config.python_executable,
            server_instance_id=config.server_instance_id,
            max_upload_bytes=config.upload_max_bytes,
        )
    raise ValueError(f"unknown sandbox kind {config.sandbox!r}; expected 'process'")
