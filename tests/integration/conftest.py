"""Fixtures for the integration tests; the helpers live in ``runtime_harness``.

(Test modules import helpers from ``runtime_harness``, never from ``conftest``: every test
directory has a conftest, and which one ``import conftest`` finds depends on the order
pytest collected the directories in.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from runtime_harness import RuntimeProcess, StartRuntime, launch_runtime


@pytest.fixture
def runtime_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
async def start_runtime(tmp_path: Path, runtime_key: str) -> AsyncIterator[StartRuntime]:
    """A factory: ``await start_runtime(*extra_args, env=None)`` -> a ready ``RuntimeProcess``.

    After the test every runtime's process group is killed (shell and kernels included).
    """
    started: list[RuntimeProcess] = []

    async def start(*extra_args: str, env: dict[str, str] | None = None) -> RuntimeProcess:
        full_env = {**os.environ, "JUPYTER_CONVO_SESSION_KEY": runtime_key, **(env or {})}
        index = len(started)
        runtime = await asyncio.to_thread(
            launch_runtime, tmp_path, f"runtime-{index}", list(extra_args), full_env
        )
        started.append(runtime)
        return runtime

    yield start

    # Tests that need a graceful stop do it themselves; the rest end fast, with their group.
    for runtime in started:
        runtime.kill_group()
