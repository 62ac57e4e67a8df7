"""Sandboxes: where runtimes run, ``process``, ``docker`` or ``kubernetes``, behind one
interface.

``DockerSandbox`` and ``KubernetesSandbox`` are imported only when chosen: they need optional
clients (the docker SDK, kubernetes_asyncio)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Configurable

from .base import RuntimeHandle, Sandbox, SandboxStartError
from .process import ProcessSandbox

if TYPE_CHECKING:
    from ..config import ManagerConfig
    from .confinement import Confinement

__all__ = ["ProcessSandbox", "RuntimeHandle", "Sandbox", "SandboxStartError", "make_sandbox"]


def make_sandbox(
    config: ManagerConfig,
    *,
    confinement: Confinement | None = None,
    parent: Configurable | None = None,
) -> Sandbox:
    """The sandbox ``config.sandbox`` names; ``confinement`` (``c.Confinement.*``) jails
    the process sandbox's tool processes (default: its defaults); ``parent`` (the
    extension) configures the kubernetes sandbox (``c.KubernetesSandbox.*``)."""
    if config.sandbox == "process":
        return ProcessSandbox(
            config.conversations_root,
            python_executable=config.python_executable,
            server_instance_id=config.server_instance_id,
            max_upload_bytes=config.upload_max_bytes,
            confinement=confinement,
        )
    if config.sandbox == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(
            config.conversations_root,
            image=config.docker_image,
            docker_host=config.docker_host,
            cpus=config.docker_cpus,
            memory=config.docker_memory,
            server_instance_id=config.server_instance_id,
            max_upload_bytes=config.upload_max_bytes,
        )
    if config.sandbox == "kubernetes":
        from .kubernetes import KubernetesSandbox

        return KubernetesSandbox(
            config.conversations_root,
            server_instance_id=config.server_instance_id,
            max_upload_bytes=config.upload_max_bytes,
            parent=parent,
        )
    raise ValueError(
        f"unknown sandbox kind {config.sandbox!r}; expected 'process', 'docker' or 'kubernetes'"
    )
