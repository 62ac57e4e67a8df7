"""Fixtures for the kernel side: a real Jupyter server + scripted LLM, and an IPython shell.

One server and one scripted LLM serve the whole session (a server start costs seconds);
each test adds a script matched by a task text of its own, so tests never share a run.
The shell is IPython's test shell (``IPython.testing.globalipapp``) with the extension
loaded afresh for every test and pointed at the server through ``c.ConvoMagics``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.testing import globalipapp
from jupyter_process import JupyterServer, start_jupyter_server

from jupyter_convo.kernel.magics import ConvoMagics, load_ipython_extension
from jupyter_convo.testing import ScriptedLLM


@pytest.fixture(scope="session")
def kernel_llm() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()
    with llm.serve():
        yield llm


@pytest.fixture(scope="session")
def convo_server(
    kernel_llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    server = start_jupyter_server(
        tmp_path_factory.mktemp("convo-server"), llm_base_url=kernel_llm.base_url
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shell() -> Any:
    globalipapp.start_ipython()
    return globalipapp.get_ipython()


@pytest.fixture
def magics(shell: Any, convo_server: JupyterServer) -> Iterator[ConvoMagics]:
    """``%load_ext jupyter_convo`` in the test shell, configured for the test server."""
    load_ipython_extension(shell)
    shell.run_line_magic("config", f"ConvoMagics.server_url = {convo_server.url!r}")
    shell.run_line_magic("config", f"ConvoMagics.token = {convo_server.token!r}")
    magics: ConvoMagics = shell._convo_magics
    try:
        yield magics
    finally:
        magics.close()


@pytest.fixture
def task_text(request: pytest.FixtureRequest) -> str:
    """A task text unique to the test: the key its script is matched by."""
    return f"{request.node.name} {uuid.uuid4().hex[:8]}"
