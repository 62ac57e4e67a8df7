"""A persistent interactive bash behind a pseudo-terminal.

Why a pty and an interactive shell: job control then puts every command in its own
process group in the terminal's foreground, so Ctrl-C written to the pty interrupts the
command (and aborts the rest of its line, loops included) while the shell survives with
its working directory, variables and functions intact. Bash starts through
``jupyter_convo.spawn`` with default signal handling: under a server started in the
background it would otherwise inherit SIGINT ignored, and Ctrl-C would do nothing.

Each command is written to a private script file and sourced with stdin from /dev/null
(so a command that reads input sees end-of-file instead of swallowing our next line).
Bash's ``PROMPT_COMMAND`` prints an end marker before every prompt: a per-shell random
nonce, the command's sequence number, its exit status and the working directory. The
marker starts with a newline, so output without a trailing newline still ends cleanly.

The shell is not confined to the workspace by path checks (a shell can go anywhere);
isolation is the ``Confiner``'s job: given one, bash runs in its jail, leading a session
of its own there, and takes the pty (reopened through ``/proc/self/fd/0``: the host's
``/dev/pts`` is not mounted inside) as its controlling terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import struct
import tempfile
import termios
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...spawn import with_default_signals

if TYPE_CHECKING:
    from ..confine import Confiner

log = logging.getLogger(__name__)

START_TIMEOUT = 15.0
# How long an interrupted command gets to stop before the next, harder step.
INTERRUPT_GRACE = 3.0
WINDOW_ROWS, WINDOW_COLUMNS = 50, 200
# Room for the marker line (it carries the working directory) when scanning new output.
MARKER_SCAN_BACK = 16_384

# Runs as a session leader: opening the pty by name makes it our controlling terminal,
# which interactive bash needs for job control. Then becomes that interactive bash.
_LAUNCH = 'exec "$0" --rcfile "$1" --noediting -i <"$2" >"$2" 2>&1'

_RCFILE = r"""
PS1=''
PS2=''
PS0=''
unset HISTFILE
set +o history
__convo_seq=0
__convo_done() {{
    local status=$?
    trap - INT
    PS1=''
    PS2=''
    printf '\n__CONVO_DONE_{nonce}_%s__ %s %s\n' "$__convo_seq" "$status" "$PWD"
}}
readonly -f __convo_done
PROMPT_COMMAND=__convo_done
"""


class ShellError(RuntimeError):
    """The shell could not be started."""


@dataclass
class ShellResult:
    """What one command produced. ``head``/``tail``/``dropped``: see ``_Capture``."""

    head: str
    tail: str
    dropped: int
    exit_code: int | None
    cwd: str
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Marker:
    exit_code: int
    cwd: str
    start: int
    end: int


class _Capture:
    """The bytes read from the pty since the last command ended.

    Keeps everything up to ``3 * keep`` bytes; past that, the first ``keep`` bytes and a
    rolling last ``keep`` bytes, counting what fell out in between (``dropped``), so a
    command printing gigabytes cannot exhaust memory.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.buf = bytearray()
        self.dropped = 0
        self._scanned = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > 3 * self.keep:
            end = len(self.buf) - self.keep
            del self.buf[self.keep : end]
            self.dropped += end - self.keep
            self._scanned = self.keep

    def find(self, pattern: re.Pattern[bytes]) -> _Marker | None:
        start = max(self.keep if self.dropped else 0, self._scanned - MARKER_SCAN_BACK)
        match = pattern.search(self.buf, start)
        self._scanned = len(self.buf)
        if match is None:
            return None
        marker = _Marker(
            exit_code=int(match.group(1)),
            cwd=match.group(2).decode("utf-8", "replace"),
            start=match.start(),
            end=match.end(),
        )
        del match  # a live match pins the bytearray's size
        return marker

    def take(self, upto: int, resume: int) -> tuple[str, str, int]:
        """Output before ``upto`` as (head, tail, dropped); keeps bytes from ``resume``."""
        if self.dropped:
            head = bytes(self.buf[: self.keep])
            tail = bytes(self.buf[self.keep : upto])
        else:
            head, tail = bytes(self.buf[:upto]), b""
        dropped = self.dropped
        del self.buf[:resume]
        self.dropped = 0
        self._scanned = 0
        return _decode(head), _decode(tail), dropped


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class BashSession:
    """One long-lived bash; ``run`` executes commands in it one at a time."""

    def __init__(
        self,
        cwd: Path,
        env: Mapping[str, str],
        *,
        keep_bytes: int = 262_144,
        confiner: Confiner | None = None,
    ) -> None:
        self._cwd = cwd
        self._env = dict(env)
        self._confiner = confiner
        self._keep = max(keep_bytes, 4 * MARKER_SCAN_BACK)
        self._lock = asyncio.Lock()
        self._proc: asyncio.subprocess.Process | None = None
        # The shell's own process group (its pid outside any jail), known once it is idle.
        self._shell_group: int | None = None
        self._master = -1
        self._dir: Path | None = None
        self._nonce = ""
        self._seq = 0
        self._eof = False
        self._wake = asyncio.Event()
        self._capture = _Capture(self._keep)

    @property
    def pid(self) -> int | None:
        """The process we started: bash (also its process group and session id), or the
        jail's launcher when confined."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and not self._eof

    async def start(self) -> None:
        """Start bash and wait until it printed its first marker."""
        if self._confiner is not None:
            self._dir = self._confiner.private_dir("convo-shell-")
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="convo-shell-"))
        self._nonce = secrets.token_hex(8)
        self._seq = 0
        self._eof = False
        self._capture = _Capture(self._keep)
        rcfile = self._dir / "bashrc"
        rcfile.write_text(_RCFILE.format(nonce=self._nonce), encoding="utf-8")
        master, slave = os.openpty()
        try:
            _configure_terminal(slave, master)
            bash = shutil.which("bash", path=self._env.get("PATH")) or "/bin/bash"
            argv = [bash, "--norc", "--noprofile", "-c", _LAUNCH, bash, str(rcfile)]
            if self._confiner is None:
                argv.append(os.ttyname(slave))
            else:
                argv = self._confiner.command(
                    [*argv, "/proc/self/fd/0"],
                    cwd=self._cwd,
                    read_only=[self._dir],
                    session_leader=True,
                )
            self._proc = await asyncio.create_subprocess_exec(
                *with_default_signals(argv, self._env),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self._cwd,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(master)
            raise ShellError(f"cannot start bash: {exc}") from exc
        finally:
            os.close(slave)
        self._master = master
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._on_readable)
        exited = asyncio.ensure_future(self._proc.wait())
        exited.add_done_callback(lambda _: self._wake.set())
        marker = await self._wait_for(0, START_TIMEOUT)
        if marker is None:
            text = _decode(bytes(self._capture.buf))[-2000:]
            await self.close()
            raise ShellError(f"bash did not become ready within {START_TIMEOUT:g} s: {text!r}")
        self._capture.take(marker.start, marker.end)
        # Idle, bash holds the terminal's foreground: that group is the shell itself.
        self._shell_group = self._foreground_group()
        log.info("started bash (pid %s) in %s", self._proc.pid, self._cwd)

    async def run(self, command: str, timeout: float) -> ShellResult:
        """Run ``command``; on timeout interrupt it (Ctrl-C, then SIGKILL to its process
        group, then a new shell) and return what it printed so far.
        """
        async with self._lock:
            notes: list[str] = []
            if not self.running:
                if self._proc is not None:
                    notes.append(self._restart_note("the previous shell had exited"))
                    await self.close()
                await self.start()
            return await self._run(command, timeout, notes)

    async def _run(self, command: str, timeout: float, notes: list[str]) -> ShellResult:
        assert self._dir is not None
        self._seq += 1
        seq = self._seq
        script = self._dir / f"command-{seq}.sh"
        try:
            # The agent may have cleaned /tmp; the directory is ours to remake.
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            script.write_text(command, encoding="utf-8", errors="replace")
        except OSError as exc:
            note = f"[the command could not be handed to the shell: {exc}]"
            return ShellResult("", "", 0, None, str(self._cwd), notes=[*notes, note])
        self._send(f"__convo_seq={seq}; . {shlex.quote(str(script))} 0</dev/null\n".encode())
        marker = await self._wait_for(seq, timeout)
        timed_out = marker is None and self.running
        if timed_out:
            marker = await self._interrupt(seq, timeout, notes)
        with contextlib.suppress(OSError):
            script.unlink()
        if marker is not None:
            head, tail, dropped = self._capture.take(marker.start, marker.end)
            return ShellResult(head, tail, dropped, marker.exit_code, marker.cwd, timed_out, notes)
        # The shell is gone (``exit``, killed) or wedged: keep what it printed, start anew.
        self._drain()
        if self._proc is not None and self._proc.returncode is None and self._eof:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), INTERRUPT_GRACE)
        size = len(self._capture.buf)
        head, tail, dropped = self._capture.take(size, size)
        exit_code = self._proc.returncode if self._proc else None
        if self.running:
            notes.append(self._restart_note("the shell did not recover from the interrupt"))
        elif exit_code is not None and exit_code < 0:
            notes.append(self._restart_note(f"the shell was killed by signal {-exit_code}"))
            exit_code = 128 - exit_code  # as bash reports a command killed by a signal
        elif exit_code is not None:
            notes.append(self._restart_note(f"the shell exited with code {exit_code}"))
        else:
            notes.append(self._restart_note("the shell closed its terminal"))
        await self.close()
        try:
            await self.start()
        except ShellError as exc:
            notes.append(f"[starting a new shell failed: {exc}]")
        return ShellResult(head, tail, dropped, exit_code, str(self._cwd), timed_out, notes)

    def _restart_note(self, why: str) -> str:
        return (
            f"[{why}; a new shell was started in {self._cwd}: the previous working "
            "directory, variables and functions are gone]"
        )

    async def _interrupt(self, seq: int, timeout: float, notes: list[str]) -> _Marker | None:
        self._send(b"\x03")
        marker = await self._wait_for(seq, INTERRUPT_GRACE)
        if marker is not None:
            notes.append(
                f"[the command timed out after {timeout:g} s and was interrupted (Ctrl-C); "
                "the shell keeps its state]"
            )
            return marker
        group = self._foreground_group()
        if group is not None and group not in (self.pid, self._shell_group):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
            marker = await self._wait_for(seq, INTERRUPT_GRACE)
            if marker is not None:
                notes.append(
                    f"[the command timed out after {timeout:g} s, ignored Ctrl-C and was "
                    "killed; the shell keeps its state]"
                )
                return marker
        notes.append(f"[the command timed out after {timeout:g} s and could not be interrupted]")
        return None

    def _foreground_group(self) -> int | None:
        try:
            group = os.tcgetpgrp(self._master)
        except OSError:
            return None
        return group if group > 0 else None

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                continue
            except OSError:
                return  # the shell is gone; the caller notices
            view = view[written:]

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65_536)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process holds the terminal any more
            data = b""
        if data:
            self._capture.feed(data)
        else:
            self._eof = True
            asyncio.get_running_loop().remove_reader(self._master)
        self._wake.set()

    def _drain(self) -> None:
        """Read whatever the terminal still holds (after the shell exited)."""
        if self._master < 0 or self._eof:
            return
        while True:
            try:
                data = os.read(self._master, 65_536)
            except OSError:
                return
            if not data:
                return
            self._capture.feed(data)

    async def _wait_for(self, seq: int, timeout: float) -> _Marker | None:
        """The end marker of command ``seq``, or None on timeout or when the shell ended."""
        pattern = re.compile(
            rb"\n__CONVO_DONE_%s_%d__ (-?\d+) ([^\n]*)\n" % (self._nonce.encode(), seq)
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._wake.clear()
            marker = self._capture.find(pattern)
            if marker is not None:
                return marker
            if not self.running:
                self._drain()
                return self._capture.find(pattern)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    async def wait_exited(self, timeout: float) -> int | None:
        """Wait until the shell process has exited and been noticed; its return code."""
        if self._proc is None:
            return None
        return await asyncio.wait_for(self._proc.wait(), timeout)

    async def close(self) -> None:
        """Kill the shell and every process still in its session; remove its files."""
        proc, self._proc = self._proc, None
        if self._master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1
        if proc is not None:
            _kill_session(proc.pid)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except asyncio.TimeoutError:
                log.warning("bash (pid %s) did not exit after SIGKILL", proc.pid)
        if self._dir is not None:
            if self._confiner is not None:
                self._confiner.release(self._dir)
            else:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _configure_terminal(slave: int, master: int) -> None:
    """No echo (we know what we sent), no CR added before LF, and a wide window."""
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | getattr(termios, "ECHOCTL", 0))
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    size = struct.pack("HHHH", WINDOW_ROWS, WINDOW_COLUMNS, 0, 0)
    fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def _kill_session(sid: int) -> None:
    """SIGKILL every process in session ``sid`` (background jobs have their own groups)."""
    pids = set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.getsid(int(entry)) == sid:
                        pids.add(int(entry))
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.killpg(sid, signal.SIGKILL)
