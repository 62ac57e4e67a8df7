"""Names shared by the kubernetes tests (fixtures live in conftest)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes.kubernetes import KubernetesSandbox

NAMESPACE = "jhub"
CLAIM = "claim-ada"

MakeSandbox = Callable[..., KubernetesSandbox]
MakeManager = Callable[..., Awaitable[NestedConversationManager]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
