"""The docker sandbox: each runtime runs in its own container, through the Docker Engine API.

One container per conversation, named ``convo-runtime-<id>`` and labelled with the
conversation id, its owner, the server instance that created it and the conversations root
(so a restarted server finds its containers again, and only its own). The runtime's port is
published on 127.0.0.1 only. The conversation directory (and a workspace outside it) is
bind-mounted at the same path as on the host, so the event log the runtime writes is the one
the server reads and every path means the same on both sides. The container runs as the
server's user, so the files it writes stay the user's.

The session key reaches the runtime only through the container's environment; LLM settings
and secrets travel later, in the authenticated bind request. Nothing secret goes into labels,
the command line or logs.

An exited container is started again rather than recreated (work inside it survives); a
stop ends it (first through the runtime, by the manager, then ``docker stop``); only
``remove`` (conversation deleted) removes it. Engine errors end the start with a message that
says what to do. Every SDK call runs in a worker thread: the SDK blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from traitlets import Float, Int, TraitError, Unicode, Union, default, validate

from ...agent.confine import ConfinementSpec
from .base import RuntimeHandle, Sandbox, SandboxStartError
from .process import LOG_FILE_NAME, READY_FILE_NAME, UPLOAD_FRAMING_BYTES, log_tail

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "jupyter-convo-runtime:latest"
CONTAINER_PREFIX = "convo-runtime-"
CONTAINER_PORT = 8000
PUBLISH_HOST = "127.0.0.1"
LABEL_PREFIX = "jupyter-convo."
LABEL_CONVERSATION = LABEL_PREFIX + "conversation-id"
LABEL_OWNER = LABEL_PREFIX + "owner"
LABEL_INSTANCE = LABEL_PREFIX + "server-instance"
LABEL_ROOT = LABEL_PREFIX + "conversations-root"
# How often a start checks the container and its /alive; how often wait_exit polls.
READY_POLL_INTERVAL = 0.05
EXIT_POLL_INTERVAL = 0.5
ALIVE_CHECK_TIMEOUT = 3.0
# Engine calls (create, start, inspect, stop) that take longer than this are errors.
ENGINE_TIMEOUT = 60
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 20
RUNNING_STATES = frozenset({"running", "paused", "restarting"})

T = TypeVar("T")


def docker_sdk() -> Any:
    """The ``docker`` SDK (an optional dependency), imported when first needed; through
    importlib because the checkout's ``docker/`` folder shadows it for type checkers."""
    return importlib.import_module("docker")


def container_name(conversation_id: str) -> str:
    return f"{CONTAINER_PREFIX}{conversation_id}"


def free_port(host: str = PUBLISH_HOST) -> int:
    """A port nobody listens on right now (the engine may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class DockerSandbox(Sandbox):
    """Runtimes in containers of ``image`` on the engine at ``docker_host``."""

    kind = "docker"
    description = "a container per conversation, through the Docker Engine API"
    # A container keeps the environment it was created with for life (an exited one is
    # started again with it): a warm one must boot with its conversation's own key.
    keeps_environment = True

    image = Unicode(
        DEFAULT_IMAGE,
        config=True,
        help=(
            "The runtime image; build it with `jupyter convo build-image`. "
            f"Default: {DEFAULT_IMAGE}."
        ),
    )
    docker_host = Unicode(
        None,
        allow_none=True,
        config=True,
        help=(
            "The Docker Engine API URL, e.g. unix:///run/podman/podman.sock. "
            "Default: None (DOCKER_HOST, else the default socket)."
        ),
    )
    cpus = Float(
        None,
        allow_none=True,
        config=True,
        help="CPUs per runtime container, e.g. 1.5. Default: None (no limit).",
    )
    memory = Union(
        [Int(), Unicode()],
        default_value=None,
        allow_none=True,
        config=True,
        help="Memory per runtime container, e.g. '2g' or bytes. Default: None (no limit).",
    )
    user = Unicode(
        config=True,
        help="The user:group containers run as. Default: the server's uid:gid.",
    )

    @default("user")
    def _default_user(self) -> str:
        return f"{os.getuid()}:{os.getgid()}"

    @validate("cpus")
    def _check_cpus(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and value <= 0:
            raise TraitError(f"DockerSandbox.cpus must be more than 0, not {value}")
        return value

    def __init__(self, conversations_root: Path, **kwargs: Any) -> None:
        super().__init__(conversations_root.resolve(), **kwargs)
        # "" (the old c.ConvoExtension.docker_* way of saying "unset") means None.
        self.docker_host = self.docker_host or None
        self.memory = self.memory or None
        self._client: Any = None
        self._is_podman: bool | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        # A namespace package (origin None) is the checkout's docker/ folder, not the SDK.
        spec = importlib.util.find_spec("docker")
        if spec is None or spec.origin is None:
            return "needs the docker SDK: pip install 'jupyter-convo[docker]'"
        return None

    # --- the engine -------------------------------------------------------------------------

    @property
    def engine_address(self) -> str:
        return self.docker_host or os.environ.get("DOCKER_HOST") or "the default Docker socket"

    def _engine(self) -> Any:
        """The SDK client (made on first use: the engine may come up after the server)."""
        if self._client is not None:
            return self._client
        try:
            docker = docker_sdk()
        except ImportError as exc:
            raise SandboxStartError(
                "the docker sandbox needs the docker SDK: pip install 'jupyter-convo[docker]'"
            ) from exc
        try:
            if self.docker_host:
                client = docker.DockerClient(base_url=self.docker_host, timeout=ENGINE_TIMEOUT)
            else:
                client = docker.from_env(timeout=ENGINE_TIMEOUT)
            version = client.version()
        except docker.errors.DockerException as exc:
            raise SandboxStartError(
                f"cannot reach a Docker engine at {self.engine_address} ({exc}). Start Docker "
                "(or podman's API service: podman system service), or point "
                "c.DockerSandbox.docker_host (or DOCKER_HOST) at a running engine."
            ) from exc
        components = version.get("Components") or [{}]
        self._is_podman = "podman" in str(components[0].get("Name", "")).lower()
        self._client = client
        return client

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _container(self, name_or_id: str) -> Any | None:
        """The container, or None when the engine has no such container."""
        docker = docker_sdk()

        try:
            return self._engine().containers.get(name_or_id)
        except docker.errors.NotFound:
            return None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        self.close()

    # --- start ------------------------------------------------------------------------------

    def command(self, conversation_id: str) -> list[str]:
        """Arguments after the image's ``python -m jupyter_convo.runtime`` (no secrets)."""
        conv_dir = self.conversation_dir(conversation_id)
        command = [
            "--conversations-root",
            str(self.conversations_root),
            "--host",
            "0.0.0.0",
            "--port",
            str(CONTAINER_PORT),
            "--ready-file",
            str(conv_dir / READY_FILE_NAME),
            "--log-file",
            str(conv_dir / LOG_FILE_NAME),
        ]
        if self.max_upload_bytes is not None:
            command += ["--max-upload-bytes", str(self.max_upload_bytes + UPLOAD_FRAMING_BYTES)]
        return command

    def labels(self, conversation_id: str, owner: str | None) -> dict[str, str]:
        return {
            LABEL_CONVERSATION: conversation_id,
            LABEL_OWNER: owner or "",
            LABEL_INSTANCE: self.server_instance_id,
            LABEL_ROOT: str(self.conversations_root),
        }

    def mounts(self, conversation_id: str, workspace: Path | None) -> dict[str, dict[str, str]]:
        conv_dir = self.conversation_dir(conversation_id)
        volumes = {str(conv_dir): {"bind": str(conv_dir), "mode": "rw"}}
        if workspace is not None:
            path = workspace.resolve()
            if not path.is_relative_to(conv_dir):
                volumes[str(path)] = {"bind": str(path), "mode": "rw"}
        return volumes

    def confinement_spec(self) -> ConfinementSpec:
        """The container is the jail: the tools run in it as they are."""
        return ConfinementSpec(mechanism="container")

    def reaches(self, conversation_id: str, path: Path) -> bool:
        """A container sees only what was mounted when it was created: its conversation's
        directory (a warm container has no other workspace)."""
        return path.resolve().is_relative_to(self.conversation_dir(conversation_id))

    async def start(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        *,
        timeout: float,
        owner: str | None = None,
        workspace: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> RuntimeHandle:
        conv_dir = self.conversation_dir(conversation_id)
        await self._call(_prepare_directories, conv_dir, workspace)
        await self._call(self._engine)
        container = await self._call(self._container, container_name(conversation_id))
        created = container is None
        if container is None:
            container, port = await self._create_and_start(conversation_id, env, owner, workspace)
        else:
            port = await self._restart(container, conversation_id)
        try:
            await asyncio.wait_for(self._wait_ready(container, port), timeout)
        except asyncio.TimeoutError:
            reason = f"the runtime did not become ready within {timeout:g} s"
            await self._abandon(container, remove=created)
            raise SandboxStartError(reason + self._logs_suffix(container, conv_dir)) from None
        except SandboxStartError as exc:
            await self._abandon(container, remove=created)
            raise SandboxStartError(f"{exc}{self._logs_suffix(container, conv_dir)}") from None
        except BaseException:
            await self._abandon(container, remove=created)
            raise
        handle = RuntimeHandle(
            conversation_id=conversation_id,
            kind=self.kind,
            host=PUBLISH_HOST,
            port=port,
            runtime_id=str(container.id),
            server_instance_id=self.server_instance_id,
        )
        self.write_record(handle)
        log.info(
            "runtime of %s ready in container %s, port %s",
            conversation_id,
            container.short_id,
            port,
        )
        return handle

    async def _create_and_start(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        owner: str | None,
        workspace: Path | None,
    ) -> tuple[Any, int]:
        """Create the container on a free port and start it; another port on a clash."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            container = await self._call(self._create, conversation_id, env, owner, workspace, port)
            try:
                await self._call(self._start_container, container, port)
            except _PortTaken:
                await self._call(self._remove_container, container)
                if attempt == PORT_ATTEMPTS:
                    raise SandboxStartError(
                        f"no free port on {PUBLISH_HOST} for the runtime after "
                        f"{PORT_ATTEMPTS} tries (another program keeps taking them)"
                    ) from None
                log.info("port %s was taken before the container started; trying another", port)
                continue
            except BaseException:
                await self._call(self._remove_container, container)
                raise
            return container, port
        raise AssertionError("unreachable")

    def _create(
        self,
        conversation_id: str,
        env: Mapping[str, str],
        owner: str | None,
        workspace: Path | None,
        port: int,
    ) -> Any:
        docker = docker_sdk()

        options: dict[str, Any] = {}
        if self.cpus:
            options["nano_cpus"] = int(self.cpus * 1e9)
        if self.memory:
            options["mem_limit"] = self.memory
        if not self._is_podman:
            # Docker's name for the host; podman has host.containers.internal built in.
            options["extra_hosts"] = {"host.docker.internal": "host-gateway"}
        log.info(
            "creating container %s from %s for conversation %s",
            container_name(conversation_id),
            self.image,
            conversation_id,
        )
        try:
            return self._engine().containers.create(
                self.image,
                command=self.command(conversation_id),
                name=container_name(conversation_id),
                labels=self.labels(conversation_id, owner),
                environment={**env, "PYTHONUNBUFFERED": "1"},
                ports={f"{CONTAINER_PORT}/tcp": (PUBLISH_HOST, port)},
                volumes=self.mounts(conversation_id, workspace),
                user=self.user,
                init=True,
                detach=True,
                **options,
            )
        except docker.errors.ImageNotFound as exc:
            raise SandboxStartError(
                f"the runtime image {self.image!r} is not in the Docker engine at "
                f"{self.engine_address}: build it with `jupyter convo build-image --tag "
                f"{self.image}`, or set c.DockerSandbox.image to an image you have"
            ) from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise SandboxStartError(
                    f"a container named {container_name(conversation_id)} already exists and "
                    f"is not this server's: remove it (docker rm -f "
                    f"{container_name(conversation_id)}) and start again"
                ) from exc
            raise SandboxStartError(self._engine_refused("create the container", exc)) from exc

    def _start_container(self, container: Any, port: int) -> None:
        docker = docker_sdk()

        try:
            container.start()
        except docker.errors.APIError as exc:
            text = str(exc).lower()
            if "address already in use" in text or "port is already allocated" in text:
                raise _PortTaken(port) from exc
            raise SandboxStartError(self._engine_refused("start the container", exc)) from exc

    async def _restart(self, container: Any, conversation_id: str) -> int:
        """Start an existing container again (work inside it survives) on its own port."""
        labels = container.labels or {}
        if labels.get(LABEL_ROOT) != str(self.conversations_root):
            raise SandboxStartError(
                f"a container named {container.name} exists but belongs to another data "
                f"directory ({labels.get(LABEL_ROOT) or 'not jupyter-convo'}): remove it "
                f"(docker rm -f {container.name}) and start again"
            )
        port = _published_port(container.attrs)
        if port is None:
            raise SandboxStartError(
                f"container {container.name} publishes no runtime port: remove it "
                f"(docker rm -f {container.name}) and start again"
            )
        if container.status in RUNNING_STATES:
            log.info("container %s still runs without a server: restarting it", container.name)
            await self._call(container.stop, timeout=5)
        log.info("starting the existing container %s again (port %s)", container.name, port)
        try:
            await self._call(self._start_container, container, port)
        except _PortTaken:
            raise SandboxStartError(
                f"port {port} on {PUBLISH_HOST}, where container {container.name} publishes "
                "its runtime, is taken by another program: stop that program, or remove the "
                f"container (docker rm -f {container.name}; the conversation's files are kept, "
                "changes elsewhere in the container are lost) and start again"
            ) from None
        return port

    def _engine_refused(self, what: str, exc: Exception) -> str:
        explanation = getattr(exc, "explanation", None) or exc
        return f"the Docker engine at {self.engine_address} could not {what}: {explanation}"

    async def _wait_ready(self, container: Any, port: int) -> None:
        """Until the runtime answers /alive on the published port; an error if the
        container stops first."""
        url = f"http://{PUBLISH_HOST}:{port}/alive"
        async with httpx.AsyncClient(timeout=ALIVE_CHECK_TIMEOUT) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                state = await self._call(self._state, container.id)
                if state is None:
                    raise SandboxStartError("the container was removed before it was ready")
                if state.get("Status") not in RUNNING_STATES:
                    raise SandboxStartError(
                        f"the runtime exited before it was ready (exit code "
                        f"{state.get('ExitCode')})"
                    )
                await asyncio.sleep(READY_POLL_INTERVAL)

    def _state(self, container_id: str) -> dict[str, Any] | None:
        container = self._container(container_id)
        if container is None:
            return None
        state: dict[str, Any] = container.attrs.get("State") or {}
        return state

    def _logs_suffix(self, container: Any, conv_dir: Path) -> str:
        tail = log_tail(conv_dir / LOG_FILE_NAME)
        if tail.strip():
            return f"; last lines of {LOG_FILE_NAME}:\n{tail}"
        try:
            output = container.logs(tail=LOG_TAIL_LINES).decode("utf-8", errors="replace")
        except Exception:
            output = ""
        return f"; container output:\n{output}" if output.strip() else ""

    async def _abandon(self, container: Any, *, remove: bool) -> None:
        """A start failed: a container made for it goes; an existing one is only stopped."""
        with contextlib.suppress(Exception):
            if remove:
                await self._call(self._remove_container, container)
            else:
                await self._call(container.kill)

    def _remove_container(self, container: Any) -> None:
        docker = docker_sdk()

        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)

    # --- watch ------------------------------------------------------------------------------

    async def is_alive(self, handle: RuntimeHandle) -> bool:
        try:
            state = await self._call(self._state, handle.runtime_id)
        except Exception as exc:
            # The engine did not answer: the container may well still run.
            log.warning("cannot ask the engine about %s: %s", handle.conversation_id, exc)
            return True
        return state is not None and state.get("Status") in RUNNING_STATES

    async def wait_exit(self, handle: RuntimeHandle) -> int | None:
        """Polls the container's state (a blocking ``wait`` would pin a worker thread)."""
        warned = False
        while True:
            try:
                state = await self._call(self._state, handle.runtime_id)
            except Exception as exc:
                if not warned:
                    log.warning("cannot ask the engine about %s: %s", handle.conversation_id, exc)
                    warned = True
            else:
                if state is None:
                    return None
                if state.get("Status") not in RUNNING_STATES:
                    code = state.get("ExitCode")
                    return int(code) if isinstance(code, int) else None
            await asyncio.sleep(EXIT_POLL_INTERVAL)

    # --- stop and remove --------------------------------------------------------------------

    async def stop(self, handle: RuntimeHandle, *, grace: float) -> None:
        container = await self._call(self._container, handle.runtime_id)
        if container is not None and container.status in RUNNING_STATES:
            log.info("stopping container %s of %s", container.short_id, handle.conversation_id)
            await self._call(container.stop, timeout=max(1, round(grace)))
        self.remove_record(handle.conversation_id)

    async def kill(self, handle: RuntimeHandle) -> None:
        docker = docker_sdk()

        container = await self._call(self._container, handle.runtime_id)
        if container is not None and container.status in RUNNING_STATES:
            log.info("killing container %s of %s", container.short_id, handle.conversation_id)
            with contextlib.suppress(docker.errors.APIError):  # it exited meanwhile
                await self._call(container.kill)
            with contextlib.suppress(Exception):
                await self._call(container.wait, timeout=ENGINE_TIMEOUT)
        self.remove_record(handle.conversation_id)

    async def remove(self, conversation_id: str) -> None:
        """The conversation is deleted: its container goes too."""
        try:
            container = await self._call(self._container, container_name(conversation_id))
        except SandboxStartError as exc:
            log.warning("cannot remove the container of %s: %s", conversation_id, exc)
            return
        if container is not None:
            log.info("removing container %s", container.name)
            await self._call(self._remove_container, container)
        self.remove_record(conversation_id)

    # --- find again -------------------------------------------------------------------------

    async def find_existing(self) -> list[RuntimeHandle]:
        try:
            containers = await self._call(self._labelled_containers)
        except SandboxStartError as exc:
            log.warning("cannot look for running runtimes: %s", exc)
            return []
        found = []
        running = set()
        async with httpx.AsyncClient(timeout=ALIVE_CHECK_TIMEOUT) as client:
            for container in containers:
                conversation_id = (container.labels or {}).get(LABEL_CONVERSATION)
                if not conversation_id or container.status not in RUNNING_STATES:
                    continue
                port = _published_port(container.attrs)
                handle = RuntimeHandle(
                    conversation_id=conversation_id,
                    kind=self.kind,
                    host=PUBLISH_HOST,
                    port=port or 0,
                    runtime_id=str(container.id),
                    server_instance_id=(container.labels or {}).get(LABEL_INSTANCE, ""),
                )
                if port is not None and await _answers_alive(client, handle):
                    self.write_record(handle)
                    found.append(handle)
                    running.add(conversation_id)
                    continue
                log.warning("container %s does not answer /alive; killing it", container.name)
                await self.kill(handle)
        for conversation_id in self.recorded_conversations():
            if conversation_id not in running:
                log.info("removing the stale runtime record of %s", conversation_id)
                self.remove_record(conversation_id)
        return found

    def _labelled_containers(self) -> list[Any]:
        filters = {"label": [f"{LABEL_ROOT}={self.conversations_root}"]}
        containers: list[Any] = self._engine().containers.list(all=True, filters=filters)
        return containers


def _prepare_directories(conv_dir: Path, workspace: Path | None) -> None:
    """Mount sources must exist (podman refuses missing ones); no stale ready file."""
    conv_dir.mkdir(parents=True, exist_ok=True)
    if workspace is not None:
        workspace.mkdir(parents=True, exist_ok=True)
    (conv_dir / READY_FILE_NAME).unlink(missing_ok=True)


class _PortTaken(Exception):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is taken")
        self.port = port


def _published_port(attrs: Mapping[str, Any]) -> int | None:
    """The host port of the runtime's port: from the live state, else the configuration."""
    key = f"{CONTAINER_PORT}/tcp"
    for bindings in (
        (attrs.get("NetworkSettings") or {}).get("Ports") or {},
        (attrs.get("HostConfig") or {}).get("PortBindings") or {},
    ):
        for binding in bindings.get(key) or []:
            with contextlib.suppress(TypeError, ValueError):
                return int(binding.get("HostPort"))
    return None


async def _answers_alive(client: httpx.AsyncClient, handle: RuntimeHandle) -> bool:
    try:
        response = await client.get(f"{handle.url}/alive")
    except httpx.HTTPError:
        return False
    return response.status_code == 200
