"""A Jupyter kernel the python tool runs code in, through ``jupyter_client``.

Either a kernel we start (ipykernel's ``python3``, working directory = the workspace) and
shut down on ``close``, or an existing kernel reached through its connection file (the
user's notebook kernel), which we only ever interrupt and never shut down.

With a ``Confiner`` the kernel we start runs in its jail; its IPC sockets and connection
file live in a private folder mounted at the same path inside, so ``jupyter_client`` here
and the kernel there meet on Unix sockets (which cross a cut network too). A signal to the
jail's launcher would not reach the kernel, so interrupts travel as ``interrupt_request``
messages on the control channel (the kernel then signals itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .text import strip_ansi

if TYPE_CHECKING:
    # Imported when the first kernel starts: jupyter_client and zmq cost an idle runtime
    # ~6 MB of memory it may never use (bench/bench_memory.py).
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    from ..confine import Confiner

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
# How long an interrupted execution gets to finish before we give up on it.
INTERRUPT_GRACE = 5.0
# How often a silent execution checks that its kernel is still alive.
LIVENESS_INTERVAL = 1.0
# Consecutive failed heartbeat checks before a connected kernel counts as dead.
MISSED_BEATS_FOR_DEATH = 3
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class KernelStartError(RuntimeError):
    """The kernel could not be started or reached."""


@dataclass
class KernelRun:
    """Everything one execution produced, in the kernel's own terms."""

    stdout: str = ""
    stderr: str = ""
    result: dict[str, Any] | None = None
    display_data: list[dict[str, Any]] = field(default_factory=list)
    error: tuple[str, str, list[str]] | None = None
    execution_count: int | None = None
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)


class KernelSession:
    """Starts (or connects to) a kernel on first use and runs code in it, one at a time."""

    def __init__(
        self,
        *,
        cwd: Path,
        env: Mapping[str, str],
        connection_file: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        confiner: Confiner | None = None,
    ) -> None:
        self._cwd = cwd
        self._env = dict(env)
        # A kernel we start runs confined; a connected one (the notebook's) is what it is.
        self._confiner = confiner if connection_file is None else None
        self._connection_file = connection_file
        self._startup_timeout = startup_timeout
        self._manager: AsyncKernelManager | None = None
        self._client: AsyncKernelClient | None = None
        self._socket_dir: Path | None = None
        self._lock = asyncio.Lock()

    @property
    def owned(self) -> bool:
        """True when we start the kernel (and so may restart and shut it down)."""
        return self._connection_file is None

    @property
    def kernel_pid(self) -> int | None:
        """The process id of a kernel we started (of its jail's launcher when confined),
        if it is running."""
        provisioner = self._manager.provisioner if self._manager else None
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    async def execute(self, code: str, timeout: float) -> KernelRun:
        async with self._lock:
            run = KernelRun()
            client = await self._ensure_client()
            await self._execute(client, code, timeout, run)
            return run

    async def _ensure_client(self) -> AsyncKernelClient:
        if self._client is not None:
            return self._client
        try:
            if self._connection_file is None:
                self._client = await self._start_kernel()
            else:
                self._client = await self._connect(self._connection_file)
        except KernelStartError:
            await self.close()
            raise
        except Exception as exc:  # jupyter_client raises many kinds; all mean "no kernel"
            await self.close()
            raise KernelStartError(f"{type(exc).__name__}: {exc}") from exc
        return self._client

    async def _start_kernel(self) -> AsyncKernelClient:
        env = dict(self._env)
        env["MPLBACKEND"] = INLINE_BACKEND
        env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
        # IPC sockets in a private directory: no TCP ports for other local users to probe.
        confiner = self._confiner
        if confiner is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="convo-kernel-"))
        else:
            self._socket_dir = confiner.private_dir("convo-kernel-")
        manager = _kernel_manager(
            confiner,
            self._cwd,
            self._socket_dir,
            kernel_name="python3",
            transport="ipc",
            ip=str(self._socket_dir / "ipc"),
            connection_file=str(self._socket_dir / "kernel.json"),
        )
        self._manager = manager
        await manager.start_kernel(cwd=str(self._cwd), env=env)
        client = manager.client()
        client.start_channels()
        self._client = client
        try:
            await client.wait_for_ready(timeout=self._startup_timeout)
        except RuntimeError as exc:
            raise KernelStartError(f"the Python kernel did not become ready: {exc}") from exc
        log.info("started Python kernel (pid %s) in %s", self.kernel_pid, self._cwd)
        return client

    async def _connect(self, connection_file: str) -> AsyncKernelClient:
        from jupyter_client.asynchronous.client import AsyncKernelClient

        client = AsyncKernelClient()
        try:
            client.load_connection_file(connection_file)
        except OSError as exc:
            raise KernelStartError(
                f"cannot read the kernel connection file {connection_file}: {exc.strerror}"
            ) from exc
        client.start_channels()
        self._client = client
        await self._handshake(client, connection_file)
        log.info("connected to the kernel of %s", connection_file)
        return client

    async def _handshake(self, client: AsyncKernelClient, connection_file: str) -> None:
        """Wait until the kernel answers on shell and its IOPub messages reach us.

        Not ``wait_for_ready``: without a manager it judges liveness by heartbeats, which
        a busy machine can miss, and then reports a healthy kernel as dead.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout
        while loop.time() < deadline:
            client.kernel_info()
            try:
                reply = await client.get_shell_msg(timeout=1.0)
            except queue.Empty:
                continue
            if reply.get("msg_type") != "kernel_info_reply":
                continue
            try:  # the request's busy/idle status shows IOPub is subscribed
                await client.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            return
        raise KernelStartError(
            f"the kernel of {connection_file} did not answer within {self._startup_timeout:g} s"
        )

    async def _execute(
        self, client: AsyncKernelClient, code: str, timeout: float, run: KernelRun
    ) -> None:
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interrupted = False
        clear_pending = False
        missed = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                if interrupted:
                    await self._give_up(run, timeout)
                    return
                run.timed_out = interrupted = True
                await self._interrupt(client)
                deadline = loop.time() + INTERRUPT_GRACE
                continue
            try:
                msg = await client.get_iopub_msg(timeout=min(remaining, LIVENESS_INTERVAL))
            except queue.Empty:
                if await self._alive(client):
                    missed = 0
                    continue
                missed += 1
                # Our own kernel's process has exited; a connected one missed heartbeats,
                # which a loaded machine can cause once or twice.
                if self.owned or missed >= MISSED_BEATS_FOR_DEATH:
                    await self._kernel_died(run)
                    return
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if clear_pending and kind in ("stream", "display_data", "execute_result"):
                run.stdout, run.stderr, run.display_data = "", "", []
                clear_pending = False
            if kind == "stream":
                if content.get("name") == "stderr":
                    run.stderr += content.get("text", "")
                else:
                    run.stdout += content.get("text", "")
            elif kind in ("display_data", "update_display_data"):
                run.display_data.append(dict(content.get("data", {})))
            elif kind == "execute_result":
                run.result = dict(content.get("data", {}))
                run.execution_count = content.get("execution_count")
            elif kind == "error":
                run.error = _error(content)
            elif kind == "clear_output":
                if content.get("wait"):
                    clear_pending = True
                else:
                    run.stdout, run.stderr, run.display_data = "", "", []
        if interrupted:
            run.notes.append(
                f"[timed out after {timeout:g} s; the kernel was interrupted and keeps its "
                "variables]"
            )
        await self._read_reply(client, msg_id, run)

    async def _read_reply(self, client: AsyncKernelClient, msg_id: str, run: KernelRun) -> None:
        """The execution count, and the error when only the reply carries it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INTERRUPT_GRACE
        while (remaining := deadline - loop.time()) > 0:
            try:
                reply = await client.get_shell_msg(timeout=remaining)
            except queue.Empty:
                return
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # the late reply of an execution we gave up on
            content = reply["content"]
            run.execution_count = content.get("execution_count", run.execution_count)
            if content.get("status") == "error" and run.error is None:
                run.error = _error(content)
            return

    async def _interrupt(self, client: AsyncKernelClient) -> None:
        try:
            if self._manager is not None:
                await self._manager.interrupt_kernel()
            else:
                # ipykernel answers interrupt_request on the control channel by sending
                # itself SIGINT; we do not own (or know the pid of) a connected kernel.
                msg = client.session.msg("interrupt_request", {})
                client.control_channel.send(msg)
        except Exception as exc:
            log.warning("interrupting the kernel failed: %s", exc)

    async def _give_up(self, run: KernelRun, timeout: float) -> None:
        if self.owned:
            run.notes.append(
                f"[timed out after {timeout:g} s and the kernel ignored the interrupt; it was "
                "shut down and a new one starts with your next code: all variables and "
                "imports are gone]"
            )
            await self._shutdown()
        else:
            run.notes.append(
                f"[timed out after {timeout:g} s and the kernel ignored the interrupt; it may "
                "still be busy]"
            )

    async def _kernel_died(self, run: KernelRun) -> None:
        run.error = run.error or ("DeadKernelError", "the Python kernel died", [])
        if self.owned:
            run.notes.append(
                "[the Python kernel died; a new one starts with your next code: all variables "
                "and imports are gone]"
            )
            await self._shutdown()
        else:
            run.notes.append("[the kernel stopped answering]")

    async def _alive(self, client: AsyncKernelClient) -> bool:
        if self._manager is not None:
            return bool(await self._manager.is_alive())
        return bool(await client.is_alive())

    async def _shutdown(self) -> None:
        """Stop our client, and the kernel if it is ours."""
        client, self._client = self._client, None
        manager, self._manager = self._manager, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()
        if manager is not None:
            try:
                await manager.shutdown_kernel(now=False)
            except Exception as exc:
                log.warning("shutting down the Python kernel failed: %s", exc)
                with contextlib.suppress(Exception):
                    await manager.shutdown_kernel(now=True)
        if self._socket_dir is not None:
            if self._confiner is not None:
                self._confiner.release(self._socket_dir)
            else:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    async def close(self) -> None:
        """Shut down a kernel we started; only disconnect from one we were given."""
        await self._shutdown()


def _kernel_manager(
    confiner: Confiner | None, cwd: Path, socket_dir: Path, **options: Any
) -> AsyncKernelManager:
    """A kernel manager whose kernels start with default signal handling; with
    ``confiner``, one whose kernel command runs in the jail."""
    from .kernel_manager import DefaultSignalsKernelManager

    if confiner is None:
        return DefaultSignalsKernelManager(**options)
    jail = confiner

    class ConfinedKernelManager(DefaultSignalsKernelManager):
        def confine_command(self, argv: list[str]) -> list[str]:
            interpreter = jail.interpreter_paths(argv[0]) if argv else []
            return jail.command(argv, cwd=cwd, read_only=interpreter, read_write=[socket_dir])

    manager = ConfinedKernelManager(**options)
    if manager.kernel_spec is not None:
        manager.kernel_spec.interrupt_mode = "message"
    return manager


def _error(content: dict[str, Any]) -> tuple[str, str, list[str]]:
    traceback = [strip_ansi(line) for line in content.get("traceback", [])]
    return str(content.get("ename", "Error")), str(content.get("evalue", "")), traceback
