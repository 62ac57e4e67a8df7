"""The reliability tier: faults, load, hostile input and security against real processes.

One scripted LLM serves the whole session; each test file starts its own ``jupyter
server`` subprocess (``live_server.py``) so that a killed or flooded server never leaks
into another file. Each test adds a script matched by a task text of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from live_server import LiveServer, live_server

from jupyter_convo.testing import ScriptedLLM


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    scripted = ScriptedLLM()
    with scripted.serve():
        yield scripted


@pytest.fixture(scope="module")
def server(llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server for the test file (runtimes stopped with it)."""
    with live_server(
        tmp_path_factory.mktemp("server"),
        llm.base_url,
        config={"keep_runtimes_on_shutdown": False, "max_concurrent_conversations": 30},
    ) as running:
        yield running


@pytest.fixture
def task_text(request: pytest.FixtureRequest) -> str:
    """A task text unique to the test: the key its script is matched by."""
    return f"{request.node.name} {uuid.uuid4().hex[:8]}"
