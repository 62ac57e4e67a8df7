"""A real Jupyter server with jupyter-convo (pytest-jupyter), two users, real runtimes.

- The server runs with ``allow_unauthenticated_access=False``, as root allowed, the
  extension enabled, its data in a temp dir, and the scripted LLM as the default LLM
  (``c.ConvoExtension.llm_base_url``; the key comes from ``JUPYTER_CONVO_LLM_API_KEY``).
- ``TwoUsersIdentityProvider`` maps ``Authorization: token alice-token`` to user ``alice``
  and ``bob-token`` to ``bob``; ``jp_fetch`` speaks as alice unless given other headers.
- pytest-jupyter drives its server on the loop of its ``jp_asyncio_loop`` fixture; the
  override below hands it pytest-asyncio's loop, so the test body, async fixtures and the
  server all share one loop.

Helpers live in ``server_harness`` (test modules import them from there, never from
``conftest``: which conftest ``import conftest`` finds depends on collection order).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403  (the jp_* fixtures)
from server_harness import (
    ALICE,
    BOB,
    Api,
    EventSocket,
    TwoUsersIdentityProvider,
    kill_process_group,
)
from traitlets.config import Config

from jupyter_convo.server.resolve import ENV_API_KEY
from jupyter_convo.testing import TEST_API_KEY, ScriptedLLM


@pytest.fixture(autouse=True)
async def jp_asyncio_loop() -> asyncio.AbstractEventLoop:
    """pytest-jupyter's server loop = the loop pytest-asyncio runs the test on."""
    return asyncio.get_running_loop()


@pytest.fixture(autouse=True)
def _llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, TEST_API_KEY)


@pytest.fixture
def convo_data_dir(tmp_path: Path) -> Iterator[Path]:
    """The extension's data dir; afterwards, any runtime still recorded there is killed
    (a failing test must not leave processes behind)."""
    data_dir = tmp_path / "convo-data"
    yield data_dir
    for record in data_dir.glob("conversations/*/runtime.json"):
        try:
            handle = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        group = handle.get("pgid") or handle.get("pid")
        if isinstance(group, int):
            kill_process_group(group)


@pytest.fixture
def convo_config() -> dict[str, Any]:
    """``c.ConvoExtension`` values a test file may override (merged over the defaults)."""
    return {}


@pytest.fixture
def jp_server_config(
    convo_data_dir: Path, scripted_llm: ScriptedLLM, convo_config: dict[str, Any]
) -> Config:
    extension: dict[str, Any] = {
        "data_dir": str(convo_data_dir),
        "llm_model": scripted_llm.models[0],
        "llm_base_url": scripted_llm.base_url,
        "keep_runtimes_on_shutdown": False,  # tests leave no process behind
        "upload_max_bytes": 64 * 1024,
    }
    extension.update(convo_config)
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {"jupyter_convo": True, "jupyter_server_terminals": False},
                "allow_root": True,
                "allow_unauthenticated_access": False,
                "identity_provider_class": TwoUsersIdentityProvider,
            },
            "ConvoExtension": extension,
        }
    )


@pytest.fixture
def jp_auth_header() -> dict[str, str]:
    return dict(ALICE)


@pytest.fixture
def alice(jp_fetch: Callable[..., Any]) -> Api:
    return Api(jp_fetch, ALICE)


@pytest.fixture
def bob(jp_fetch: Callable[..., Any]) -> Api:
    return Api(jp_fetch, BOB)


@pytest.fixture
async def open_socket(
    jp_ws_fetch: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """``await open_socket(cid, after_id=-1, headers=ALICE)`` -> a connected EventSocket."""
    sockets: list[EventSocket] = []

    async def connect(
        conversation_id: str, after_id: int = -1, headers: dict[str, str] | None = None
    ) -> EventSocket:
        connection = await jp_ws_fetch(
            "api",
            "convo",
            "conversations",
            conversation_id,
            "events",
            "ws",
            params={"after_id": after_id},
            headers=dict(headers or ALICE),
        )
        socket = EventSocket(connection)
        sockets.append(socket)
        return socket

    yield connect
    for socket in sockets:
        socket.close()
