"""The process sandbox: each runtime is a local ``python -m jupyter_convo.runtime`` process.

Every runtime gets its own process group (``start_new_session``), so stopping it takes its
children along, and it outlives the server: the record in ``runtime.json`` (pid, process
group, port) lets a restarted server find it again. It starts with default signal handling
(``jupyter_convo.spawn``) whatever the server inherited. The session key reaches the child only
through its environment.

The runtime runs as the user; the agent's tool processes it starts run in a bubblewrap
jail (``Confinement``, ``c.Confinement.*``), whose policy each bind request carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from traitlets import Instance, Unicode

from ...agent.confine import ConfinementSpec
from ...spawn import with_default_signals
from .base import RuntimeHandle, Sandbox, SandboxStartError
from .confinement import Confinement
from .orphans import runtime_processes

log = logging.getLogger(__name__)

READY_PREFIX = b"JUPYTER_CONVO_RUNTIME_READY "
RUNTIME_MODULE = "jupyter_convo.runtime"
READY_FILE_NAME = "runtime.ready"
LOG_FILE_NAME = "runtime.log"
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 3000
# Non-child processes are watched through a pidfd; without one, their pid is polled.
PID_POLL_INTERVAL = 0.5
ALIVE_CHECK_TIMEOUT = 3.0
UPLOAD_FRAMING_BYTES = 1024 * 1024


class ProcessSandbox(Sandbox):
    """Runtimes as local subprocesses sharing the server's filesystem."""

    kind = "process"
    description = "a local subprocess per conversation (tools jailed by bubblewrap)"

    python_executable = Unicode(
        sys.executable,
        config=True,
        help=(
            "The interpreter that runs `python -m jupyter_convo.runtime` (it needs "
            "jupyter-convo installed). Default: the server's own interpreter."
        ),
    )
    host = Unicode(
        "127.0.0.1",
        config=True,
        help="The address runtimes listen on and are reached at. Default: 127.0.0.1.",
    )
    confinement = Instance(
        Confinement,
        allow_none=True,
        help="The jail of the agent's tool processes (configured as c.Confinement.*).",
    )

    def __init__(self, conversations_root: Path, **kwargs: Any) -> None:
        super().__init__(conversations_root, **kwargs)
        if self.confinement is None:
            self.confinement = Confinement(parent=self)
        # Checked (and said, in the server log) once, when the server starts.
        self.confinement.announce()
        # Runtimes this sandbox spawned: waited on through asyncio, which also reaps them.
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._drains: set[asyncio.Task[None]] = set()

    # --- start ----------------------------------------------------------------------------

    def command(self, conversation_id: str) -> list[str]:
        conv_dir = self.conversation_dir(conversation_id)
        command = [
            self.python_executable,
            "-m",
            RUNTIME_MODULE,
            "--conversations-root",
            str(self.conversations_root),
            "--host",
            self.host,
            "--port",
            "0",
            "--ready-file",
            str(conv_dir / READY_FILE_NAME),
            "--log-file",
            str(conv_dir / LOG_FILE_NAME),
        ]
        if self.max_upload_bytes is not None:
            # One file per upload request: its size plus the multipart framing.
            limit = self.max_upload_bytes + UPLOAD_FRAMING_BYTES
            command += ["--max-upload-bytes", str(limit)]
        return command

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
        assert self.confinement is not None
        refusal = self.confinement.refusal()
        if refusal is not None:
            raise SandboxStartError(refusal)
        conv_dir = self.conversation_dir(conversation_id)
        conv_dir.mkdir(parents=True, exist_ok=True)
        (conv_dir / READY_FILE_NAME).unlink(missing_ok=True)
        log_path = conv_dir / LOG_FILE_NAME
        child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        if shutil.which(self.python_executable, path=child_env.get("PATH")) is None:
            raise SandboxStartError(
                f"could not run {self.python_executable!r}: not an executable file"
            )
        log.info("starting a process runtime for conversation %s", conversation_id)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                *with_default_signals(self.command(conversation_id), child_env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_fd,
                env=child_env,
                cwd=conv_dir,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxStartError(
                f"could not run {self.python_executable!r}: {exc.strerror or exc}"
            ) from exc
        finally:
            os.close(log_fd)
        try:
            ready = await asyncio.wait_for(self._ready_line(proc, log_path), timeout)
        except asyncio.TimeoutError:
            await self._kill_child(proc)
            raise SandboxStartError(
                f"the runtime did not become ready within {timeout:g} s{_log_tail_suffix(log_path)}"
            ) from None
        except SandboxStartError as exc:
            code = await self._kill_child(proc)
            raise SandboxStartError(
                f"{exc} (exit code {code}){_log_tail_suffix(log_path)}"
            ) from None
        except BaseException:
            await self._kill_child(proc)
            raise
        self._children[conversation_id] = proc
        self._drain_stdout(proc, log_path)
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            pgid = proc.pid
        if ready.get("pid") not in (None, proc.pid):
            log.debug("runtime pid %s runs under launcher pid %s", ready.get("pid"), proc.pid)
        handle = RuntimeHandle(
            conversation_id=conversation_id,
            kind=self.kind,
            host=self.host,
            port=int(ready["port"]),
            runtime_id=str(proc.pid),
            server_instance_id=self.server_instance_id,
            pid=proc.pid,
            pgid=pgid,
        )
        self.write_record(handle)
        log.info("runtime for %s ready: pid %s, port %s", conversation_id, handle.pid, handle.port)
        return handle

    def confinement_spec(self) -> ConfinementSpec:
        assert self.confinement is not None
        return self.confinement.spec(self.conversations_root.parent)

    async def _ready_line(self, proc: asyncio.subprocess.Process, log_path: Path) -> dict[str, int]:
        """Read the child's stdout up to its ready line; other lines go to runtime.log."""
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise SandboxStartError("the runtime exited before it was ready")
            if line.startswith(READY_PREFIX):
                try:
                    data = json.loads(line[len(READY_PREFIX) :])
                    return {"port": int(data["port"]), "pid": int(data.get("pid", proc.pid))}
                except (ValueError, KeyError, TypeError) as exc:
                    raise SandboxStartError(f"unreadable ready line {line!r}: {exc}") from exc
            _append_bytes(log_path, line)

    def _drain_stdout(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        """Copy whatever the child still prints on the pipe into runtime.log, until EOF
        (the runtime points its stdout at its log file right after the ready line)."""

        async def drain() -> None:
            assert proc.stdout is not None
            with contextlib.suppress(Exception):
                while line := await proc.stdout.readline():
                    _append_bytes(log_path, line)

        task = asyncio.create_task(drain(), name=f"runtime-stdout-{proc.pid}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _kill_child(self, proc: asyncio.subprocess.Process) -> int | None:
        """Kill a child that failed to start, with its group, and reap it."""
        _signal_group(proc.pid, proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            return await asyncio.wait_for(proc.wait(), 10)
        return proc.returncode

    # --- watch ----------------------------------------------------------------------------

    async def is_alive(self, handle: RuntimeHandle) -> bool:
        proc = self._children.get(handle.conversation_id)
        if proc is not None and proc.pid == handle.pid:
            return proc.returncode is None
        return handle.pid is not None and pid_alive(handle.pid)

    async def wait_exit(self, handle: RuntimeHandle) -> int | None:
        proc = self._children.get(handle.conversation_id)
        if proc is not None and proc.pid == handle.pid:
            return await proc.wait()
        if handle.pid is not None:
            await wait_pid_exit(handle.pid)
        return None

    # --- stop -----------------------------------------------------------------------------

    async def stop(self, handle: RuntimeHandle, *, grace: float) -> None:
        if await self.is_alive(handle):
            log.info("terminating runtime %s of %s", handle.pid, handle.conversation_id)
            self._signal(handle, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait_exit(handle), grace)
            except asyncio.TimeoutError:
                log.warning(
                    "runtime %s of %s ignored SIGTERM for %g s; killing it",
                    handle.pid,
                    handle.conversation_id,
                    grace,
                )
        await self.kill(handle)

    async def kill(self, handle: RuntimeHandle) -> None:
        # Also reaches children left in the group after the runtime itself exited.
        self._signal(handle, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wait_exit(handle), 10)
        self._children.pop(handle.conversation_id, None)
        self.remove_record(handle.conversation_id)

    def _signal(self, handle: RuntimeHandle, sig: signal.Signals) -> None:
        if handle.pid is not None:
            _signal_group(handle.pid, handle.pgid, sig)

    # --- find again -----------------------------------------------------------------------

    async def find_existing(self) -> list[RuntimeHandle]:
        found = []
        async with httpx.AsyncClient(timeout=ALIVE_CHECK_TIMEOUT) as client:
            for conversation_id in self.recorded_conversations():
                handle = self.read_record(conversation_id)
                if handle is None or handle.pid is None:
                    continue
                if pid_alive(handle.pid) and await _answers_alive(client, handle):
                    found.append(handle)
                    continue
                if pid_alive(handle.pid) and self._is_our_runtime(handle):
                    log.warning(
                        "runtime %s of %s does not answer /alive; killing it",
                        handle.pid,
                        conversation_id,
                    )
                    self._signal(handle, signal.SIGKILL)
                log.info("removing the stale runtime record of %s", conversation_id)
                self.remove_record(conversation_id)
        return found

    async def find_orphans(self, conversation_id: str | None = None) -> list[RuntimeHandle]:
        known = {proc.pid for proc in self._children.values()}
        for cid in self.recorded_conversations():
            record = self.read_record(cid)
            if record is not None and record.pid is not None:
                known.add(record.pid)
        found = await asyncio.to_thread(
            runtime_processes,
            self.conversations_root,
            self.host,
            self.server_instance_id,
            known=known,
            module=RUNTIME_MODULE,
        )
        return [
            handle
            for handle in found
            if conversation_id is None or handle.conversation_id == conversation_id
        ]

    def _is_our_runtime(self, handle: RuntimeHandle) -> bool:
        """Whether the recorded pid still runs our runtime (and not a reused pid)."""
        try:
            cmdline = Path(f"/proc/{handle.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        conv_dir = str(self.conversation_dir(handle.conversation_id)).encode()
        return RUNTIME_MODULE.encode() in cmdline and any(conv_dir in arg for arg in cmdline)


async def _answers_alive(client: httpx.AsyncClient, handle: RuntimeHandle) -> bool:
    try:
        response = await client.get(f"{handle.url}/alive")
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _signal_group(pid: int, pgid: int | None, sig: signal.Signals) -> None:
    """Signal the runtime's process group (the runtime and its children); if the group
    is gone, signal the pid itself."""
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3, after the parenthesised command name (which may itself hold spaces).
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"]


async def wait_pid_exit(pid: int) -> None:
    """Wait until a process that is not our child exits (pidfd where available)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    fd: int | None = None
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:
            fd = None
    if fd is None:
        # No pidfd (old kernel): a process that is not our child can only be polled.
        while pid_alive(pid):  # noqa: ASYNC110
            await asyncio.sleep(PID_POLL_INTERVAL)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _append_bytes(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError), open(path, "ab") as handle:
        handle.write(data)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, chars: int = LOG_TAIL_CHARS) -> str:
    """The last lines of a runtime log, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars * 2))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-chars:]


def _log_tail_suffix(path: Path) -> str:
    tail = log_tail(path)
    return f"; last lines of {path.name}:\n{tail}" if tail.strip() else f"; {path.name} is empty"
