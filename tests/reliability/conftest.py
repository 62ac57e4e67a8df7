"""The reliability tier: faults, load, hostile input and security against real processes.

One scripted LLM serves the whole session; each test file starts its own ``jupyter
server`` subprocess (``live_server.py``) so that a killed or flooded server never leaks
into another file. Each test adds a script matched by a task text of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from live_server import LiveServer, live_server

from jupyter_convo.testing import ScriptedLLM


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    scripted = ScriptedLLM()
    with scripted.serve():
        yield scripted


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    """``c.ConvoExtension`` values of the file's server (a test file may override this)."""
    return {"keep_runtimes_on_shutdown": False, "max_concurrent_conversations": 30}


@pytest.fixture(scope="module")
def server(
    llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory, server_config: dict[str, Any]
) -> Iterator[LiveServer]:
    """A server for the test file (runtimes stopped with it)."""
    with live_server(tmp_path_factory.mktemp("server"), llm.base_url, config=server_config) as up:
        yield up


@pytest.fixture
def task_text(request: pytest.FixtureRequest) -> str:
    """A task text unique to the test: the key its script is matched by."""
    return f"{request.node.name} {uuid.uuid4().hex[:8]}"
