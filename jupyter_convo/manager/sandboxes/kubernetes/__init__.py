"""The kubernetes sandbox: one pod per runtime (``KubernetesSandbox``, ``c.KubernetesSandbox.*``).

Importing this package imports no Kubernetes client: ``kubernetes_asyncio`` (the
``kubernetes`` extra) is imported when the sandbox first talks to the API.
"""

from __future__ import annotations

from .sandbox import KubernetesSandbox

__all__ = ["KubernetesSandbox"]
