"""The docker tier: real containers through a Docker Engine API (podman's, in CI).

The tier runs only when asked (``JUPYTER_CONVO_TEST_DOCKER=1``, which ``scripts/test.sh``
sets after ``scripts/setup-podman.sh`` prepared the engine and the image); a plain
``pytest tests`` leaves these files alone. Once asked, nothing is skipped: an unreachable
engine or a missing image fails every test with what to do.

The scripted LLM listens where containers reach the host (the bridge gateway when this
machine has that address, else every interface) and the agent in the container calls it
through the engine's name for the host (``host.containers.internal`` on podman,
``host.docker.internal`` on Docker).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import MakeManager, our_containers

from jupyter_convo.agent.settings import AgentSettings
from jupyter_convo.manager.config import ManagerConfig
from jupyter_convo.manager.nested import NestedConversationManager
from jupyter_convo.manager.sandboxes import make_sandbox
from jupyter_convo.manager.sandboxes.docker import docker_sdk
from jupyter_convo.testing import ScriptedLLM, llm_config_for

OPT_IN_ENV = "JUPYTER_CONVO_TEST_DOCKER"
IMAGE_ENV = "JUPYTER_CONVO_TEST_IMAGE"
DEFAULT_TEST_IMAGE = "jupyter-convo-runtime:test"
SETUP_HINT = (
    "run `bash scripts/setup-podman.sh` (or `bash scripts/test.sh`) and export the "
    "DOCKER_HOST it prints"
)


_left_out: list[str] = []


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Leave the tier out unless it was asked for (see the module doc)."""
    if os.environ.get(OPT_IN_ENV) != "1" and collection_path.name.startswith("test_"):
        _left_out.append(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say that the tier was left out, as ``-rs`` says why a test was skipped."""
    if _left_out:
        terminalreporter.write_line(
            f"docker tier left out ({', '.join(_left_out)}): set {OPT_IN_ENV}=1 to run "
            f"it ({SETUP_HINT})"
        )


# --- the engine ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A docker SDK client of DOCKER_HOST; fails (never skips) when the engine is down."""
    docker = docker_sdk()
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        pytest.fail(f"no Docker engine answers at {where} ({exc}): {SETUP_HINT}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def runtime_image(engine: Any) -> str:
    image = os.environ.get(IMAGE_ENV, DEFAULT_TEST_IMAGE)
    try:
        engine.images.get(image)
    except docker_sdk().errors.ImageNotFound:
        pytest.fail(f"the runtime image {image} is not built: {SETUP_HINT}")
    return image


@pytest.fixture(scope="session")
def host_alias(engine: Any) -> str:
    """The name a container resolves to this machine."""
    components = engine.version().get("Components") or [{}]
    if "podman" in str(components[0].get("Name", "")).lower():
        return "host.containers.internal"
    return "host.docker.internal"


def _bridge_gateway(engine: Any) -> str | None:
    for name in ("podman", "bridge"):
        with contextlib.suppress(Exception):
            for config in engine.networks.get(name).attrs["IPAM"]["Config"] or []:
                if config.get("Gateway"):
                    return str(config["Gateway"])
    return None


def _bindable(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def llm_bind_address(engine: Any) -> str:
    """The bridge gateway if this machine has it (only containers reach it), else all."""
    gateway = _bridge_gateway(engine)
    return gateway if gateway is not None and _bindable(gateway) else "0.0.0.0"


@pytest.fixture
def container_llm(llm_bind_address: str) -> Iterator[ScriptedLLM]:
    """A scripted LLM that containers can reach."""
    llm = ScriptedLLM(host=llm_bind_address)
    with llm.serve():
        yield llm


@pytest.fixture
def settings(container_llm: ScriptedLLM, host_alias: str) -> AgentSettings:
    """Settings whose LLM base URL is the scripted LLM as seen from a container."""
    base_url = f"http://{host_alias}:{container_llm.server.port}/v1"
    return AgentSettings(llm=llm_config_for(container_llm, base_url=base_url))


# --- managers over containers ----------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def make_manager(
    engine: Any, runtime_image: str, data_dir: Path
) -> AsyncIterator[MakeManager]:
    """Docker-sandbox managers over ``data_dir``; afterwards every one is shut down (its
    runtimes stopped) and every container of ``data_dir`` removed. A container still
    running after the shutdowns fails the test."""
    made: list[NestedConversationManager] = []

    async def make(**overrides: Any) -> NestedConversationManager:
        values: dict[str, Any] = {
            "data_dir": data_dir,
            "sandbox": "docker",
            "stop_poll_interval": 0.2,
            "kill_grace_seconds": 2.0,
        }
        # Other names are the docker sandbox's own traits (c.DockerSandbox.*).
        traits = {"image": runtime_image}
        for name, value in overrides.items():
            (values if name in ManagerConfig.model_fields else traits)[name] = value
        config = ManagerConfig(**values)
        manager = NestedConversationManager(config, sandbox=make_sandbox(config, **traits))
        await manager.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.config.keep_runtimes_on_shutdown = False
        await manager.shutdown()
    leftovers = await asyncio.to_thread(our_containers, engine, data_dir)
    running = [c.name for c in leftovers if c.status == "running"]
    for container in leftovers:
        await asyncio.to_thread(container.remove, force=True)
    assert not running, f"containers left running: {running}"
